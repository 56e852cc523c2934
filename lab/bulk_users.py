#!/usr/bin/python3
"""Many lab users at once, for the many-users test and benchmark (issue 20).

    lab/bulk_users.py N [--accounts FILE] [--prefix perf]

Makes the domain users perf00001 .. perfN (N at most 99,999) in the lab's
sam.ldb, each with the password of `password()` (perf00042: Perf00042-Pass1),
never expiring, as lab/lab.sh makes its own users: Samba's python bindings on
the database, as root, while the DC runs (its KDC and winbind read the same
database). Idempotent: users already there are left as they are (their
password too), so a second run makes none and costs one search; the lab's own
users (alice, bob, user01 ...) are never touched, since every name made here
starts with the prefix and a number. With --accounts, writes
`ADTEST:perf00001:Perf00001-Pass1` lines for all N users (gatehouse's
`[accounts] source = "file"` format), whether made now or before.

Prints one line: `made M of N users in S s`. Run with Debian's python3
(/usr/bin/python3): python3-samba is installed for it, not for a pyenv.

samba-tool user create costs about half a second per user (a new python and
a new database open each time); here one process opens the database once and
adds each user in one operation, a hundred per transaction (BULK_BATCH=N
to change it).
"""

import argparse
import os
import sys
import time

LAB = os.environ.get("LAB", "/tmp/gatehouse-lab")
DOMAIN = "ADTEST"
BATCH = int(os.environ.get("BULK_BATCH", "100"))


def name(prefix, i):
    return "%s%05d" % (prefix, i)


def password(user):
    """The user's password: known to the tests, and meeting AD's complexity rule."""
    return user[0].upper() + user[1:] + "-Pass1"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="how many users (1 to 99999)")
    ap.add_argument("--accounts", help="write DOMAIN:user:password lines for all N users here")
    ap.add_argument("--prefix", default="perf", help="user names start with this (letters only; default perf)")
    ap.add_argument("--smb-conf", default=os.path.join(LAB, "dc/etc/smb.conf"))
    args = ap.parse_args()
    if not 1 <= args.n <= 99999:
        sys.exit("bulk_users.py: N must be 1 to 99999, not %d" % args.n)
    if not (args.prefix.isalpha() and args.prefix.isascii() and len(args.prefix) <= 15):
        # sAMAccountName holds 20 characters at most; the number takes 5.
        sys.exit("bulk_users.py: --prefix must be 1 to 15 ASCII letters, not %r" % args.prefix)
    if not os.path.exists(args.smb_conf):
        sys.exit("bulk_users.py: no lab at %s (%s is missing): run lab/lab.sh start" % (LAB, args.smb_conf))
    if os.geteuid() != 0:
        sys.exit("bulk_users.py: run as root (the lab's sam.ldb is root's)")

    import ldb
    from samba import dsdb
    from samba.auth import system_session
    from samba.param import LoadParm
    from samba.samdb import SamDB

    lp = LoadParm()
    lp.load(args.smb_conf)
    db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp)
    start = time.monotonic()
    users_dn = db.get_wellknown_dn(db.get_default_basedn(), dsdb.DS_GUID_USERS_CONTAINER)
    dns_domain = ldb.Dn(db, db.domain_dn()).canonical_str().replace("/", "")

    def existing():
        return {
            str(m["sAMAccountName"][0]).lower()
            for m in db.search(
                base=db.domain_dn(),
                scope=ldb.SCOPE_SUBTREE,
                expression="(&(objectClass=user)(sAMAccountName=%s*))" % args.prefix,
                attrs=["sAMAccountName"],
            )
        }

    wanted = [name(args.prefix, i) for i in range(1, args.n + 1)]
    missing = [u for u in wanted if u not in existing()]
    made = 0
    for at in range(0, len(missing), BATCH):
        db.transaction_start()
        try:
            # Asked again under the transaction's lock: another run (a test
            # binary's other test) may have made some of them meanwhile.
            present = existing()
            for user in missing[at : at + BATCH]:
                if user in present:
                    continue
                # One add with the password and "never expires" in it: what
                # SamDB.newuser and setexpiry do in five.
                db.add(
                    {
                        "dn": "CN=%s,%s" % (user, users_dn),
                        "objectClass": "user",
                        "sAMAccountName": user,
                        "userPrincipalName": "%s@%s" % (user, dns_domain),
                        "unicodePwd": ('"%s"' % password(user)).encode("utf-16-le"),
                        "userAccountControl": str(dsdb.UF_NORMAL_ACCOUNT | dsdb.UF_DONT_EXPIRE_PASSWD),
                    }
                )
                made += 1
        except Exception:
            db.transaction_cancel()
            raise
        db.transaction_commit()
    took = time.monotonic() - start

    if args.accounts:
        tmp = args.accounts + ".tmp"
        with open(tmp, "w") as f:
            for user in wanted:
                f.write("%s:%s:%s\n" % (DOMAIN, user, password(user)))
        os.replace(tmp, args.accounts)
    print("made %d of %d users in %.1f s" % (made, args.n, took))


if __name__ == "__main__":
    main()
