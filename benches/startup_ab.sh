#!/usr/bin/env bash
# Start-up to listening of runner binaries side by side (docs/size.md): ROUNDS interleaved
# rounds of `wsbench startup` for each binary and config, beside a bare listener (the
# floor of spawning a process here); prints the median, min and max ms of each.
#
#   benches/startup_ab.sh BIN...            (default: target/release/configurapi-runner-ws)
#   SERVER_CPUS=0 ROUNDS=21 CONFIGS="--echo a.yaml b.yaml" WSBENCH=target/release/wsbench benches/startup_ab.sh /tmp/main-runner target/release/configurapi-runner-ws
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-21}
wsbench=${WSBENCH:-target/release/wsbench}
configs=${CONFIGS:-"benches/peers/runner-config.yaml crates/configurapi/tests/fixtures/validate.yaml"}
port=${PORT:-9700}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/configurapi-runner-ws)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rustc -O --edition 2021 -o "$tmp/bare" benches/bare_listener.rs

# SERVER_CPUS=0: every binary pinned there, as benches/compare.sh pins its servers.
pin=()
[ -n "${SERVER_CPUS:-}" ] && pin=(taskset -c "$SERVER_CPUS")
run() { # label command...
  local label=$1; shift
  "$wsbench" startup --addr "127.0.0.1:$port" --label "$label" -- "${pin[@]}" "$@" |
    sed -n 's/.*"startup_ms":\([0-9.]*\).*/\1/p' >>"$tmp/res-$label"
}
labels=(bare)
for ((r = 0; r < rounds; r++)); do
  run bare "$tmp/bare" "$port"
  i=0
  for b in "${bins[@]}"; do
    for c in $configs; do
      # "--echo" in CONFIGS: echo mode, no config (#17 startup).
      if [ "$c" = --echo ]; then args=(--echo) name=echo; else args=(--config "$c") name=$(basename "$c" .yaml); fi
      label="bin$i-$name"
      [ "$r" -gt 0 ] || labels+=("$label")
      run "$label" "$b" --port "$port" --host 127.0.0.1 --management-port 0 --log-level warn "${args[@]}"
    done
    i=$((i + 1))
  done
done
i=0
for b in "${bins[@]}"; do echo "bin$i = $b"; i=$((i + 1)); done
for l in "${labels[@]}"; do
  sort -n "$tmp/res-$l" | awk -v l="$l" '{v[NR]=$1} END {printf "%-28s median %6.2f ms  (min %.2f, max %.2f, n=%d)\n", l, v[int((NR+1)/2)], v[1], v[NR], NR}'
done
