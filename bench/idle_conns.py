"""Opens N keep-alive connections to ADDR, makes one request on each, then holds
them idle until killed. Touches READY_FILE once all are established."""
import socket, sys, time

host, port = sys.argv[1].rsplit(":", 1)
n, ready = int(sys.argv[2]), sys.argv[3]
conns = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET /bytes/16 HTTP/1.1\r\nHost: bench\r\n\r\n")
    conns.append(s)
for s in conns:
    s.settimeout(10)
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"x" * 16):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed early")
        got += chunk
open(ready, "w").close()
time.sleep(600)
