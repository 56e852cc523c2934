"""Opens N keep-alive connections to ADDR, makes one request on each, then holds
them idle until killed. Touches READY_FILE once all are established.

    idle_conns.py ADDR N READY_FILE [--tls | --h2] [--procs P] [--burst]

Each connection gets its answer before the next one opens, as connections that
come and go over time do (the proxy needs one backend connection at a time);
--burst sends all N requests first and reads the answers after, so that the
proxy opens up to N backend connections at once (the method of the earlier
runs in docs/performance.md).

Loopback has about 28,000 ephemeral ports per source address, so connection i
comes from 127.0.0.(2 + i % 8): 50,000 connections fit. --tls makes each one a
TLS connection (the certificate is not checked: loopback benchmarks only).
--h2 makes each one HTTP/2 over TLS (ALPN h2; the request and the few frames
it needs written by hand here, so that no HTTP/2 library is needed).
--procs spreads the connections over P processes (TLS handshakes cost the
client CPU too); the file limit must allow N descriptors per process."""
import os, signal, socket, ssl, sys, time

SOURCES = 8


def answer(s):
    s.settimeout(30)
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"x" * 16):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed early")
        got += chunk


def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


# GET /bytes/16 on stream 1 in HPACK without Huffman coding: :method GET
# (static index 2), :scheme https (7), then :path and :authority as literals
# with indexed names (4 and 1).
H2_REQUEST = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + frame(0x4, 0, 0)
    + frame(0x1, 0x5, 1, bytes([0x82, 0x87, 0x04, 9]) + b"/bytes/16" + bytes([0x01, 5]) + b"bench")
)


def answer_h2(s):
    """Reads frames until stream 1 ends, acknowledging the server's SETTINGS."""
    s.settimeout(30)
    buf = b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("connection closed early")
            buf += chunk
        n = int.from_bytes(buf[:3], "big")
        kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        buf = buf[9 + n:]
        if kind == 0x4 and not flags & 0x1:
            s.sendall(frame(0x4, 0x1, 0))
        elif kind == 0x7:
            sys.exit("the server sent GOAWAY")
        elif kind == 0x3 and stream == 1:
            sys.exit("the server reset the request")
        elif kind in (0x0, 0x1) and stream == 1 and flags & 0x1:
            return


def hold(host, port, first, count, tls, burst, h2=False):
    ctx = None
    if tls or h2:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"] if h2 else ["http/1.1"])
    conns = []
    for i in range(first, first + count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The port is chosen at connect, per destination (IP_BIND_ADDRESS_NO_PORT).
        s.setsockopt(socket.IPPROTO_IP, 24, 1)
        s.bind((f"127.0.0.{2 + i % SOURCES}", 0))
        s.connect((host, int(port)))
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="bench")
        if h2:
            if s.selected_alpn_protocol() != "h2":
                sys.exit(f"the server chose {s.selected_alpn_protocol()!r}, not h2")
            s.sendall(H2_REQUEST)
        else:
            s.sendall(b"GET /bytes/16 HTTP/1.1\r\nHost: bench\r\n\r\n")
        if not burst:
            (answer_h2 if h2 else answer)(s)
        conns.append(s)
    if burst:
        for s in conns:
            (answer_h2 if h2 else answer)(s)
    return conns


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n, ready = int(sys.argv[2]), sys.argv[3]
    tls = "--tls" in sys.argv
    h2 = "--h2" in sys.argv
    procs = int(sys.argv[sys.argv.index("--procs") + 1]) if "--procs" in sys.argv else 1
    burst = "--burst" in sys.argv
    share = -(-n // procs)
    children = []
    # A SIGTERM (the benchmark is done) ends the holders too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for p in range(procs):
        first, count = p * share, min(share, n - p * share)
        if count <= 0:
            break
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.close(r)
            try:
                conns = hold(host, port, first, count, tls, burst, h2)
            except Exception as e:  # the parent reports it and exits
                os.write(w, f"error: {e}\n".encode())
                os._exit(1)
            os.write(w, b"ok\n")
            time.sleep(3600)
            del conns
            os._exit(0)
        os.close(w)
        children.append((pid, r))
    try:
        for pid, r in children:
            answer = os.read(r, 200).decode().strip()
            if answer != "ok":
                sys.exit(f"idle_conns: {answer or 'a holder died'}")
        open(ready, "w").close()
        time.sleep(3600)
    finally:
        for pid, _ in children:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
