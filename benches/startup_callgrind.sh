#!/usr/bin/env bash
# Instructions from exec to listening (and a clean exit) of runner binaries under
# callgrind, per config (docs/size.md, issue #17): each binary is started with the
# config, stopped with SIGTERM once it logs "listening", and its total instruction
# count printed. Deterministic to ~0.1 %, so one run per binary and config is enough;
# the exit after SIGTERM adds the same few tens of thousands to every row.
#
#   benches/startup_callgrind.sh BIN...        (default: target/release/configurapi-runner-ws)
#   CONFIGS="--echo benches/peers/runner-config.yaml" benches/startup_callgrind.sh /work/wt/bin-main/runner-5d11f07 target/release/configurapi-runner-ws
#   KEEP=dir benches/startup_callgrind.sh ...   keeps the callgrind.out files in dir
set -euo pipefail
cd "$(dirname "$0")/.."
configs=${CONFIGS:-"--echo benches/peers/runner-config.yaml"}
port=${PORT:-9710}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/configurapi-runner-ws)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
keep=${KEEP:-$tmp}
mkdir -p "$keep"

i=0
for b in "${bins[@]}"; do
  for c in $configs; do
    if [ "$c" = --echo ]; then args=(--echo) name=echo; else args=(--config "$c") name=$(basename "$c" .yaml); fi
    out="$keep/callgrind.bin$i-$name"
    log="$tmp/log"
    : >"$log"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$b" --port "$port" --host 127.0.0.1 \
      --management-port 0 --log-level info "${args[@]}" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do
      grep -q "listening on" "$log" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    grep -q "listening on" "$log" || { echo "bin$i $name: never listened:" >&2; cat "$log" >&2; exit 1; }
    kill -TERM "$pid"
    wait "$pid" || true
    printf "bin%d %-28s %'12d instructions\n" "$i" "$name" "$(sed -n 's/^summary: //p' "$out")"
  done
  i=$((i + 1))
done
i=0
for b in "${bins[@]}"; do echo "bin$i = $b"; i=$((i + 1)); done
