#!/usr/bin/env bash
# Start one benchmark peer on 127.0.0.1:PORT, building or installing it on first use, and
# print its PID once the port accepts connections (its stderr goes to
# $PEER_LOG_DIR/NAME.log). Stop it with `kill PID`.
#
#   benches/peers/start.sh NAME PORT
#   SERVER_CPUS=0 benches/peers/start.sh runner-echo 9001    # pinned to CPU 0
#
# NAME: node-ws, node-configurapi, tokio-tungstenite, fastwebsockets, runner-echo,
# runner-configurapi. Exits 1 when the peer cannot be built or does not start (e.g.
# runner-configurapi before the runner has its Configurapi mode).
set -euo pipefail
if [ $# -ne 2 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
source "$(dirname "$0")/peers.sh"
peer_build "$1"
peer_start "$1" "$2"
