#!/usr/bin/env bash
# Run every benchmark scenario against every peer and regenerate docs/benchmarks.md and
# docs/benchmarks.svg (raw results: docs/benchmarks-results.jsonl).
#
#   benches/compare.sh                       # everything, ~15 minutes
#   DURATION=10 WARMUP=2 benches/compare.sh  # longer points
#   PEERS="runner-echo node-ws" benches/compare.sh   # a subset (the doc shows n/a elsewhere)
#
# It builds the runner and wsbench, installs the Node peers (npm ci) and builds the Rust
# peers (cargo) itself. With two or more CPUs each server is pinned to CPU 0 and wsbench
# to CPU 1 (taskset). Only 127.0.0.1 is used.
#
# Environment: DURATION (5), WARMUP (1), REPEAT (5: rounds of the load scenarios, the
# peers interleaved; the report shows each point's median over the rounds with the
# range), IDLE_CONNS (10000), STARTUP_RUNS (11), PEERS (all), BEFORE_BIN (a runner binary of
# an earlier commit, measured as the peers runner-*-before; see benches/peers/peers.sh),
# BASE_PORT (19300), CARGO_TARGET_DIR, PEER_TARGET_DIR (see benches/peers/peers.sh),
# OUT_DIR (docs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
wanted=${PEERS:-}
source "$root/benches/peers/peers.sh"

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-5}
IDLE_CONNS=${IDLE_CONNS:-10000}
STARTUP_RUNS=${STARTUP_RUNS:-11}
BASE_PORT=${BASE_PORT:-19300}
OUT_DIR=${OUT_DIR:-$root/docs}
read -r -a peers <<<"${wanted:-${PEER_NAMES[*]}}"

say() { printf '\n=== %s\n' "$*" >&2; }

client=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  export SERVER_CPUS=0
  client=(taskset -c 1)
else
  unset SERVER_CPUS
  say "fewer than 2 CPUs or no taskset: nothing is pinned"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((IDLE_CONNS + 100)) ]; then
  say "RLIMIT_NOFILE is $(ulimit -n): idle uses $(($(ulimit -n) - 200)) connections"
  IDLE_CONNS=$(($(ulimit -n) - 200))
fi

say "build: runner and wsbench (release)"
nice -n 10 cargo build --release --quiet -p configurapi-runner-ws -p wsbench
wsbench="$CARGO_TARGET_DIR/release/wsbench"

available=()
for p in "${peers[@]}"; do
  say "build: $p"
  if peer_build "$p"; then available+=("$p"); else echo "peer $p could not be built" >&2; fi
done

mkdir -p "$CARGO_TARGET_DIR" "$OUT_DIR"
results="$CARGO_TARGET_DIR/bench-results.jsonl"
log="$CARGO_TARGET_DIR/bench-run.log"
: >"$results"
: >"$log"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# What was measured: this checkout's commit (with "+dirty" when it has uncommitted changes)
# and, when given, the earlier build (BEFORE_DESC says which commit it is).
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit+dirty"
printf '{"scenario":"meta","date":"%s","duration":%s,"warmup":%s,"repeat":%s,"idle_conns":%s,"loadavg_start":"%s","server_cpus":"%s","client_cpus":"%s","commit":"%s","before":"%s"}\n' \
  "$(date -u '+%Y-%m-%d %H:%M UTC')" "$DURATION" "$WARMUP" "$REPEAT" "$IDLE_CONNS" "$(loadavg)" \
  "${SERVER_CPUS:+CPU $SERVER_CPUS (taskset)}" "${client:+CPU 1 (taskset)}" "$commit" \
  "${BEFORE_BIN:+${BEFORE_DESC:-$BEFORE_BIN}}" >>"$results"

# na LABEL REASON: the peer has no figures in this run. The reason is kept to one line of
# plain text (JSON-escaped here).
na() {
  local reason
  reason=$(printf '%s' "$2" | tr -d '\r' | head -n 1 | sed 's/\\/\\\\/g; s/"/\\"/g')
  printf '{"scenario":"na","label":"%s","reason":"%s"}\n' "$1" "$reason" >>"$results"
}

# wsbench SCENARIO LABEL ARGS...: run pinned, keep the table in the log, the JSON line in
# the results. A failed run is recorded and the comparison goes on.
bench() {
  local scenario=$1 label=$2
  shift 2
  local out
  echo "--- $label: wsbench $scenario $*" >>"$log"
  if out=$("${client[@]}" "$wsbench" "$scenario" --label "$label" "$@" 2>>"$log"); then
    echo "$out" >>"$log"
    # The round goes into the record so the report can pair peers round by round.
    echo "$out" | grep '^{' | sed "s/^{/{\"round\":$round,/" >>"$results"
    echo "$out" | grep -v '^{' >&2
  else
    echo "$out" >>"$log"
    echo "wsbench $scenario failed against $label (see $log)" >&2
  fi
}

port=$BASE_PORT
next_port() { port=$((port + 1)); }

is_cfg() { [[ $1 == *configurapi* ]]; }

# The load scenarios run in rounds, the peers interleaved (A B C, A B C, ...): each round
# starts every peer afresh and runs each of its points once, so a burst of other work on the
# machine hits one round of every peer rather than all the runs of one peer. The report
# shows every point's median over the rounds with the range; no round is picked. Each
# round of each peer records the load average when it starts ("load" lines), and every
# wsbench line its own measure of other work on the machine (other_cpu_cores, unclamped).
round=0
usable=()
for p in "${peers[@]}"; do
  if [[ " ${available[*]} " == *" $p "* ]]; then usable+=("$p"); else na "$p" "could not be built or installed"; fi
done
for round in $(seq "$REPEAT"); do
  next=()
  for p in "${usable[@]}"; do
    say "round $round/$REPEAT: $p"
    printf '{"scenario":"load","round":%s,"label":"%s","date":"%s","loadavg":"%s"}\n' \
      "$round" "$p" "$(date -u '+%H:%M:%S')" "$(loadavg)" >>"$results"
    next_port
    if ! pid=$(peer_start "$p" "$port"); then
      na "$p" "did not start: $(tail -n 1 "$PEER_LOG_DIR/$p.log" 2>/dev/null)"
      continue
    fi
    addr="127.0.0.1:$port"
    common=(--addr "$addr" --pid "$pid" --duration "$DURATION" --warmup "$WARMUP")
    if is_cfg "$p"; then
      if ! "$wsbench" probe --addr "$addr" >>"$log" 2>&1; then
        na "$p" "no Configurapi echo envelope from the echo route"
        peer_stop "$pid"
        continue
      fi
      bench rr "$p" "${common[@]}" --mode json -c 64
      bench rr "$p" "${common[@]}" --mode json -c 1
      bench churn "$p" "${common[@]}" --mode json -c 16
      bench stream "$p" "${common[@]}" --route stream -c 1
      bench stream "$p" "${common[@]}" --route stream-big -c 1 --slow-reader --read-rate 1MiB
    else
      bench rr "$p" "${common[@]}" -c 64
      bench rr "$p" "${common[@]}" -c 512
      bench churn "$p" "${common[@]}" -c 16
    fi
    peer_stop "$pid"
    next+=("$p")
  done
  usable=("${next[@]}")
done

round=0 # the idle, start-up and size figures are one run per peer, not rounds
for p in "${usable[@]}"; do
  say "$p: idle, $IDLE_CONNS connections on a fresh server"
  next_port
  if pid=$(peer_start "$p" "$port"); then
    sleep 0.5
    bench idle "$p" --addr "127.0.0.1:$port" --pid "$pid" -n "$IDLE_CONNS"
    peer_stop "$pid"
  fi

  say "$p: start-up time and binary size"
  next_port
  peer_cmd "$p" "$port"
  pin=()
  [ -n "${SERVER_CPUS:-}" ] && pin=(taskset -c "$SERVER_CPUS")
  for _ in $(seq "$STARTUP_RUNS"); do
    bench startup "$p" --addr "127.0.0.1:$port" -- "${pin[@]}" "${PEER_CMD[@]}"
  done
  bin=$(peer_binary "$p")
  if [ -n "$bin" ] && [ -f "$bin" ]; then
    printf '{"scenario":"size","label":"%s","bytes":%s,"sha":"%s"}\n' "$p" "$(stat -c %s "$bin")" "$(sha256sum "$bin" | cut -c1-12)" >>"$results"
  fi
done

say "report"
printf '{"scenario":"meta_end","date":"%s","loadavg_end":"%s"}\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(loadavg)" >>"$results"
cp "$results" "$OUT_DIR/benchmarks-results.jsonl"
python3 "$root/benches/report.py" "$results" --md "$OUT_DIR/benchmarks.md" --svg "$OUT_DIR/benchmarks.svg"
echo "done: $OUT_DIR/benchmarks.md (log: $log)" >&2
