"""pyspnego's SPNEGO ("negotiate") client over HTTPS, without Kerberos: it sends
NTLM inside SPNEGO, with the mechListMIC, and checks gatehouse's final token
(mechListMIC included) before it reports success.

usage: pyspnego_negotiate.py URL USER PASSWORD CAFILE SERVERNAME
Prints the final status code, whether the client completed, then the body.
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
a = p.parse_args()

u = urllib.parse.urlsplit(a.url)
ctx = ssl.create_default_context(cafile=a.cafile)
raw = socket.create_connection((u.hostname, u.port))
tls = ctx.wrap_socket(raw, server_hostname=a.servername)
conn = http.client.HTTPSConnection(a.servername, u.port, context=ctx)
conn.sock = tls  # one connection: NTLM inside SPNEGO is connection-bound

cert = tls.getpeercert(binary_form=True)
bindings = GssChannelBindings(application_data=b"tls-server-end-point:" + hashlib.sha256(cert).digest())
client = spnego.client(a.user, a.password, hostname=a.servername, service="HTTP",
                       protocol="negotiate", channel_bindings=bindings)
path = u.path or "/"
token = client.step()
status, body = None, b""
for _ in range(4):
    conn.request("GET", path, headers={"Authorization": "Negotiate " + base64.b64encode(token).decode()})
    r = conn.getresponse()
    body = r.read()
    status = r.status
    answer = r.getheader("WWW-Authenticate", "")
    if not answer.startswith("Negotiate "):
        break
    # The last token (accept-completed, with gatehouse's mechListMIC) arrives
    # with the 200; the client must accept it too.
    token = client.step(base64.b64decode(answer[len("Negotiate "):]))
    if status != 401:
        break
print(status)
print("complete" if client.complete else "incomplete")
sys.stdout.write(body.decode(errors="replace"))
