#!/usr/bin/env bash
# The main job: gatehouse in front of a demo backend, on loopback.
#   plain HTTP on 127.0.0.1:8080, TLS (self-signed) on 127.0.0.1:8443,
#   backend (testkit's echo server) on 127.0.0.1:18081.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh demo
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p gatehouse -p testkit

state=${GATEHOUSE_DEMO_DIR:-/tmp/gatehouse-demo}
mkdir -p "$state"
if [ ! -f "$state/demo.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=demo.gatehouse.test" \
    -addext "subjectAltName=DNS:demo.gatehouse.test,DNS:localhost,IP:127.0.0.1" \
    -keyout "$state/demo.key" -out "$state/demo.pem" 2>/dev/null
fi
cat > "$state/gatehouse.toml" <<TOML
[log]
access = "access.log"

[[listener]]
name = "plain"
bind = "127.0.0.1:8080"

[[listener]]
name = "public"
bind = "127.0.0.1:8443"
tls = { cert = "demo.pem", key = "demo.key" }

[[site]]
name = "demo-plain"
listener = "plain"
backend = "http://127.0.0.1:18081"

[[site]]
name = "demo"
listener = "public"
backend = "http://127.0.0.1:18081"
TOML

target/release/gatehouse check -c "$state/gatehouse.toml"
target/release/gh-backend 127.0.0.1:18081 &
backend=$!
trap 'kill $backend 2>/dev/null || true' EXIT
cat <<MSG

gatehouse is starting. In another terminal, try:

  curl -sS --cacert $state/demo.pem --resolve demo.gatehouse.test:8443:127.0.0.1 https://demo.gatehouse.test:8443/hello
  curl -sS http://127.0.0.1:8080/chunks/5/500        # chunks flushed as they come
  tail -f $state/access.log                           # JSON-lines access log

The backend answers with the request it received (see the X-Forwarded-* headers).
Edit $state/gatehouse.toml and send SIGHUP to reload. Ctrl-C stops.

MSG
target/release/gatehouse run -c "$state/gatehouse.toml"
