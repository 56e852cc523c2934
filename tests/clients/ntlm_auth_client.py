"""Samba's ntlm_auth (--helper-protocol=ntlmssp-client-1) as the NTLM client,
speaking HTTP through a plain socket.

usage: ntlm_auth_client.py HOST PORT PATH USER DOMAIN PASSWORD SMB_CONF
Prints the final status code, then the body.
"""
import base64
import http.client
import subprocess
import sys

host, port, path, user, domain, password, smb_conf = sys.argv[1:8]
helper = subprocess.Popen(
    ["ntlm_auth", "--helper-protocol=ntlmssp-client-1", "--username=" + user,
     "--domain=" + domain, "--password=" + password, "--configfile=" + smb_conf],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def ask(line):
    helper.stdin.write(line + "\n")
    helper.stdin.flush()
    reply = helper.stdout.readline().strip()
    kind, _, blob = reply.partition(" ")
    return kind, blob


conn = http.client.HTTPConnection(host, int(port))
kind, blob = ask("YR")
assert kind == "YR", (kind, blob)
status, body = None, b""
for _ in range(3):
    conn.request("GET", path, headers={"Authorization": "NTLM " + blob})
    r = conn.getresponse()
    body = r.read()
    status = r.status
    challenge = r.getheader("WWW-Authenticate", "")
    if status != 401 or not challenge.startswith("NTLM "):
        break
    kind, blob = ask("TT " + challenge[5:])
    # KK: here is a token; AF: authentication finished, here is the last token.
    if kind not in ("KK", "AF"):
        sys.stderr.write("ntlm_auth answered %s %s\n" % (kind, blob))
        break
helper.stdin.close()
print(status)
sys.stdout.write(body.decode(errors="replace"))
