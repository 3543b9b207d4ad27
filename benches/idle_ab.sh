#!/bin/bash
# Idle bytes per connection of two runner binaries side by side, echo and Configurapi
# mode, rounds interleaved (before, after, before, ...): `wsbench idle` on a fresh server
# each time. Take the median per binary and mode.
#   BEFORE=path/to/old AFTER=path/to/new WSBENCH=target/release/wsbench \
#     benches/idle_ab.sh [connections=5000] [rounds=3]
set -u
N=${1:-5000}
R=${2:-3}
ulimit -n 65536 2>/dev/null
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cfg="$here/peers/runner-config.yaml"
port=${PORT_BASE:-19700}
for r in $(seq "$R"); do
  for which in BEFORE AFTER; do
    bin=${!which}
    for mode in echo configurapi; do
      port=$((port + 1))
      if [ "$mode" = echo ]; then
        "$bin" --echo --host 127.0.0.1 --port $port --idle-timeout 0 --log-level warn &
      else
        "$bin" --host 127.0.0.1 --port $port --config "$cfg" --idle-timeout 0 \
          --log-level warn --management-port 0 &
      fi
      pid=$!
      # Wait for the listener (a connect succeeds), not for a fixed time.
      for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
      out=$("$WSBENCH" idle --addr 127.0.0.1:$port --pid $pid -n "$N" --label "$which-$mode" 2>&1 | tail -n 1)
      echo "round=$r $which $mode $out"
      kill $pid
      wait $pid 2>/dev/null
    done
  done
done
