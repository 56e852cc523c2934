#!/usr/bin/env bash
# The main job, on loopback: the lab domain (Samba AD DC for AD.TEST, and its
# Kerberos-only Apache backend on 127.0.0.1:18080), with gatehouse in front:
#   https://127.0.0.1:8443  Negotiate (Kerberos, or NTLM inside SPNEGO), NTLM or
#                           Basic at the edge (checked by the DC), then Kerberos
#                           Constrained Delegation to the Kerberos-only backend,
#                           which answers with the user it authenticated;
#   http://127.0.0.1:8080   NTLM at the edge in front of an echo backend
#                           (testkit, 127.0.0.1:18081) that shows what it received.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh demo
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p gatehouse -p testkit
export LAB=${LAB:-/tmp/gatehouse-lab}
lab/lab.sh start
# shellcheck disable=SC1091
. "$LAB/env"

state=${GATEHOUSE_DEMO_DIR:-/tmp/gatehouse-demo}
mkdir -p "$state"
# proxy.ad.test is the name Kerberos clients use (the lab's acceptor SPN).
if [ ! -f "$state/edge.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=proxy.ad.test" \
    -addext "subjectAltName=DNS:proxy.ad.test,DNS:demo.gatehouse.test,DNS:localhost,IP:127.0.0.1" \
    -keyout "$state/edge.key" -out "$state/edge.pem" 2>/dev/null
fi
cat > "$state/gatehouse.toml" <<TOML
[log]
access = "access.log"

[domain]
realm = "AD.TEST"
netbios_name = "ADTEST"
acceptor_spn = "HTTP/proxy.ad.test"

krb5_conf = "$KRB5_CONFIG"
keytab = "$LAB_PROXY_KEYTAB"
service_principal = "svc-proxy@AD.TEST"

[accounts]
source = "winbind"
smb_conf = "$SMB_CONF"

[[listener]]
name = "plain"
bind = "127.0.0.1:8080"

[[listener]]
name = "public"
bind = "127.0.0.1:8443"
tls = { cert = "edge.pem", key = "edge.key" }

[[site]]
name = "demo-plain"
listener = "plain"
backend = "http://127.0.0.1:18081"
auth = ["NTLM"]
identity_header = "X-Remote-User"

[[site]]
name = "kerberos-backend"
listener = "public"
backend = "http://127.0.0.1:18080"
host_header = "backend.ad.test"
auth = ["Negotiate", "NTLM", "Basic"]
delegation = "kcd"
backend_spn = "HTTP/backend.ad.test"
TOML

target/release/gatehouse check -c "$state/gatehouse.toml"
target/release/gh-backend 127.0.0.1:18081 &
backend=$!
trap 'kill $backend 2>/dev/null || true; lab/lab.sh stop' EXIT
cat <<MSG

gatehouse is starting. In another terminal, sign in as a lab user:

  curl -sS --ntlm -u 'ADTEST\\alice:Alice-Pass1' --cacert $state/edge.pem --resolve proxy.ad.test:8443:127.0.0.1 https://proxy.ad.test:8443/
      # -> REMOTE_USER=alice@AD.TEST from the Kerberos-only backend: no password reached it
  export KRB5_CONFIG=$KRB5_CONFIG KRB5CCNAME=FILE:$state/bob.cc; echo Bob-Pass1 | kinit bob
  curl -sS --negotiate -u : --cacert $state/edge.pem --resolve proxy.ad.test:8443:127.0.0.1 https://proxy.ad.test:8443/
      # -> REMOTE_USER=bob@AD.TEST: Kerberos at the edge, bob's own ticket as the delegation evidence
  curl -sS --basic -u carol:Carol-Pass1 --cacert $state/edge.pem --resolve proxy.ad.test:8443:127.0.0.1 https://proxy.ad.test:8443/
  curl -sS --ntlm -u 'ADTEST\\bob:Bob-Pass1' http://127.0.0.1:8080/hello            # the echo backend: X-Remote-User ADTEST\\bob
  curl -sS --ntlm -u 'ADTEST\\bob:Bob-Pass1' http://127.0.0.1:8080/chunks/5/500     # chunks flushed as they come
  curl -sS -i http://127.0.0.1:8080/hello                                             # no credentials: 401, WWW-Authenticate: NTLM
  tail -f $state/access.log                                                           # JSON lines, with user and auth

Users: alice/Alice-Pass1, bob/Bob-Pass1, carol/Carol-Pass1. Edit $state/gatehouse.toml
and send SIGHUP to reload. Ctrl-C stops.

MSG
target/release/gatehouse run -c "$state/gatehouse.toml"
