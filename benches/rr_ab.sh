#!/bin/bash
# Raw echo CPU per message of two runner binaries side by side (`--echo`, as
# benches/compare.sh runs it), rounds interleaved (before, after, before, ...), a fresh
# server each time, server on CPU 0 and wsbench on CPU 1. Prints each run's JSON line
# and, at the end, the median of `server_cpu_us_per_msg` per binary and connection count.
#   BEFORE=path/to/old AFTER=path/to/new WSBENCH=target/release/wsbench \
#     benches/rr_ab.sh [rounds=5] [duration=5] [conns="64 512"]
set -u
R=${1:-5}
D=${2:-5}
CONNS=${3:-64 512}
port=${PORT_BASE:-19750}
pin_server=() pin_client=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c 0) pin_client=(taskset -c 1)
fi
out=$(mktemp)
for r in $(seq "$R"); do
  for which in BEFORE AFTER; do
    bin=${!which}
    port=$((port + 1))
    "${pin_server[@]}" "$bin" --echo --host 127.0.0.1 --port $port --idle-timeout 0 --log-level warn &
    pid=$!
    # Wait for the listener (a connect succeeds), not for a fixed time.
    for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
    for c in $CONNS; do
      line=$("${pin_client[@]}" "$WSBENCH" rr --addr 127.0.0.1:$port --pid $pid -c "$c" \
        --duration "$D" --warmup 1 --label "$which" 2>/dev/null | grep '^{')
      echo "round=$r $which c=$c $line" | tee -a "$out"
    done
    kill $pid
    wait $pid 2>/dev/null
  done
done
echo "medians of server_cpu_us_per_msg:"
for c in $CONNS; do
  for which in BEFORE AFTER; do
    grep " $which c=$c " "$out" | sed 's/.*"server_cpu_us_per_msg":\([0-9.]*\).*/\1/' | sort -g |
      awk -v w="$which" -v c="$c" '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "  %s c=%s: %s us (%d runs)\n", w, c, m, NR}'
  done
done
rm -f "$out"
