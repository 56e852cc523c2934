#!/usr/bin/env bash
# lab/lab.sh must never stop a service it did not start: a winbindd of the machine's own
# (a domain member's users log on through it), a KDC, anything on the lab's ports. It
# refuses, touching nothing, unless told LAB_TAKE_OVER=1 / --take-over; its own
# processes from an earlier run it still stops and restarts.
#
# Everything runs in new PID, network and mount namespaces, with a tmpfs over
# /run/samba and LAB in a temporary folder: this test sees no process, port or winbind
# socket of the real lab (/tmp/gatehouse-lab), so it can neither count them nor break
# them, even if lab.sh had the bug it tests for.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test-lab-guard: run as root (as scripts/test.sh is)" >&2; exit 1; }
# LAB_TAKE_OVER=1 scripts/test.sh is for the real lab below, not for these cases.
unset LAB_TAKE_OVER LAB_GUARD_ONLY

if [ "${1:-}" != --inside ]; then
  if ! unshare --pid --fork --mount-proc --net true 2>/dev/null; then
    echo "FAILED: test-lab-guard needs unshare (util-linux) with PID, network and mount namespaces" >&2
    exit 1
  fi
  exec unshare --pid --fork --mount-proc --net "$0" --inside
fi

ip link set lo up
mkdir -p /run/samba && mount -t tmpfs tmpfs /run/samba
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LAB=$tmp/lab
mkdir -p "$tmp/bin" "$LAB"
failures=0
fail() { echo "FAILED: $*" >&2; failures=$((failures + 1)); }
alive() { [ -e "/proc/$1" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]; }
# Runs lab.sh, keeping its status and its output (both streams) in $out.
lab() { set +e; out=$("$@" 2>&1); status=$?; set -e; }
stop_dummy() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# 1. Nothing in the way: the guard passes.
lab env LAB_GUARD_ONLY=1 lab/lab.sh start
[ "$status" -eq 0 ] && grep -q "nothing in the lab's way" <<<"$out" ||
  fail "a machine with nothing in the way was refused (status $status): $out"

# 2. A winbindd the lab did not start (a domain member's, as far as lab.sh can know).
cp /bin/sleep "$tmp/bin/winbindd"
"$tmp/bin/winbindd" 300 &
winbindd=$!
lab env LAB_GUARD_ONLY=1 lab/lab.sh start
[ "$status" -ne 0 ] || fail "a running winbindd was not refused: $out"
grep -q "winbindd (pid $winbindd" <<<"$out" || fail "the refusal does not name winbindd (pid $winbindd): $out"
grep -q "LAB_TAKE_OVER=1 lab/lab.sh start" <<<"$out" || fail "the refusal does not say how to proceed: $out"
alive "$winbindd" || fail "the guard stopped winbindd"
# The real start refuses the same way before it installs, stops or provisions anything.
lab lab/lab.sh start
[ "$status" -ne 0 ] && grep -q "refusing to start" <<<"$out" || fail "lab.sh start did not refuse: $out"
alive "$winbindd" || fail "lab.sh start stopped winbindd"
[ -z "$(ls -A "$LAB")" ] || fail "lab.sh start changed \$LAB before refusing: $(ls -A "$LAB")"

# 3. Told to, it takes over: the flag and the variable both.
lab env LAB_GUARD_ONLY=1 LAB_TAKE_OVER=1 lab/lab.sh start
[ "$status" -eq 0 ] || fail "LAB_TAKE_OVER=1 did not proceed: $out"
grep -q "taking over: stopping winbindd (pid $winbindd" <<<"$out" || fail "the take-over does not say what it stops: $out"
for _ in $(seq 50); do alive "$winbindd" || break; sleep 0.1; done
alive "$winbindd" && fail "LAB_TAKE_OVER=1 left winbindd running"
stop_dummy "$winbindd"
"$tmp/bin/winbindd" 300 &
winbindd=$!
lab env LAB_GUARD_ONLY=1 lab/lab.sh start --take-over
[ "$status" -eq 0 ] && ! alive "$winbindd" || fail "--take-over did not stop winbindd (status $status): $out"
stop_dummy "$winbindd"

# 4. Anything on a port the lab needs, whatever its name: here a KDC on every address.
ln -s "$(realpath /usr/bin/python3)" "$tmp/bin/krb5kdc"
"$tmp/bin/krb5kdc" -c 'import socket, time
s = socket.socket(); s.bind(("0.0.0.0", 88)); s.listen(); time.sleep(300)' &
kdc=$!
for _ in $(seq 50); do ss -Hltn | grep -q '0.0.0.0:88 ' && break; sleep 0.1; done
"$tmp/bin/winbindd" 300 &
winbindd=$!
python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 18080)); s.listen(); time.sleep(300)' &
backend=$!
for _ in $(seq 50); do ss -Hltn | grep -q '127.0.0.1:18080 ' && break; sleep 0.1; done
lab env LAB_GUARD_ONLY=1 lab/lab.sh start
[ "$status" -ne 0 ] || fail "a KDC on 0.0.0.0:88 was not refused: $out"
grep -q "krb5kdc (pid $kdc" <<<"$out" || fail "the refusal does not name the KDC (pid $kdc): $out"
grep -q "holds tcp 0.0.0.0:88, which the lab's DC needs on 127.0.0.21" <<<"$out" ||
  fail "the refusal does not name port 88: $out"
grep -q "winbindd (pid $winbindd" <<<"$out" || fail "with a KDC as well, winbindd is not named: $out"
grep -q "(pid $backend)" <<<"$out" && grep -q "holds tcp 127.0.0.1:18080, which the lab's backend needs" <<<"$out" ||
  fail "the refusal does not name what holds the backend's port: $out"
alive "$kdc" && alive "$winbindd" && alive "$backend" || fail "the guard stopped something"
stop_dummy "$kdc"
stop_dummy "$winbindd"
stop_dummy "$backend"

# 5. The lab's own processes from an earlier run are not in its way: a "samba" whose pid
#    is in $LAB/samba.pid, with a winbindd child, as the lab's DC has.
cp /bin/bash "$tmp/bin/samba"
"$tmp/bin/samba" -c "'$tmp/bin/winbindd' 300 & wait" &
samba=$!
echo "$samba" >"$LAB/samba.pid"
for _ in $(seq 50); do pgrep -P "$samba" -x winbindd >/dev/null && break; sleep 0.1; done
lab env LAB_GUARD_ONLY=1 lab/lab.sh start
[ "$status" -eq 0 ] || fail "the lab's own DC and its winbindd were refused: $out"
lab lab/lab.sh status
[ "$status" -eq 0 ] || fail "lab.sh status does not see the lab's own DC: $out"
lab lab/lab.sh stop
alive "$samba" && fail "lab.sh stop left the lab's own DC running"
stop_dummy "$samba"
pkill -P 1 -x winbindd 2>/dev/null || true

# 6. A pid file that names someone else's process (left from before a reboot, the pid
#    reused) names nobody: stop leaves that process alone, and the guard still sees it.
"$tmp/bin/winbindd" 300 &
winbindd=$!
echo "$winbindd" >"$LAB/samba.pid"
lab lab/lab.sh stop
alive "$winbindd" || fail "lab.sh stop killed a process its stale pid file named"
lab env LAB_GUARD_ONLY=1 lab/lab.sh start
[ "$status" -ne 0 ] || fail "a winbindd named by a stale pid file passed for the lab's own: $out"
stop_dummy "$winbindd"

if [ "$failures" -ne 0 ]; then
  echo "test-lab-guard: $failures failure(s)" >&2
  exit 1
fi
echo "test-lab-guard: ok (lab.sh refuses, names, takes over only when told, stops only its own)"
