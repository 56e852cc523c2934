#!/usr/bin/env bash
# Builds the Debian package: target/debian/gatehouse_<version>_<arch>.deb.
# cargo-deb comes from crates.io (cargo install) the first time.
#   scripts/package.sh            build the package
#   scripts/package.sh --check    build it, then check its contents and the unit
#   ... --dev                       from the debug build (scripts/test.sh: fast, not for shipping)
#   ... --install                   (as root) also dpkg -i it, start the packaged binary as the
#                                   gatehouse user on a port below 1024, and dpkg -r it
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
CARGO_DEB_VERSION=3.6.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
check=false; install=false; profile=()
for a in "$@"; do
  case "$a" in
    --check) check=true ;;
    --dev) profile=(--profile dev --fast) ;;
    --install) check=true; install=true ;;
    *) echo "usage: scripts/package.sh [--check] [--dev] [--install]" >&2; exit 2 ;;
  esac
done
cargo deb -p gatehouse --locked "${profile[@]}"
deb=$(ls -t target/debian/gatehouse_*.deb | head -1)
echo "$deb"
$check || exit 0

contents=$(dpkg-deb -c "$deb")
for f in usr/bin/gatehouse etc/gatehouse/gatehouse.toml etc/logrotate.d/gatehouse \
         usr/lib/systemd/system/gatehouse.service usr/share/doc/gatehouse/operations.md; do
  grep -Eq " (\./)?$f\$" <<<"$contents" || { echo "missing in $deb: $f" >&2; exit 1; }
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/gatehouse/gatehouse.toml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
# The packaged example passes the packaged binary's own check.
"$tmp/usr/bin/gatehouse" check -c "$tmp/etc/gatehouse/gatehouse.toml" --offline
if command -v systemd-analyze >/dev/null; then
  # The unit names /usr/bin/gatehouse: verify it against the extracted tree.
  sed "s#/usr/bin/gatehouse#$tmp/usr/bin/gatehouse#g" "$tmp/usr/lib/systemd/system/gatehouse.service" >"$tmp/gatehouse.service"
  systemd-analyze verify "$tmp/gatehouse.service"
fi
echo "package checked: $deb"
$install || exit 0

# Installed on this machine: the account, the capability, a clean removal.
dpkg -i "$deb"
getent passwd gatehouse >/dev/null || { echo "postinst made no gatehouse account" >&2; exit 1; }
[ -x /usr/bin/gatehouse ] && [ -f /etc/logrotate.d/gatehouse ]
# A free port below 1024 on loopback (the example's port 80 may be taken).
low=$(python3 -c 'import socket
for p in range(900, 1000):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: s.close()')
run=$(mktemp -d)
chown gatehouse:gatehouse "$run"
sed -e "s#^bind = \"0.0.0.0:80\"#bind = \"127.0.0.1:$low\"#" -e 's#^bind = "127.0.0.1:9180"#bind = "127.0.0.1:0"#' \
    -e "s#/var/log/gatehouse/access.log#$run/access.log#" /etc/gatehouse/gatehouse.toml >"$run/gatehouse.toml"
chown gatehouse:gatehouse "$run/gatehouse.toml"
# As the unit runs it: the gatehouse account, CAP_NET_BIND_SERVICE as an ambient capability.
setpriv --reuid gatehouse --regid gatehouse --init-groups --inh-caps +net_bind_service \
    --ambient-caps +net_bind_service /usr/bin/gatehouse run -c "$run/gatehouse.toml" 2>"$run/stderr" &
pid=$!
for _ in $(seq 100); do grep -q "gatehouse is serving" "$run/stderr" && break; sleep 0.1; done
serving=false; grep -q "gatehouse is serving" "$run/stderr" && serving=true
user=$(ps -o user= -p "$pid" || true)
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
$serving || { cat "$run/stderr" >&2; echo "the packaged gatehouse did not start" >&2; exit 1; }
[ "$user" = gatehouse ] || { echo "ran as '$user', not gatehouse" >&2; exit 1; }
grep -q "addr=127.0.0.1:$low" "$run/stderr" || { cat "$run/stderr" >&2; echo "port $low not bound" >&2; exit 1; }
# Without the capability the same port is refused: the capability is what bound it.
if setpriv --reuid gatehouse --regid gatehouse --init-groups /usr/bin/gatehouse run -c "$run/gatehouse.toml" 2>"$run/nocap" & then
  nocap=$!; sleep 1; kill -TERM "$nocap" 2>/dev/null || true; wait "$nocap" 2>/dev/null || true
fi
grep -q "Permission denied" "$run/nocap" || { cat "$run/nocap" >&2; echo "bound port $low without the capability?" >&2; exit 1; }
rm -rf "$run"
dpkg -r gatehouse
[ ! -e /usr/bin/gatehouse ] && [ ! -e /usr/lib/systemd/system/gatehouse.service ] || { echo "dpkg -r left files" >&2; exit 1; }
# The edited configuration stays after -r, as Debian keeps conffiles; --purge takes it and the account.
dpkg --purge gatehouse
[ ! -e /etc/gatehouse/gatehouse.toml ] && ! getent passwd gatehouse >/dev/null || { echo "dpkg --purge left the configuration or the account" >&2; exit 1; }
echo "package installed, ran as gatehouse on 127.0.0.1:$low, removed: $deb"

