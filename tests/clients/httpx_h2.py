"""httpx (with h2), a browser-grade HTTP/2 client library, as a client.

usage: httpx_h2.py URL CAFILE [USER PASSWORD]
Prints the HTTP version, the status code, then the body.
"""
import sys

import httpx

url, cafile = sys.argv[1], sys.argv[2]
auth = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else None
with httpx.Client(http2=True, verify=cafile, auth=auth) as client:
    r = client.get(url)
    print(r.http_version)
    print(r.status_code)
    sys.stdout.write(r.text)
