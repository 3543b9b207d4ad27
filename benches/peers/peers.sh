# Benchmark peers: how to build each one and the command that serves it.
# Sourced by benches/peers/start.sh and benches/compare.sh; bash only.
#
#   peer_build NAME        build or install NAME if needed (npm ci, cargo build --release)
#   peer_cmd NAME PORT     set the array PEER_CMD to the command serving 127.0.0.1:PORT
#   peer_start NAME PORT   start NAME in the background (pinned with taskset to
#                          $SERVER_CPUS when set), wait until the port accepts, print the PID
#
# Environment:
#   CARGO_TARGET_DIR   target dir of the main crate [default: <repo>/target]
#   PEER_TARGET_DIR    target dir root of the Rust peers [default: $CARGO_TARGET_DIR/peers]
#   SERVER_CPUS        taskset CPU list for the server, e.g. 0 [default: no pinning]
#   PEER_LOG_DIR       where each peer's stderr goes [default: $CARGO_TARGET_DIR/bench-logs]
#   RUNNER_BIN         use this configurapi-runner-ws binary for the runner-* peers instead
#                      of building this checkout (e.g. to measure another branch's build)
#   BEFORE_BIN         a configurapi-runner-ws binary of an earlier commit: adds the peers
#                      runner-echo-before and runner-configurapi-before, served by it, so a
#                      change is measured against its starting point in the same run

PEER_NAMES=(node-ws node-configurapi tokio-tungstenite fastwebsockets runner-echo runner-configurapi)
if [ -n "${BEFORE_BIN:-}" ]; then
  PEER_NAMES+=(runner-echo-before runner-configurapi-before)
fi

peers_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$peers_dir/../.." && pwd)"
: "${CARGO_TARGET_DIR:=$repo_root/target}"
: "${PEER_TARGET_DIR:=$CARGO_TARGET_DIR/peers}"
: "${PEER_LOG_DIR:=$CARGO_TARGET_DIR/bench-logs}"
export CARGO_TARGET_DIR PEER_TARGET_DIR PEER_LOG_DIR

peer_log() { echo "peers: $*" >&2; }

# The Rust peer crates: NAME -> directory under benches/peers and binary name.
peer_rust_dir() {
  case "$1" in
    tokio-tungstenite) echo rust-tungstenite-echo ;;
    fastwebsockets) echo rust-fastwebsockets-echo ;;
  esac
}
peer_rust_bin() {
  case "$1" in
    tokio-tungstenite) echo tungstenite-echo-peer ;;
    fastwebsockets) echo fastwebsockets-echo-peer ;;
  esac
}

peer_build() {
  local name=$1
  case "$name" in
    node-ws | node-configurapi)
      command -v node >/dev/null || { peer_log "node is not installed"; return 1; }
      if [ ! -d "$peers_dir/node_modules/ws" ] || [ ! -d "$peers_dir/node_modules/configurapi" ]; then
        peer_log "npm ci in benches/peers"
        (cd "$peers_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
      fi
      ;;
    tokio-tungstenite | fastwebsockets)
      local dir
      dir=$(peer_rust_dir "$name")
      peer_log "cargo build --release ($dir)"
      nice -n 10 cargo build --release --locked --quiet \
        --manifest-path "$peers_dir/$dir/Cargo.toml" \
        --target-dir "$PEER_TARGET_DIR/$dir" >&2
      ;;
    runner-echo | runner-configurapi)
      if [ -n "${RUNNER_BIN:-}" ]; then
        [ -x "$RUNNER_BIN" ] || { peer_log "RUNNER_BIN=$RUNNER_BIN is not executable"; return 1; }
        return 0
      fi
      peer_log "cargo build --release (configurapi-runner-ws)"
      (cd "$repo_root" && nice -n 10 cargo build --release --quiet --bin configurapi-runner-ws >&2)
      ;;
    runner-echo-before | runner-configurapi-before)
      [ -n "${BEFORE_BIN:-}" ] && [ -x "$BEFORE_BIN" ] || { peer_log "BEFORE_BIN='${BEFORE_BIN:-}' is not an executable"; return 1; }
      ;;
    *)
      peer_log "unknown peer '$name' (one of: ${PEER_NAMES[*]})"
      return 1
      ;;
  esac
}

peer_binary() {
  case "$1" in
    tokio-tungstenite | fastwebsockets)
      local dir
      dir=$(peer_rust_dir "$1")
      echo "$PEER_TARGET_DIR/$dir/release/$(peer_rust_bin "$1")"
      ;;
    runner-echo | runner-configurapi) echo "${RUNNER_BIN:-$CARGO_TARGET_DIR/release/configurapi-runner-ws}" ;;
    runner-echo-before | runner-configurapi-before) echo "${BEFORE_BIN:-}" ;;
    *) echo "" ;;
  esac
}

peer_cmd() {
  local name=$1 port=$2
  local bin
  bin=$(peer_binary "$name")
  case "$name" in
    node-ws) PEER_CMD=(node "$peers_dir/node-ws-echo.js" "$port") ;;
    node-configurapi)
      PEER_CMD=(node "$peers_dir/node-configurapi-runner.js" "$port" "$peers_dir/node-runner-config.yaml")
      ;;
    tokio-tungstenite | fastwebsockets) PEER_CMD=("$bin" "127.0.0.1:$port") ;;
    runner-echo | runner-echo-before)
      PEER_CMD=("$bin" --echo --host 127.0.0.1 --port "$port" --idle-timeout 0 --log-level warn)
      ;;
    runner-configurapi | runner-configurapi-before)
      # Configurapi mode with the bench config; no management server (8.9) when the build
      # has one, so runs never compete for its port.
      PEER_CMD=("$bin" --host 127.0.0.1 --port "$port" --config "$peers_dir/runner-config.yaml"
        --idle-timeout 0 --log-level warn)
      if "$bin" --help 2>/dev/null | grep -q -- '--management-port'; then
        PEER_CMD+=(--management-port 0)
      fi
      ;;
    *)
      peer_log "unknown peer '$name' (one of: ${PEER_NAMES[*]})"
      return 1
      ;;
  esac
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

peer_start() {
  local name=$1 port=$2
  peer_cmd "$name" "$port" || return 1
  if port_open "$port"; then
    peer_log "port $port is already in use"
    return 1
  fi
  mkdir -p "$PEER_LOG_DIR"
  local log="$PEER_LOG_DIR/$name.log"
  local pin=()
  [ -n "${SERVER_CPUS:-}" ] && pin=(taskset -c "$SERVER_CPUS")
  # Idle tests open 10,000 sockets: give the server the hard limit.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  # taskset execs the server, so $! is the server's own PID.
  (cd "$peers_dir" && exec "${pin[@]}" "${PEER_CMD[@]}") >"$log" 2>&1 &
  local pid=$!
  local i
  for i in $(seq 1 300); do
    if port_open "$port"; then
      echo "$pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      peer_log "$name exited before listening; its log ($log):"
      tail -n 5 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  peer_log "$name did not listen on $port within 30 s"
  kill "$pid" 2>/dev/null || true
  return 1
}

# Stop a peer started by peer_start and wait for it to exit.
peer_stop() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}
