#!/usr/bin/env bash
# Runs every test: unit tests (with MS-NLMP's published vectors), framing and
# path checks, and the integration tests that start the real gatehouse binary
# against real backends, real clients (curl, pyspnego, Samba's ntlm_auth) and
# the lab domain (Samba AD DC on loopback, started here and stopped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
# Before the lab starts: lab.sh stops no service it did not start (in namespaces of
# its own, so the lab below is neither seen nor touched).
scripts/test-lab-guard.sh

# pyspnego (an independent NTLM and SPNEGO client) and httpx with h2 (an
# HTTP/2 client library), in a virtualenv of our own.
venv=target/pyvenv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import spnego, httpx, h2, pyotp' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet pyspnego 'httpx[http2]' pyotp
fi
export GATEHOUSE_PYTHON=$PWD/$venv/bin/python

export LAB=${LAB:-/tmp/gatehouse-lab}
export GATEHOUSE_LAB_REQUIRED=1
# The real clients' captures beside the checkout (as in CI): their tests must run.
if [ -d ../shared/interop-captures ]; then
  export GATEHOUSE_CAPTURES_REQUIRED=1
else
  echo "*** ../shared/interop-captures is absent: the tests of real clients' captures will be skipped ***" >&2
fi

# Every gatehouse a test started must be gone when the tests are: one left
# running (after a panic, or behind a wrapper that forked) keeps listening with
# its folder deleted. Checked however the run ends; a leftover fails the run.
gatehouse_bin=$(realpath -m "${CARGO_TARGET_DIR:-target}/debug/gatehouse")
leftovers() {
  for exe in /proc/[0-9]*/exe; do
    case "$(readlink "$exe" 2>/dev/null)" in
      "$gatehouse_bin" | "$gatehouse_bin (deleted)") pid=${exe#/proc/}; echo "${pid%/exe}" ;;
    esac
  done
}
finish() {
  status=$?
  lab/lab.sh stop || true
  left=$(leftovers)
  if [ -n "$left" ]; then
    echo "FAILED: gatehouse processes outlived the tests:" >&2
    ps -o pid,ppid,etime,args -p $(echo $left | tr ' ' ',') >&2 || true
    kill -KILL $left 2>/dev/null || true
    status=1
  fi
  exit $status
}
lab/lab.sh start
trap finish EXIT

# The test OpenID provider (tests/oidc.rs), from the npm registry into target/idp.
sh tests/idp/install.sh
cargo build --workspace --locked
cargo test --workspace --locked

# The Debian package, from the debug build just made (a release build would
# double the run): its contents, conffile, the example configuration through
# the packaged binary's `check`, `systemd-analyze verify` on the unit, then
# dpkg -i, the packaged binary as the gatehouse user on a port below 1024,
# dpkg -r and --purge.
scripts/package.sh --install --dev
