#!/usr/bin/env bash
# Instructions per request, two gatehouse builds side by side, under valgrind's
# callgrind: a count that does not depend on what else the machine is doing
# (wall-clock ratios on a shared 2-core machine swing by +-20 %).
#   bench/instructions.sh A_BINARY [B_BINARY]   (B defaults to this tree's release build)
# For each build and case (anonymous, NTLM keep-alive, KCD keep-alive GET 1 KiB),
# gatehouse runs under callgrind while gh-load sends keep-alive requests for a
# few seconds; a run that serves no request gives the start-up and shutdown
# cost, which is subtracted. Needs the lab (lab/lab.sh start) for NTLM users
# from a file and the KCD case. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?usage: bench/instructions.sh A_BINARY [B_BINARY]}
B=${2:-target/release/gatehouse}
SECS=${SECS:-8}
CONNS=${CONNS:-10}
LAB=${LAB:-/tmp/gatehouse-lab}
[ -f "$LAB/env" ] || { echo "instructions: start the lab first (lab/lab.sh start)" >&2; exit 1; }
# shellcheck disable=SC1091
. "$LAB/env"
command -v valgrind >/dev/null || { echo "instructions: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --locked -p gatehouse -p testkit >&2

W=$(mktemp -d /tmp/gatehouse-instr.XXXXXX)
BACKEND=127.0.0.1:19300
target/release/gh-backend $BACKEND 2>/dev/null & backend=$!
trap 'kill $backend 2>/dev/null || true; rm -rf "$W"' EXIT
sleep 0.2
# shellcheck source=bench/lab-sites.sh
. bench/lab-sites.sh
lab_sites_toml "$W" "$BACKEND" 19301 19302 19303 > "$W/gatehouse.toml"

# One run: prints "instructions requests".
run() {
  local bin=$1 port=$2 user=${3:-} out="$W/cg.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" run -c "$W/gatehouse.toml" 2>"$W/vg.log" &
  local pid=$!
  for _ in $(seq 200); do ss -ltn | grep -q "127.0.0.1:19303 " && break; sleep 0.1; done
  local n=0
  if [ -n "$port" ]; then
    if [ -n "$user" ]; then
      read -r n _ <<<"$(target/release/gh-load keepalive "127.0.0.1:$port" "$SECS" "$CONNS" "$user" User-Pass1)"
    else
      read -r n _ <<<"$(target/release/gh-load keepalive "127.0.0.1:$port" "$SECS" "$CONNS")"
    fi
  fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local total; total=$(awk '/^summary:/ {print $2}' "$out")
  echo "$total $n"
}

echo "| case | A instructions per request | B instructions per request | B/A |"
echo "|---|---:|---:|---:|"
declare -A base
for x in A B; do bin=${!x}; read -r base[$x] _ <<<"$(run "$bin" "")"; done
for case in "anonymous keep-alive GET 1 KiB:19301:" "NTLM keep-alive GET 1 KiB:19302:user%" "KCD keep-alive GET 1 KiB (send_token = always):19303:user%"; do
  IFS=: read -r name port user <<<"$case"
  declare -A per
  for x in A B; do
    bin=${!x}
    read -r total n <<<"$(run "$bin" "$port" "$user")"
    per[$x]=$(awk -v t="$total" -v b="${base[$x]}" -v n="$n" 'BEGIN { if (n == 0) print "n/a"; else printf "%.0f", (t - b) / n }')
  done
  ratio=$(awk -v a="${per[A]}" -v b="${per[B]}" 'BEGIN { if (a == 0 || a == "n/a") print "n/a"; else printf "%.3f", b / a }')
  echo "| $name | ${per[A]} | ${per[B]} | $ratio |"
done
