"""Prints, in hex, the PAC logon information buffer (type 1) of the ticket in an
interop capture: decrypted with the capture's service key by the capture
folder's own verifier (verify_krb.py). Usage: pac_from_capture.py DIR FILE.json
Used by tests/pac_vectors.rs; nothing of the capture is kept in this repository."""
import sys, json, base64, os
sys.path.insert(0, sys.argv[1])
import verify_krb as v
path = sys.argv[2]
d = json.load(open(path))
tok = base64.b64decode(d['negtokeninit_b64'])
keys = d['service_keys_hex']
if isinstance(keys, str):
    import ast; keys = ast.literal_eval(keys)
keys = {int(k.split()[0]): bytes.fromhex(h) for k, h in keys.items()}
mt, mtok = v.parse_spnego(tok)
t, val, _ = v.der(mtok)
t1, oid, i = v.der(val)
ap = val[i+2:]
t, apv, _ = v.der(ap)
apseq = v.inner(apv)[1]
tkt = v.inner(v.ctx(apseq, 3))[1]; tktseq = v.inner(tkt)[1]
enc = v.inner(v.ctx(tktseq, 3))[1]
et = v.intval(v.ctx(enc, 0)); ct = v.inner(v.ctx(enc, 2))[1]
pt = v.decrypt(et, keys[et], 2, ct)
etp = v.inner(v.inner(pt)[1])[1]
authz = v.inner(v.ctx(etp, 10))[1]
def walk(ad):
    for _, el in v.children(ad):
        typ = v.intval(v.ctx(el, 0)); data = v.inner(v.ctx(el, 1))[1]
        if typ == 1:  # AD-IF-RELEVANT
            yield from walk(v.inner(data)[1] if data[0] == 0x30 else data)
        elif typ == 128:
            yield data
for pac in walk(authz):
    import struct
    n, ver = struct.unpack_from('<II', pac, 0)
    for k in range(n):
        ty, size, off = struct.unpack_from('<IIQ', pac, 8 + 16*k)
        if ty == 1:
            print(pac[off:off+size].hex())
