#!/usr/bin/env bash
# CPU time (perf's task-clock, every thread) and page faults of runner binaries from exec
# to listening and a SIGTERM exit, per config, ROUNDS interleaved rounds; prints the
# median and minimum of each (docs/size.md, issue #17). Less moved by a busy machine
# than the wall time of benches/startup_ab.sh. Needs `perf`.
#
#   ROUNDS=21 CONFIGS="--echo benches/peers/runner-config.yaml" benches/startup_cpu.sh /work/wt/bin-main/runner-5d11f07 target/release/configurapi-runner-ws
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-21}
port=${PORT:-9720}
configs=${CONFIGS:-"--echo benches/peers/runner-config.yaml"}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/configurapi-runner-ws)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((r = 0; r < rounds; r++)); do
  i=0
  for b in "${bins[@]}"; do
    for c in $configs; do
      if [ "$c" = --echo ]; then args=(--echo) name=echo; else args=(--config "$c") name=$(basename "$c" .yaml); fi
      perf stat -x, -e task-clock,page-faults -o "$tmp/perf" "$b" --port "$port" --host 127.0.0.1 \
        --management-port 0 --log-level info "${args[@]}" >"$tmp/log" 2>&1 &
      pid=$!
      for _ in $(seq 2000); do grep -q "listening on" "$tmp/log" && break; sleep 0.005; done
      # A TERM that lands before the signal thread runs is lost: repeat until it exits.
      for _ in $(seq 200); do
        kill -TERM $(pgrep -P "$pid") 2>/dev/null || true
        sleep 0.02
        kill -0 "$pid" 2>/dev/null || break
      done
      wait "$pid" || true
      tc=$(grep task-clock "$tmp/perf" | cut -d, -f1) pf=$(grep page-faults "$tmp/perf" | cut -d, -f1)
      # A run perf could not count (no figure) is left out, and counted.
      if [[ "$tc" =~ ^[0-9.]+$ ]]; then echo "bin$i-$name $tc $pf" >>"$tmp/res"; else echo "bin$i-$name: no figure" >&2; fi
    done
    i=$((i + 1))
  done
done
i=0
for b in "${bins[@]}"; do echo "bin$i = $b"; i=$((i + 1)); done
for l in $(cut -d' ' -f1 "$tmp/res" | sort -u); do
  grep "^$l " "$tmp/res" | sort -k2 -n | awk -v l="$l" '{v[NR]=$2; f[NR]=$3} END {printf "%-28s task-clock median %5.2f ms (min %.2f, n=%d), page faults %d (the median run)\n", l, v[int((NR+1)/2)], v[1], NR, f[int((NR+1)/2)]}'
done
