#!/usr/bin/env bash
# Server CPU per message of runner binaries side by side (issue #17, JSON path):
# Configurapi JSON echo at C=64 for each binary, and raw echo for the first, in
# interleaved rounds (A B ..., A B ..., so a burst of other work falls on one round of
# each); medians over the rounds, and each binary's ratio to the first one's raw echo.
#
#   benches/json_ab.sh [-r ROUNDS] [-d SECONDS] NAME=BIN [NAME=BIN ...]
#   benches/json_ab.sh -r 5 main=/tmp/main-runner branch=target/release/configurapi-runner-ws
#
# The server runs on CPU ${SERVER_CPUS:-0} and wsbench on CPU ${BENCH_CPUS:-1} (taskset), as
# benches/compare.sh does. Raw results (wsbench JSON lines) go to ${OUT:-/tmp/json_ab.jsonl}.
set -euo pipefail
rounds=3 duration=5
while getopts r:d: o; do
  case $o in
    r) rounds=$OPTARG ;;
    d) duration=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
root="$(cd "$(dirname "$0")/.." && pwd)"
config="$root/benches/peers/runner-config.yaml"
wsbench="${WSBENCH:-$root/target/release/wsbench}"
[ -x "$wsbench" ] || (cd "$root" && nice -n 10 cargo build --release --quiet -p wsbench)
out="${OUT:-/tmp/json_ab.jsonl}"
: >"$out"
port=$((20000 + RANDOM % 20000))

run() { # label bin mode
  local label=$1 bin=$2 mode=$3 args
  port=$((port + 1))
  if [ "$mode" = raw ]; then args=(--echo); else args=(--config "$config" --management-port 0); fi
  taskset -c "${SERVER_CPUS:-0}" "$bin" --host 127.0.0.1 --port "$port" "${args[@]}" \
    --idle-timeout 0 --log-level warn 2>/dev/null &
  local pid=$!
  local t=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    t=$((t + 1))
    [ $t -lt 100 ] || { echo "$label did not start" >&2; kill "$pid"; return 1; }
    sleep 0.1
  done
  taskset -c "${BENCH_CPUS:-1}" "$wsbench" rr --addr "127.0.0.1:$port" --mode "$mode" -c 64 \
    --duration "$duration" --warmup 1 --pid "$pid" --label "$label/$mode" 2>/dev/null |
    grep '^{' >>"$out"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for r in $(seq "$rounds"); do
  first=1
  for spec in "$@"; do
    name=${spec%%=*} bin=${spec#*=}
    run "$name" "$bin" json
    if [ $first = 1 ]; then run "$name" "$bin" raw; first=0; fi
  done
  echo "round $r/$rounds done" >&2
done

python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["label"], []).append(r)
med = {k: statistics.median(x["server_cpu_us_per_msg"] for x in v) for k, v in by.items()}
raw = next(v for k, v in med.items() if k.endswith("/raw"))
print(f"{'label':24} {'cpu/msg us (median)':>20} {'rounds':>24} {'msgs/s':>10} {'x raw':>6}")
for k, v in by.items():
    per = [round(x["server_cpu_us_per_msg"], 2) for x in v]
    rate = statistics.median(x["msgs_per_s"] for x in v)
    print(f"{k:24} {med[k]:20.2f} {str(per):>24} {rate:10.0f} {med[k] / raw:6.2f}")
EOF
