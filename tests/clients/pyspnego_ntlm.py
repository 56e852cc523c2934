"""An independent NTLM client (pyspnego's own NTLM implementation) over HTTPS.

usage: pyspnego_ntlm.py URL USER PASSWORD CAFILE SERVERNAME [--cbt right|wrong|none]
Prints the final status code, then the body.
"""
import argparse
import base64
import hashlib
import http.client
import socket
import ssl
import sys
import urllib.parse

import spnego
from spnego.channel_bindings import GssChannelBindings

p = argparse.ArgumentParser()
p.add_argument("url")
p.add_argument("user")
p.add_argument("password")
p.add_argument("cafile")
p.add_argument("servername")
p.add_argument("--cbt", choices=["right", "wrong", "none"], default="right")
a = p.parse_args()

u = urllib.parse.urlsplit(a.url)
ctx = ssl.create_default_context(cafile=a.cafile)
raw = socket.create_connection((u.hostname, u.port))
tls = ctx.wrap_socket(raw, server_hostname=a.servername)
conn = http.client.HTTPSConnection(a.servername, u.port, context=ctx)
conn.sock = tls  # keep the one connection: NTLM is connection-bound

bindings = None
if a.cbt != "none":
    cert = tls.getpeercert(binary_form=True)
    digest = hashlib.sha256(cert).digest() if a.cbt == "right" else b"\0" * 32
    bindings = GssChannelBindings(application_data=b"tls-server-end-point:" + digest)

client = spnego.client(a.user, a.password, hostname=a.servername, service="HTTP",
                       protocol="ntlm", channel_bindings=bindings)
path = u.path or "/"
token = client.step()
status, body = None, b""
for _ in range(3):
    conn.request("GET", path, headers={"Authorization": "NTLM " + base64.b64encode(token).decode()})
    r = conn.getresponse()
    body = r.read()
    status = r.status
    challenge = r.getheader("WWW-Authenticate", "")
    if status != 401 or not challenge.startswith("NTLM ") or client.complete:
        break
    token = client.step(base64.b64decode(challenge[5:]))
print(status)
sys.stdout.write(body.decode(errors="replace"))
