#!/usr/bin/env bash
# Soak test (issue #8, item 5): 1,000 connections of mixed traffic (JSON echo, small
# streams, slow stream readers, connection churn, pushes, management posts) against the
# runner in Configurapi mode (benches/soak.yaml) for 10 minutes after a 30 s warm-up,
# sampling the server's RSS and open fds every 10 s. Every reply is checked.
#
#   benches/soak.sh                           # ~11 minutes
#   DURATION=60 WARMUP=10 benches/soak.sh     # a short run
#
# It builds the runner and wsbench (release), starts the runner on 127.0.0.1 with the
# management API on a free port, raises RLIMIT_NOFILE, pins the server to CPU 0 and
# wsbench to CPU 1 (taskset, with two or more CPUs), and runs `wsbench soak`. The sample
# lines and the summary go to stdout and to $OUT, followed by a markdown snippet for
# docs/limits.md. Exit status: wsbench's (1 on any error, on RSS growth past MAX_GROWTH
# after the warm-up, or on leaked fds), or 1 when the server died.
#
# Environment: DURATION (600), WARMUP (30), CONNS (1000), SAMPLE (10), THINK (50ms: the
# pause between a connection's requests), READ_RATE (1MiB: the slow readers' budget,
# shared), MAX_GROWTH (4MiB, or a percentage), OUT (docs/soak.txt), CARGO_TARGET_DIR
# (target).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

DURATION=${DURATION:-600}
WARMUP=${WARMUP:-30}
CONNS=${CONNS:-1000}
SAMPLE=${SAMPLE:-10}
THINK=${THINK:-50ms}
READ_RATE=${READ_RATE:-1MiB}
MAX_GROWTH=${MAX_GROWTH:-4MiB}
OUT=${OUT:-$root/docs/soak.txt}
target=${CARGO_TARGET_DIR:-$root/target}

say() { printf '=== %s\n' "$*" >&2; }

server_cpu=()
client_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0)
  client_cpu=(taskset -c 1)
else
  say "fewer than 2 CPUs or no taskset: nothing is pinned"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
  say "RLIMIT_NOFILE is $(ulimit -n), too low for $CONNS connections"
  exit 1
fi

say "build: runner and wsbench (release)"
nice -n 10 cargo build --release --quiet -p configurapi-runner-ws -p wsbench
runner="$target/release/configurapi-runner-ws"
wsbench="$target/release/wsbench"

# Start the runner: the WebSocket port is picked by the kernel (--port 0, read from the
# log); the management port cannot be 0 (that turns it off), so a random one is tried
# until the server binds it.
log="$target/soak-server.log"
server=""
port=""
mport=""
# --access-log off: a line per message would be gigabytes of log over the soak.
trap '[ -n "$server" ] && kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 20); do
  mport=$((20000 + RANDOM % 40000))
  "${server_cpu[@]}" "$runner" --host 127.0.0.1 --port 0 --management-port "$mport" \
    --config "$root/benches/soak.yaml" --access-log off 2>"$log" &
  server=$!
  for _ in $(seq 1 100); do
    grep -q 'management API on' "$log" && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q 'management API on' "$log"; then
    port=$(sed -n 's/.*listening on ws:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
    break
  fi
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
done
[ -n "$port" ] || { cat "$log" >&2; say "the runner did not start"; exit 1; }
say "runner pid $server on ws://127.0.0.1:$port, management on 127.0.0.1:$mport"

cmd=("$wsbench" soak --addr "127.0.0.1:$port" --mgmt "127.0.0.1:$mport" --pid "$server"
  -c "$CONNS" --warmup "$WARMUP" --duration "$DURATION" --sample "$SAMPLE" --think "$THINK"
  --read-rate "$READ_RATE" --max-growth "$MAX_GROWTH" --label soak)
result=$(mktemp)
{
  echo "# benches/soak.sh: DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS SAMPLE=$SAMPLE THINK=$THINK READ_RATE=$READ_RATE MAX_GROWTH=$MAX_GROWTH"
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; Linux $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# server: ${server_cpu[*]:-unpinned} configurapi-runner-ws --config benches/soak.yaml; wsbench: ${client_cpu[*]:-unpinned}"
} | tee "$result"
set +e
"${client_cpu[@]}" "${cmd[@]}" | tee -a "$result"
status=${PIPESTATUS[0]}
set -e
if ! kill -0 "$server" 2>/dev/null; then
  say "the server died during the soak"
  cat "$log" >&2
  status=1
fi
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=""
warnings=$(grep -c -E '^(WARN|ERROR)' "$log" || true)
echo "# server log: $warnings WARN/ERROR lines ($log)" | tee -a "$result"

# A markdown snippet for docs/limits.md, from the JSON line (its nested objects come
# last, so the first match of a key is the top-level one).
json=$(grep '^{"scenario":"soak"' "$result" | tail -n1 || true)
field() { printf '%s' "$json" | grep -o "\"$1\":[^,}]*" | head -n1 | cut -d: -f2; }
mib() { awk -v b="$(field "$1")" 'BEGIN { if (b == "") print "?"; else printf "%.1f", b / 1048576 }'; }
if [ -n "$json" ]; then
  {
    echo
    echo "| | RSS MiB | fds |"
    echo "|---|---:|---:|"
    echo "| before connecting | $(mib rss_before) | $(field fds_before) |"
    echo "| start (after the warm-up) | $(mib rss_start) | $(field fds_start) |"
    echo "| peak | $(mib rss_peak) | $(field fds_peak) |"
    echo "| end | $(mib rss_end) | $(field fds_end) |"
    echo "| after every connection closed | $(mib rss_after_close) | $(field fds_after_close) |"
    echo
    echo "Totals: $(field echo) echo round trips, $(field streams) streams ($(field chunks) chunks)," \
      "$(field slow_streams) slow-reader streams ($(mib slow_bytes) MiB), $(field churn) churn cycles," \
      "$(field pushes) pushes, $(field posts) management posts; $(field errors) errors."
  } | tee -a "$result"
fi
if [ "$OUT" != "-" ]; then
  mkdir -p "$(dirname "$OUT")"
  cp "$result" "$OUT"
  say "written to $OUT"
fi
rm -f "$result"
exit "$status"
