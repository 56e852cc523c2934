"""Opens N keep-alive connections to ADDR, makes one request on each, then holds
them idle until killed. Touches READY_FILE once all are established.

    idle_conns.py ADDR N READY_FILE [--tls] [--procs P] [--burst]

Each connection gets its answer before the next one opens, as connections that
come and go over time do (the proxy needs one backend connection at a time);
--burst sends all N requests first and reads the answers after, so that the
proxy opens up to N backend connections at once (the method of the earlier
runs in docs/performance.md).

Loopback has about 28,000 ephemeral ports per source address, so connection i
comes from 127.0.0.(2 + i % 8): 50,000 connections fit. --tls makes each one a
TLS connection (the certificate is not checked: loopback benchmarks only).
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


def hold(host, port, first, count, tls, burst):
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
    conns = []
    for i in range(first, first + count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The port is chosen at connect, per destination (IP_BIND_ADDRESS_NO_PORT).
        s.setsockopt(socket.IPPROTO_IP, 24, 1)
        s.bind((f"127.0.0.{2 + i % SOURCES}", 0))
        s.connect((host, int(port)))
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="bench")
        s.sendall(b"GET /bytes/16 HTTP/1.1\r\nHost: bench\r\n\r\n")
        if not burst:
            answer(s)
        conns.append(s)
    if burst:
        for s in conns:
            answer(s)
    return conns


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n, ready = int(sys.argv[2]), sys.argv[3]
    tls = "--tls" in sys.argv
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
                conns = hold(host, port, first, count, tls, burst)
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
