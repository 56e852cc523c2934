"""Prints, as JSON, what gatehouse reads from the Kerberos AP-REQ inside an
interop capture's NegTokenInit (the ticket's service name and realm, the
authenticator's ciphertext), found by the capture folder's own verifier
(verify_krb.py), which also decrypts the ticket with the capture's service key
and the authenticator with the ticket's session key: so the bytes printed are
the authenticator. Usage: ap_req_from_capture.py DIR FILE.json
Used by tests/captures.rs; nothing of the capture is kept in this repository."""
import sys, json, base64
sys.path.insert(0, sys.argv[1])
import verify_krb as v
d = json.load(open(sys.argv[2]))
keys = {int(k.split()[0]): bytes.fromhex(h) for k, h in d['service_keys_hex'].items()}
mt, mtok = v.parse_spnego(base64.b64decode(d['negtokeninit_b64']))
t, val, _ = v.der(mtok)
t1, oid, i = v.der(val)
t, apv, _ = v.der(val[i + 2:])
apseq = v.inner(apv)[1]
tkt = v.inner(v.ctx(apseq, 3))[1]
tktseq = v.inner(tkt)[1]
enc = v.inner(v.ctx(tktseq, 3))[1]
et = v.intval(v.ctx(enc, 0))
etp = v.inner(v.inner(v.decrypt(et, keys[et], 2, v.inner(v.ctx(enc, 2))[1]))[1])[1]
skey = v.inner(v.ctx(etp, 1))[1]
auth = v.inner(v.ctx(apseq, 4))[1]
cipher = v.inner(v.ctx(auth, 2))[1]
v.decrypt(v.intval(v.ctx(auth, 0)), v.inner(v.ctx(skey, 1))[1], 11, cipher)  # raises unless it is the authenticator
print(json.dumps({'service': v.princ(v.ctx(tktseq, 2)), 'realm': v.gstr(v.ctx(tktseq, 1)), 'authenticator_hex': cipher.hex()}))
