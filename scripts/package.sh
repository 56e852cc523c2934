#!/usr/bin/env bash
# Builds the Debian package: target/debian/gatehouse_<version>_<arch>.deb.
# cargo-deb comes from crates.io (cargo install) the first time.
#   scripts/package.sh            build the package
#   scripts/package.sh --check    build it, then check its contents and the unit
#   ... --dev                       from the debug build (scripts/test.sh: fast, not for shipping)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
CARGO_DEB_VERSION=3.6.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
check=false; profile=()
for a in "$@"; do
  case "$a" in
    --check) check=true ;;
    --dev) profile=(--profile dev) ;;
    *) echo "usage: scripts/package.sh [--check] [--dev]" >&2; exit 2 ;;
  esac
done
cargo deb -p gatehouse --locked "${profile[@]}"
deb=$(ls -t target/debian/gatehouse_*.deb | head -1)
echo "$deb"
$check || exit 0

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/gatehouse ./etc/gatehouse/gatehouse.toml ./etc/logrotate.d/gatehouse \
         ./lib/systemd/system/gatehouse.service ./usr/share/doc/gatehouse/operations.md; do
  grep -q " $f\$" <<<"$contents" || { echo "missing in $deb: $f" >&2; exit 1; }
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/gatehouse/gatehouse.toml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
# The packaged example passes the packaged binary's own check.
"$tmp/usr/bin/gatehouse" check -c "$tmp/etc/gatehouse/gatehouse.toml" --offline
if command -v systemd-analyze >/dev/null; then
  # The unit names /usr/bin/gatehouse: verify it against the extracted tree.
  sed "s#/usr/bin/gatehouse#$tmp/usr/bin/gatehouse#g" "$tmp/lib/systemd/system/gatehouse.service" >"$tmp/gatehouse.service"
  systemd-analyze verify "$tmp/gatehouse.service"
fi
echo "package checked: $deb"
