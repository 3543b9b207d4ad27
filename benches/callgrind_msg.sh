#!/usr/bin/env bash
# Instructions per message of the whole server process (all threads), counted by
# callgrind under `wsbench rr -c 64` (docs/profile.md, "The JSON echo in the server, per
# message"): process total / messages answered. Repeatable on a shared machine where
# wall-clock figures are not.
#
#   benches/callgrind_msg.sh BIN [json|raw] [SECONDS]
#
# json: the bench config (benches/peers/runner-config.yaml, no management server); raw:
# `--echo`. The callgrind file is kept (${OUT:-/tmp/callgrind_msg}.MODE.out) for
# `callgrind_annotate --inclusive=yes` when BIN has symbols
# (CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only).
set -euo pipefail
bin=$1 mode=${2:-json} secs=${3:-10}
root="$(cd "$(dirname "$0")/.." && pwd)"
wsbench="${WSBENCH:-$root/target/release/wsbench}"
out="${OUT:-/tmp/callgrind_msg}.$mode.out"
port=$((20000 + RANDOM % 20000))
if [ "$mode" = raw ]; then args=(--echo); else
  args=(--config "$root/benches/peers/runner-config.yaml" --management-port 0)
fi
valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out" "$bin" \
  --host 127.0.0.1 --port "$port" "${args[@]}" --idle-timeout 0 --log-level warn \
  2>/dev/null &
pid=$!
# Wait for the listener (a connect succeeds), not for a fixed time.
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
# Start-up (config, schema compilation: ~10 M instructions with the bench config) is
# not per message: counting starts from here.
# Callgrind takes the command when the process runs: an idle server sleeps in epoll_wait,
# so a connection wakes it.
callgrind_control -z "$pid" >/dev/null &
zero=$!
while kill -0 "$zero" 2>/dev/null; do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || true
  sleep 0.2
done
msgs=$("$wsbench" rr --addr "127.0.0.1:$port" --mode "$mode" -c 64 --duration "$secs" \
  --warmup 0 2>/dev/null | grep '^{' | sed 's/.*"msgs":\([0-9]*\).*/\1/')
kill -INT "$pid"
wait "$pid" 2>/dev/null || true
# After `-z`, callgrind writes the zeroed part and the rest as two dumps ($out, $out.1...):
# the last one holds what ran under load.
last=$(ls "$out"* | sort -V | tail -1)
total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$last")
echo "$mode: $total instructions / $msgs messages = $((total / msgs)) per message ($last)"
