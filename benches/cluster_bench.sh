#!/usr/bin/env bash
# What --cluster costs (issue #16, docs/cluster.md), on the release build:
#  1. upgrade rate (wsbench churn, JSON mode: connect, upgrade, one echo, close) and
#  2. JSON echo CPU per message (wsbench rr --mode json -c 64)
#     of a runner with --cluster against the same runner without, rounds interleaved
#     (plain, cluster, plain, cluster, ...), the runner on CPU 0, wsbench and Redis on 1;
#  3. the latency of a management post to a connection on another runner (forwarded
#     through Redis) against one on the same runner (benches/cluster_post_latency.py).
# Prints one JSON line per measurement; docs/benchmarks.md's cluster section quotes it.
#
#   benches/cluster_bench.sh            # ROUNDS=3 DURATION=5 WARMUP=1
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
bin="$CARGO_TARGET_DIR/release/configurapi-runner-ws"
wsb="$CARGO_TARGET_DIR/release/wsbench"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
[ -x "$bin" ] && [ -x "$wsb" ] || { echo "build first: cargo build --release -p configurapi-runner-ws -p wsbench" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; return 1; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

rport=$(free_port)
taskset -c 1 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
pids+=($!)
wait_port "$rport"
url="redis://127.0.0.1:$rport/0"
config=benches/peers/runner-config.yaml

# start_runner VARIANT PORT MGMT [NODE]: prints the PID
start_runner() {
  local variant=$1 port=$2 mgmt=$3 node=${4:-bench}
  local args=(--host 127.0.0.1 --port "$port" --config "$config" --idle-timeout 0
    --log-level warn --access-log off --management-port "$mgmt")
  [ "$variant" = cluster ] && args+=(--cluster "$url" --node-id "$node")
  # No stdout of ours: the caller reads this function through $(...).
  taskset -c 0 "$bin" "${args[@]}" >/dev/null 2>&1 &
  echo $!
}

for round in $(seq 1 "$ROUNDS"); do
  for variant in plain cluster; do
    port=$(free_port); mgmt=$(free_port)
    pid=$(start_runner "$variant" "$port" "$mgmt")
    pids+=("$pid")
    wait_port "$port"
    taskset -c 1 "$wsb" churn --addr "127.0.0.1:$port" -c 16 --mode json \
      --duration "$DURATION" --warmup "$WARMUP" --pid "$pid" --label "churn-$variant-r$round"
    taskset -c 1 "$wsb" rr --addr "127.0.0.1:$port" -c 64 --mode json \
      --duration "$DURATION" --warmup "$WARMUP" --pid "$pid" --label "json-$variant-r$round"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done

# Cross-node post latency: two clustered runners, the client on the first.
p1=$(free_port); m1=$(free_port); p2=$(free_port); m2=$(free_port)
a=$(start_runner cluster "$p1" "$m1" node-1); pids+=("$a")
b=$(start_runner cluster "$p2" "$m2" node-2); pids+=("$b")
wait_port "$p1"; wait_port "$p2"; wait_port "$m1"; wait_port "$m2"
python3 benches/cluster_post_latency.py "127.0.0.1:$p1" "127.0.0.1:$m1" "127.0.0.1:$m2" "${POSTS:-5000}"
