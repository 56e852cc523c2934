#!/usr/bin/env bash
# Installs what gatehouse needs on a fresh Debian 12 machine. Usage:
#   scripts/install-deps.sh [build|test|demo|bench]
# Installs only what is missing; runs `apt-get update` first when it installs.
set -euo pipefail
what=${1:-build}

# libkrb5-dev and libclang-dev: the kcd crate builds against MIT GSSAPI (bindgen).
# libsqlite3-dev: the [mfa] store (rusqlite links the system SQLite).
# libssl-dev: passkeys (webauthn-rs links the system OpenSSL).
pkgs="ca-certificates curl build-essential pkg-config openssl python3 libkrb5-dev libclang-dev libsqlite3-dev libssl-dev"
case "$what" in
  # faketime: one test runs gatehouse with its clock ahead (an expired ticket).
  # krb5-user: ktutil makes the keytab of the tests without a lab (kerberos_stall.rs).
  # iproute2 (ip, ss), util-linux (unshare), procps (pgrep): scripts/test-lab-guard.sh.
  # chromium, chromium-driver, python3-selenium, fonts-liberation: the sign-in page in a real
  # browser (tests/forms_browser.rs; without fonts the screenshots show no text).
  # python3-cryptography: tests/clients/browser_passkey.py signs crafted WebAuthn assertions
  # (a wrong RP id, no user verification) with the virtual authenticator's real key.
  # prometheus: promtool checks a scrape of /metrics, and a real Prometheus server scrapes
  # gatehouse in tests/operations.rs.
  # nodejs (20.18 or newer; the machine's apt source provides 20.20): the test
  # OpenID provider, oidc-provider, installed by tests/idp/install.sh with npm ci.
  test) pkgs="$pkgs python3-venv faketime krb5-user iproute2 util-linux procps chromium chromium-driver python3-selenium fonts-liberation python3-cryptography prometheus nodejs" ;;
  # nghttp2-client: h2load, for new TLS connections per second and HTTP/2 over TLS (BENCH_ONLY=tls).
  bench) pkgs="$pkgs nginx-light wrk procps nghttp2-client" ;;
esac

missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: run as root to install:$missing" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi

# Rust comes from rustup (Debian 12's rustc is too old for hyper 1.x and rustls).
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install Rust 1.85 or newer with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi

# oidc-provider 9 needs Node.js 20.18 or newer. Debian 12's own nodejs is 18: on a machine whose
# apt sources offer only that one, say so rather than fail later inside npm.
if [ "$what" = test ]; then
  node_version=$(node --version 2>/dev/null || echo none)
  case "$node_version" in
    v2[1-9].* | v[3-9][0-9].* | v20.18.* | v20.19.* | v20.[2-9][0-9].*) ;;
    *)
      echo "error: Node.js 20.18 or newer is needed for the test OpenID provider (tests/idp); found $node_version." >&2
      echo "       Debian 12's own nodejs is 18: add an apt source with Node.js 20 (e.g. NodeSource's node_20.x) and run this again." >&2
      exit 1 ;;
  esac
  if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found (tests/idp/install.sh installs the test OpenID provider with npm ci); install npm and run this again." >&2
    exit 1
  fi
fi
