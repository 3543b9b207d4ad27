#!/usr/bin/env bash
# What the access line costs (docs/operations.md#logs): rr json C=64 against
# runner-config.yaml with --access-log on and off, for one or more runner binaries,
# rounds interleaved; the server on CPU 0, wsbench on CPU 1, stderr to a file.
#   benches/access_log.sh [BIN...]     (default: target/release/configurapi-runner-ws)
#   ROUNDS=5 DURATION=4 benches/access_log.sh /tmp/old-runner target/release/configurapi-runner-ws
# Prints each run's wsbench JSON line, then per binary the medians and the on/off ratios
# of msgs/s and of server CPU per message (the steadier figure on a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/configurapi-runner-ws)
wsbench=${WSBENCH:-target/release/wsbench}
rounds=${ROUNDS:-3}
duration=${DURATION:-4}
out=$(mktemp)
port=9311
for r in $(seq 1 "$rounds"); do
  for i in "${!bins[@]}"; do
    for access in on off; do
      port=$((port + 1))
      log=$(mktemp)
      taskset -c 0 "${bins[$i]}" --config benches/peers/runner-config.yaml --host 127.0.0.1 \
        --port $port --management-port 0 --access-log $access 2>"$log" &
      pid=$!
      for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
      line=$(taskset -c 1 "$wsbench" rr --addr 127.0.0.1:$port --mode json -c 64 \
        --duration "$duration" --warmup 1 --pid $pid --label "$i-$access" 2>/dev/null | tail -n1 || true)
      kill $pid; wait $pid 2>/dev/null || true
      rm -f "$log"
      echo "bin=$i access=$access $line" | tee -a "$out"
    done
  done
done
python3 - "$out" "${bins[@]}" <<'PY'
import json, re, statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'bin=(\d+) access=(\w+) (\{.*)', line.strip())
    if m:
        j = json.loads(m.group(3))
        rows.setdefault((int(m.group(1)), m.group(2)), []).append(j)
for i, b in enumerate(sys.argv[2:]):
    med = lambda a, k: st.median(j[k] for j in rows.get((i, a), [{k: float('nan')}]))
    print(f"{b}: msgs/s on {med('on','msgs_per_s'):.0f} off {med('off','msgs_per_s'):.0f} "
          f"= {med('on','msgs_per_s')/med('off','msgs_per_s'):.2f}x; server CPU/msg on "
          f"{med('on','server_cpu_us_per_msg'):.2f} us off {med('off','server_cpu_us_per_msg'):.2f} us "
          f"= {med('on','server_cpu_us_per_msg')/med('off','server_cpu_us_per_msg'):.2f}x")
PY
rm -f "$out"
