#!/usr/bin/env bash
# Runs every test: unit tests (with MS-NLMP's published vectors), framing and
# path checks, and the integration tests that start the real gatehouse binary
# against real backends, real clients (curl, pyspnego, Samba's ntlm_auth) and
# the lab domain (Samba AD DC on loopback, started here and stopped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

# pyspnego (an independent NTLM and SPNEGO client) and httpx with h2 (an
# HTTP/2 client library), in a virtualenv of our own.
venv=target/pyvenv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import spnego, httpx, h2' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet pyspnego 'httpx[http2]'
fi
export GATEHOUSE_PYTHON=$PWD/$venv/bin/python

export LAB=${LAB:-/tmp/gatehouse-lab}
lab/lab.sh start
trap 'lab/lab.sh stop' EXIT
export GATEHOUSE_LAB_REQUIRED=1

cargo build --workspace --locked
cargo test --workspace --locked
