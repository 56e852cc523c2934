"""Streams one RPC_IN_DATA request announcing and sending SIZE bytes to ADDR, as
Outlook Anywhere's IN channel does, and prints "seconds MB/s" once the backend
answers (it answers after reading the whole body)."""
import socket, sys, time

host, port = sys.argv[1].rsplit(":", 1)
size = int(sys.argv[2])
s = socket.create_connection((host, int(port)))
s.sendall(b"RPC_IN_DATA /rpc/rpcproxy.dll?mail:6001 HTTP/1.1\r\nHost: bench\r\nUser-Agent: MSRPC\r\n"
          b"Content-Length: %d\r\n\r\n" % size)
piece = b"\x05" * (1 << 20)
start = time.monotonic()
left = size
while left:
    k = min(left, len(piece))
    s.sendall(piece[:k])
    left -= k
got = b""
while b"body_bytes" not in got:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
took = time.monotonic() - start
if b'"body_bytes":%d' % size not in got:
    sys.exit("backend did not receive the whole body: %r" % got[:300])
print("%.2f %.0f" % (took, size / took / 1e6))
