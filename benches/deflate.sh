#!/usr/bin/env bash
# permessage-deflate side by side (issue #15): 4 KiB JSON messages echoed through the
# runner with --deflate shared (client offers deflate), the runner with the client not
# offering it, the runner with --deflate takeover, and Node `ws` with perMessageDeflate
# on (its default: context takeover). Server CPU per message from
# /proc/PID/stat (user+system ticks over the run), wire bytes per message from the
# client's socket counters. Rounds interleave the servers; prints one line per run.
#
#   benches/deflate.sh                      # 3 rounds, 16 connections x 2,000 messages
#   ROUNDS=5 CONNS=32 MESSAGES=5000 benches/deflate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-16}; MESSAGES=${MESSAGES:-2000}
runner=${RUNNER:-${CARGO_TARGET_DIR:-target}/release/configurapi-runner-ws}
[ -x "$runner" ] || cargo build --release -p configurapi-runner-ws
(cd benches/peers && [ -d node_modules/ws ] || npm ci --no-audit --no-fund)
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "no server on $1"; exit 1; }
"$runner" --echo --host 127.0.0.1 --port 19471 --idle-timeout 0 --deflate shared 2>/dev/null &
runner_pid=$!; pids+=("$runner_pid")
"$runner" --echo --host 127.0.0.1 --port 19473 --idle-timeout 0 --deflate takeover 2>/dev/null &
takeover_pid=$!; pids+=("$takeover_pid")
node benches/peers/node-ws-deflate-echo.js 19472 2>/dev/null &
node_pid=$!; pids+=("$node_pid")
wait_port 19471; wait_port 19472; wait_port 19473
run() { # label pid port on|off
  local before after out
  before=$(ticks "$2")
  out=$(node benches/peers/deflate-client.js "ws://127.0.0.1:$3/" "$CONNS" "$MESSAGES" "$4")
  after=$(ticks "$2")
  echo "$out" | awk -v l="$1" -v t=$((after - before)) -v hz="$hz" -F'"messages":' '{split($2, a, ","); printf "%-24s cpu_us_per_msg=%.1f %s\n", l, t * 1e6 / hz / a[1], $0}'
}
for r in $(seq 1 "$ROUNDS"); do
  run "runner deflate=shared" "$runner_pid" 19471 on
  run "runner no deflate" "$runner_pid" 19471 off
  run "runner deflate=takeover" "$takeover_pid" 19473 on
  run "node ws deflate" "$node_pid" 19472 on
done
