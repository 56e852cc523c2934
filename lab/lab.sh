#!/usr/bin/env bash
# The test domain, on loopback, with no systemd:
#   - Samba AD DC for realm AD.TEST / NetBIOS domain ADTEST on 127.0.0.21 (KDC, LDAP,
#     NETLOGON; winbindd answers NTLM pass-through for ntlm_auth)
#   - users alice (Alice-Pass1), bob (Bob-Pass1), carol (Carol-Pass1), user01..user10
#     (User-Pass1); service account
#     svc-proxy (SPN HTTP/proxy.ad.test) trusted for delegation to HTTP/backend.ad.test
#   - Apache httpd with mod_auth_gssapi on 127.0.0.1:18080: a Kerberos-only backend
#     (SPN HTTP/backend.ad.test) that answers with the user it authenticated
#
#   Many more users for the many-users test and benchmark: lab/bulk_users.py N
#   (perf00001.., password Perf00001-Pass1 ..., after start; idempotent).
#
#   lab/lab.sh start    provision and start (about 20 s; installs Debian packages if missing)
#   lab/lab.sh start --take-over   (or LAB_TAKE_OVER=1) the same where the machine's own
#                       Samba, winbind, KDC or whatever holds the lab's ports runs: stops
#                       them first. Without it the lab refuses, having touched nothing.
#                       LAB_GUARD_ONLY=1: only that check (and take-over), then exit.
#   lab/lab.sh stop
#   lab/lab.sh status
#   lab/lab.sh kdc-stop | kdc-start   stop or start the DC process only (the
#                       domain, its keys and the backend stay): for outage tests
# Writes $LAB/env (default LAB=/tmp/gatehouse-lab) with KRB5_CONFIG, SMB_CONF and friends.
# Run as root: Samba needs it, and winbind's privileged pipe is for root and winbindd_priv.
set -euo pipefail
LAB=${LAB:-/tmp/gatehouse-lab}
DC_IP=${DC_IP:-127.0.0.21}
BACKEND_PORT=${BACKEND_PORT:-18080}
REALM=AD.TEST; DOMAIN=ADTEST; DNSDOM=ad.test
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
PKGS="samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind krb5-user smbclient apache2 libapache2-mod-auth-gssapi python3-samba iproute2"

say() { printf '[lab] %s\n' "$*"; }
. "$(dirname "$0")/guard.sh"

# Only processes the lab started: own_pid checks a pid file still names the lab's program.
stop() {
  local pid
  pid=$(own_pid "$LAB/apache/run/httpd.pid" apache2)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  pid=$(own_pid "$LAB/samba.pid" samba)
  if [ -n "$pid" ]; then
    # samba's own children (smbd, winbindd, the RPC servers) outlive it by a
    # moment and still write into $LAB/dc: wait for them too, or the
    # provisioning's rm -rf below races them.
    local children
    children=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)
    kill "$pid" 2>/dev/null || true
    for p in $pid $children; do
      for _ in $(seq 100); do alive "$p" || break; sleep 0.1; done
    done
  fi
}

running() { [ -n "$(own_pid "$LAB/samba.pid" samba)" ]; }

# Debian starts smbd, nmbd and winbind when it installs them; the lab needs their
# programs, not those services (they would hold its ports and winbind's socket).
# policy-rc.d is what invoke-rc.d and deb-systemd-invoke ask first.
install_packages() {
  local policy=/usr/sbin/policy-rc.d
  say "installing Debian packages (their services are not started)"
  apt-get update >/dev/null
  if [ -e "$policy" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PKGS >/dev/null
    return
  fi
  printf '#!/bin/sh\n# lab/lab.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  # shellcheck disable=SC2064 # the path is fixed now, not when the trap runs
  trap "rm -f $policy" EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PKGS >/dev/null
  rm -f "$policy"
  trap - EXIT
}

start_samba() {
  samba -F --debug-stdout -s "$LAB/dc/etc/smb.conf" </dev/null >>"$LAB/samba.log" 2>&1 &
  echo $! >"$LAB/samba.pid"
  for _ in $(seq 300); do
    if ss -ltn | grep -q "$DC_IP:88 " && wbinfo -p >/dev/null 2>&1; then return 0; fi
    running || { tail -20 "$LAB/samba.log"; return 1; }
    sleep 0.1
  done
  return 1
}

case "${1:-start}" in
  stop) stop; say stopped; exit 0 ;;
  kdc-stop)
    running || { echo "lab.sh: no lab DC runs at $LAB" >&2; exit 1; }
    kill "$(own_pid "$LAB/samba.pid" samba)"
    for _ in $(seq 100); do running || break; sleep 0.1; done
    say "DC stopped"; exit 0 ;;
  kdc-start) start_samba; say "DC started"; exit 0 ;;
  status) if running; then say "running ($LAB/env)"; exit 0; else say "not running"; exit 1; fi ;;
  start)
    case "${2:-}" in
      --take-over) LAB_TAKE_OVER=1 ;;
      '') ;;
      *) echo "usage: $0 start [--take-over]" >&2; exit 2 ;;
    esac ;;
  *) echo "usage: $0 start [--take-over]|stop|status|kdc-stop|kdc-start" >&2; exit 2 ;;
esac

[ "$(id -u)" -eq 0 ] || { echo "lab.sh: run as root" >&2; exit 1; }
guard || exit 1
if [ "${LAB_GUARD_ONLY:-0}" = 1 ]; then say "nothing in the lab's way"; exit 0; fi
dpkg -s $PKGS >/dev/null 2>&1 || install_packages
stop
for _ in $(seq 30); do rm -rf "$LAB" 2>/dev/null && break; sleep 0.2; done
rm -rf "$LAB"; mkdir -p "$LAB"
D=$LAB/dc

say "provisioning $REALM on $DC_IP"
samba-tool domain provision --realm=$REALM --domain=$DOMAIN --server-role=dc \
  --dns-backend=NONE --host-name=dc1 --host-ip=$DC_IP --adminpass='Adm1n-Pass!' \
  --targetdir="$D" \
  --option="interfaces = $DC_IP/8" --option="bind interfaces only = yes" \
  --option="pid directory = $D/run" --option="ncalrpc dir = $D/run/ncalrpc" \
  --option="ntp signd socket directory = $D/run/ntp_signd" \
  --option="log file = $D/log/log.%m" --option="log level = 1" \
  > "$LAB/provision.log" 2>&1
mkdir -p "$D/run" "$D/log" "$D/cache" /run/samba
SMB_CONF=$D/etc/smb.conf

# -F: foreground without -i, which would exit on stdin EOF under CI.
start_samba || { cat "$LAB/samba.log"; exit 1; }
wbinfo -p >/dev/null
chgrp winbindd_priv "$D/state/winbindd_privileged" 2>/dev/null || true
say "samba up (pid $(cat "$LAB/samba.pid"))"

cat >"$LAB/krb5.conf" <<KRB
[libdefaults]
  default_realm = $REALM
  dns_lookup_kdc = false
  dns_lookup_realm = false
  rdns = false
  dns_canonicalize_hostname = false
  forwardable = true
  udp_preference_limit = 0
[realms]
  $REALM = {
    kdc = $DC_IP:88
    admin_server = $DC_IP
  }
[domain_realm]
  .$DNSDOM = $REALM
  $DNSDOM = $REALM
KRB

S="-s $SMB_CONF"
for u in alice:Alice-Pass1 bob:Bob-Pass1 carol:Carol-Pass1; do
  samba-tool user create "${u%%:*}" "${u#*:}" $S >/dev/null
done
# Ten more for the benchmarks: user01 .. user10, password User-Pass1.
for i in $(seq -w 1 10); do samba-tool user create "user$i" User-Pass1 $S >/dev/null; done
samba-tool user create svc-proxy "Proxy-$RANDOM-Pass1" $S >/dev/null
samba-tool user create svc-backend "Backend-$RANDOM-Pass1" $S >/dev/null
samba-tool user setexpiry --noexpiry svc-proxy $S >/dev/null
samba-tool user setexpiry --noexpiry svc-backend $S >/dev/null
samba-tool spn add HTTP/proxy.$DNSDOM svc-proxy $S
samba-tool spn add HTTP/backend.$DNSDOM svc-backend $S
samba-tool delegation for-any-protocol svc-proxy on $S
samba-tool delegation add-service svc-proxy HTTP/backend.$DNSDOM $S
# A lockout policy, so that the DC counts bad passwords (badPwdCount) as AD does.
samba-tool domain passwordsettings set --account-lockout-threshold=10 $S >/dev/null
# AES only for the service accounts (AD would otherwise pick RC4 for user-account SPNs).
python3 - "$SMB_CONF" <<'PY'
import sys, ldb
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session
lp = LoadParm(); lp.load(sys.argv[1])
db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp)
for account in ("svc-proxy", "svc-backend"):
    dn = db.search(base=db.domain_dn(), expression="(sAMAccountName=%s)" % account, attrs=[])[0].dn
    m = ldb.Message(dn)
    m["e"] = ldb.MessageElement("24", ldb.FLAG_MOD_REPLACE, "msDS-SupportedEncryptionTypes")
    db.modify(m)
# carol signs in as ADTEST\carol but her UPN is not carol@ad.test: for sites
# that impersonate users by UPN (delegation_user = "upn").
dn = db.search(base=db.domain_dn(), expression="(sAMAccountName=carol)", attrs=[])[0].dn
m = ldb.Message(dn)
m["u"] = ldb.MessageElement("carol.jones@corp.example", ldb.FLAG_MOD_REPLACE, "userPrincipalName")
db.modify(m)
PY
samba-tool domain exportkeytab "$LAB/proxy.keytab" --principal=svc-proxy $S >/dev/null
samba-tool domain exportkeytab "$LAB/proxy.keytab" --principal=HTTP/proxy.$DNSDOM $S >/dev/null
samba-tool domain exportkeytab "$LAB/backend.keytab" --principal=HTTP/backend.$DNSDOM $S >/dev/null
say "users, service accounts, SPNs, delegation and keytabs ready"

A=$LAB/apache; M=/usr/lib/apache2/modules
mkdir -p "$A/run" "$A/cgi"
install -o www-data -g www-data -m 600 "$LAB/backend.keytab" "$A/http.keytab"
cat >"$A/cgi/whoami" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "REMOTE_USER=$REMOTE_USER"
echo "AUTH_TYPE=$AUTH_TYPE"
echo "X_REMOTE_USER=$HTTP_X_REMOTE_USER"
CGI
chmod 755 "$A/cgi/whoami"
cat >"$A/httpd.conf" <<HTTPD
ServerRoot $A
ServerName backend.$DNSDOM
Listen 127.0.0.1:$BACKEND_PORT
PidFile $A/run/httpd.pid
DefaultRuntimeDir $A/run
Mutex file:$A/run default
ErrorLog $A/error.log
LogLevel info auth_gssapi:debug
LogFormat "%h \"%r\" %>s user=%u" simple
CustomLog $A/access.log simple
User www-data
Group www-data
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule authz_user_module $M/mod_authz_user.so
LoadModule authn_core_module $M/mod_authn_core.so
LoadModule auth_gssapi_module $M/mod_auth_gssapi.so
LoadModule alias_module $M/mod_alias.so
LoadModule cgid_module $M/mod_cgid.so
LoadModule env_module $M/mod_env.so
LoadModule headers_module $M/mod_headers.so
ScriptSock $A/run/cgid.sock
ScriptAlias / $A/cgi/whoami/
<Location />
  AuthType GSSAPI
  AuthName "Kerberos backend"
  GssapiCredStore keytab:$A/http.keytab
  GssapiAllowedMech krb5
  GssapiLocalName Off
  # Keep the authentication on the connection, as IIS does.
  GssapiConnectionBound On
  Require valid-user
  Header always set X-Remote-User "expr=%{REMOTE_USER}"
</Location>
HTTPD
KRB5_CONFIG=$LAB/krb5.conf apache2 -f "$A/httpd.conf" -k start
for _ in $(seq 50); do ss -ltn | grep -q "127.0.0.1:$BACKEND_PORT " && break; sleep 0.1; done
say "Kerberos-only backend on 127.0.0.1:$BACKEND_PORT"

cat >"$LAB/env" <<ENV
export LAB=$LAB
export KRB5_CONFIG=$LAB/krb5.conf
export SMB_CONF=$SMB_CONF
export LAB_DC_IP=$DC_IP LAB_REALM=$REALM LAB_DOMAIN=$DOMAIN
export LAB_PROXY_KEYTAB=$LAB/proxy.keytab
export LAB_BACKEND=http://127.0.0.1:$BACKEND_PORT
ENV

# Self-checks: the DC checks NTLM passwords through winbind, and the backend takes Kerberos.
ntlm_auth --configfile="$SMB_CONF" --username=alice --domain=$DOMAIN --password='Alice-Pass1' >/dev/null
export KRB5_CONFIG=$LAB/krb5.conf
KRB5CCNAME=FILE:$LAB/cc.alice sh -c 'echo Alice-Pass1 | kinit alice >/dev/null'
out=$(KRB5CCNAME=FILE:$LAB/cc.alice curl -sf --negotiate -u : --resolve backend.$DNSDOM:$BACKEND_PORT:127.0.0.1 http://backend.$DNSDOM:$BACKEND_PORT/)
echo "$out" | grep -q "REMOTE_USER=alice@$REALM" || { echo "backend self-check failed: $out" >&2; exit 1; }
say "ready: source $LAB/env"
