#!/usr/bin/env python3
"""JS handlers side by side: the runner serving tests/fixtures/js-app through its handler
host (JS echoHandler) against the Node Configurapi peer (benches/peers/
node-configurapi-runner.js, configurapi@1.9.0 + ws) serving the same app, one after the
other in one run, with the same wsbench load.

    nice -n 10 cargo build --release -p configurapi-runner-ws -p wsbench
    (cd benches/peers && npm ci)
    python3 benches/jshost_bench.py [--conns 32] [--pipeline 1] [--duration 10] [--rounds 3]

Server CPU per message counts every thread of the runner *and* of its node child
(/proc/PID/task/*/schedstat, as wsbench does for one PID), over the whole wsbench run;
messages are the ones wsbench counted. With two or more CPUs the servers are pinned to
CPU 0 (runner and node child together) and wsbench to CPU 1.

Rounds alternate the two servers (A B, A B, ...). Every figure printed is the median over
the rounds with its range; the CPU ratio is the median of the per-round ratios (each
round's pair ran back to back). Every round's raw row, with the machine's load average at
its start, is appended to docs/benchmarks-js-results.jsonl under one run id, so each
number on docs/benchmarks-js.md can be traced to the run that produced it.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "tests", "fixtures", "js-app")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def cpu_ns(pid):
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def tree(pid):
    """pid and its children (the runner's node host)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what):
    until = time.time() + 20
    while time.time() < until:
        if proc.poll() is not None:
            sys.exit(f"{what} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def pin(cmd, cpu):
    if os.cpu_count() >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + cmd
    return cmd


def start_runner(port):
    cmd = [os.path.join(TARGET, "release", "configurapi-runner-ws"), "--config",
           os.path.join(APP, "config.yaml"), "--host", "127.0.0.1", "--port", str(port),
           "--management-port", str(free_port()), "--log-level", "warn"]
    return subprocess.Popen(pin(cmd, 0), stderr=subprocess.DEVNULL)


def start_node_peer(port):
    peers = os.path.join(ROOT, "benches", "peers")
    env = dict(os.environ)
    env["NODE_PATH"] = os.pathsep.join([os.path.join(peers, "node_modules"),
                                        os.path.join(ROOT, "tests", "fixtures", "peer-modules")])
    cmd = ["node", os.path.join(peers, "node-configurapi-runner.js"), str(port),
           os.path.join(APP, "config.yaml")]
    return subprocess.Popen(pin(cmd, 0), cwd=APP, env=env, stderr=subprocess.DEVNULL)


def run_one(label, start, args):
    port = free_port()
    load = os.getloadavg()[0]
    proc = start(port)
    try:
        wait_port(port, proc, label)
        time.sleep(0.3)  # the host says ready before the runner listens; settle either way
        pids = tree(proc.pid)
        before = [cpu_ns(p) for p in pids]
        cmd = pin([os.path.join(TARGET, "release", "wsbench"), "rr", "--addr", f"127.0.0.1:{port}",
                   "-c", str(args.conns), "-p", str(args.pipeline), "--mode", "json",
                   "--duration", str(args.duration), "--warmup", "0", "--label", label], 1)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        after = [cpu_ns(p) for p in pids]
        row = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
        row["server_pids"] = pids
        row["loadavg_1m_at_start"] = load
        n = max(row["msgs"], 1)
        # Per process (the runner, then its node host), then the sum.
        row["cpu_us_per_msg_by_pid"] = [round((a - b) / 1000 / n, 2) for a, b in zip(after, before)]
        row["server_cpu_us_per_msg_all"] = (sum(after) - sum(before)) / 1000 / n
        return row
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = {"runner+node": [], "node-configurapi": []}
    for _ in range(args.rounds):
        rows["runner+node"].append(run_one("runner+node", start_runner, args))
        rows["node-configurapi"].append(run_one("node-configurapi", start_node_peer, args))
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(os.path.join(ROOT, "docs", "benchmarks-js-results.jsonl"), "a") as f:
        for label, rs in rows.items():
            for k, r in enumerate(rs):
                f.write(json.dumps({"run": run_id, "conns": args.conns, "round": k,
                                    "server": label, **r}) + "\n")
    print(f"run {run_id}: {args.rounds} interleaved rounds, {args.conns} connections")
    print(f"{'server':<18} {'msgs/s':>9} {'p50 us':>8} {'p99 us':>8} {'cpu/msg us':>11} {'errors':>6} {'load':>5}")
    for label, rs in rows.items():
        for r in rs:
            print(f"{label:<18} {r['msgs_per_s']:>9.0f} {r['p50_us']:>8} {r['p99_us']:>8} "
                  f"{r['server_cpu_us_per_msg_all']:>11.2f} {r['errors']:>6} {r['loadavg_1m_at_start']:>5.2f}"
                  f"  by process {r['cpu_us_per_msg_by_pid']}")

    def med(xs):
        return statistics.median(xs)

    summary = {"run": run_id, "conns": args.conns, "rounds": args.rounds}
    for label, rs in rows.items():
        for key in ("server_cpu_us_per_msg_all", "p50_us", "p99_us", "msgs_per_s"):
            xs = [r[key] for r in rs]
            summary[f"{label}.{key}"] = {"median": med(xs), "min": min(xs), "max": max(xs)}
    a, b = rows["runner+node"], rows["node-configurapi"]
    cpu = [x["server_cpu_us_per_msg_all"] / y["server_cpu_us_per_msg_all"] for x, y in zip(a, b)]
    p50 = [x["p50_us"] / max(y["p50_us"], 1) for x, y in zip(a, b)]
    summary["cpu_ratio"] = {"median": med(cpu), "min": min(cpu), "max": max(cpu)}
    summary["p50_ratio"] = {"median": med(p50), "min": min(p50), "max": max(p50)}
    print(json.dumps(summary))
    print(f"CPU per message, runner+node / Node runner: median of per-round ratios "
          f"{med(cpu):.2f}x (range {min(cpu):.2f}-{max(cpu):.2f}); "
          f"p50 ratio {med(p50):.2f}x (range {min(p50):.2f}-{max(p50):.2f})")


if __name__ == "__main__":
    main()
