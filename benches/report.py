#!/usr/bin/env python3
"""Turn the JSON lines of benches/compare.sh into docs/benchmarks.md and an SVG chart.

    python3 benches/report.py RESULTS.jsonl --md docs/benchmarks.md --svg docs/benchmarks.svg

Standard library only. Every figure in the doc comes from RESULTS.jsonl (one wsbench JSON
line per run, plus "size", "na" and "meta" lines written by compare.sh); the machine
description is read here, on the machine that ran the benchmarks.
"""

import argparse
import datetime
import html
import json
import os
import platform
import statistics
import subprocess
import sys

OURS_ECHO = "runner-echo"
OURS_CFG = "runner-configurapi"
# The "-before" peers are this runner built from an earlier commit (compare.sh's
# BEFORE_BIN); they are shown only when the run has them.
BEFORE_ECHO = "runner-echo-before"
BEFORE_CFG = "runner-configurapi-before"
ECHO_PEERS = ["runner-echo", "fastwebsockets", "tokio-tungstenite", "node-ws", BEFORE_ECHO]
CFG_PEERS = ["runner-configurapi", "node-configurapi", BEFORE_CFG]
ALL_PEERS = ECHO_PEERS + CFG_PEERS[::-1]

RATE_KEY = {"rr": "msgs_per_s", "churn": "conns_per_s"}

DESCRIBE = {
    "runner-echo": "this runner, `--echo` (raw echo mode)",
    "runner-configurapi": "this runner, Configurapi mode, `echoHandler` route",
    "fastwebsockets": "fastwebsockets + hyper upgrade, tokio current_thread (crates.io)",
    "tokio-tungstenite": "tokio-tungstenite, tokio current_thread (crates.io)",
    "node-ws": "Node `ws` echo (npm)",
    "node-configurapi": "Node Configurapi runner equivalent: configurapi@1.9.0 + ws (npm)",
    BEFORE_ECHO: "this runner built from an earlier commit (see the table above), `--echo`",
    BEFORE_CFG: "this runner built from an earlier commit (see the table above), Configurapi mode",
}


def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                recs.append(json.loads(line))
    return recs


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1048576:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": str(os.cpu_count() or ""),
        "cpu": cpu or platform.processor(),
        "kernel": platform.release(),
        "memory": mem,
        "rustc": sh(["rustc", "--version"]),
        "node": sh(["node", "--version"]),
    }


class Stat:
    """One point's figure over the rounds: the median, the range and how many runs."""

    def __init__(self, vals):
        self.vals = vals
        self.med = statistics.median(vals)
        self.lo = min(vals)
        self.hi = max(vals)
        self.n = len(vals)


class Results:
    """The runs of RESULTS.jsonl. No run is picked over another: every figure shown is the
    median over the rounds of the same point (with the range), so one lucky or unlucky
    round moves it no more than any other."""

    def __init__(self, recs):
        self.recs = recs
        self.meta = next((r for r in recs if r.get("scenario") == "meta"), {})
        self.meta_end = next((r for r in recs if r.get("scenario") == "meta_end"), {})

    def runs(self, label, scenario, key, **kw):
        return [
            r.get(key) for r in self.recs
            if r.get("label") == label and r.get("scenario") == scenario
            and all(r.get(k) == v for k, v in kw.items()) and r.get(key) is not None
        ]

    def stat(self, label, scenario, key, **kw):
        vals = self.runs(label, scenario, key, **kw)
        return Stat(vals) if vals else None

    def value(self, label, scenario, key, **kw):
        """The median over the rounds, or None."""
        st = self.stat(label, scenario, key, **kw)
        return None if st is None else st.med

    def count(self, label, scenario, **kw):
        return sum(
            1 for r in self.recs
            if r.get("label") == label and r.get("scenario") == scenario
            and all(r.get(k) == v for k, v in kw.items())
        )

    def median(self, label, scenario, key):
        return self.value(label, scenario, key)

    def na(self, label):
        r = next((r for r in self.recs if r.get("scenario") == "na" and r.get("label") == label), None)
        return None if r is None else r.get("reason", "n/a")

    def loads(self):
        """Per round: {label: 1-minute load average when that peer's round started}."""
        out = {}
        for r in self.recs:
            if r.get("scenario") == "load":
                try:
                    one = float(r.get("loadavg", "").split()[0])
                except (ValueError, IndexError):
                    continue
                out.setdefault(r.get("round"), {})[r.get("label")] = one
        return out


def fmt(v, digits=0, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def mib(r, key):
    """r[key] in MiB, or None."""
    v = None if r is None else r.get(key)
    return None if v is None else v / 1048576


def ratio(a, b, invert=False):
    """a / b (or b / a), as '1.23x'; n/a when either is missing."""
    if a is None or b is None or a == 0 or b == 0:
        return "n/a"
    r = b / a if invert else a / b
    return f"{r:.2f}x"


def cell(st, digits=0, scale=1.0):
    """The median, then the range over the rounds in brackets when there are several."""
    if st is None:
        return "n/a"
    out = fmt(st.med * scale, digits)
    if st.n > 1:
        if digits == 0 and st.lo * scale >= 10000:
            k = lambda x: f"{x / 1000:,.0f}k" if x >= 100000 else f"{x / 1000:,.1f}k"  # noqa: E731
            out += f" ({k(st.lo * scale)}–{k(st.hi * scale)})"
        else:
            out += f" ({fmt(st.lo * scale, digits)}–{fmt(st.hi * scale, digits)})"
    return out


def rate_cell(res, label, scenario, key, **kw):
    return cell(res.stat(label, scenario, key, **kw))


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------- SVG

def svg_chart(panels, path):
    """panels: list of (title, unit, series_names, [(category, [values...])]).
    Horizontal grouped bars, two panels per row."""
    colors = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5"]
    pw, gap = 470, 20
    label_w, value_w = 150, 80
    bar_h, group_gap = 13, 9
    heights = []
    for _, _, series, cats in panels:
        heights.append(48 + len(cats) * (len(series) * bar_h + group_gap) + 18)
    rows = [heights[i:i + 2] for i in range(0, len(heights), 2)]
    row_h = [max(r) for r in rows]
    width = 2 * pw + 3 * gap
    height = sum(row_h) + gap * (len(rows) + 1) + 30
    s = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{gap}" y="22" font-size="15" font-weight="bold">configurapi-runner-ws '
        f'benchmarks (benches/compare.sh; server on 1 pinned core)</text>',
    ]
    y0 = 30 + gap
    for ri, row in enumerate(rows):
        for ci in range(len(row)):
            title, unit, series, cats = panels[ri * 2 + ci]
            x0 = gap + ci * (pw + gap)
            s.append(f'<g transform="translate({x0},{y0})">')
            s.append(f'<rect width="{pw}" height="{row_h[ri]}" fill="#f7fafc" stroke="#e2e8f0"/>')
            s.append(f'<text x="10" y="20" font-weight="bold">{html.escape(title)}</text>')
            # legend
            lx = 10
            for si, name in enumerate(series):
                s.append(f'<rect x="{lx}" y="28" width="10" height="10" fill="{colors[si % 4]}"/>')
                s.append(f'<text x="{lx + 14}" y="37" font-size="11">{html.escape(name)}</text>')
                lx += 24 + 7 * len(name)
            vals = [v for _, vs in cats for v in vs if v is not None]
            vmax = max(vals) if vals else 1
            bw = pw - label_w - value_w - 10
            y = 48
            for cat, vs in cats:
                gh = len(series) * bar_h
                s.append(
                    f'<text x="{label_w - 6}" y="{y + gh / 2 + 4}" text-anchor="end">{html.escape(cat)}</text>'
                )
                for si, v in enumerate(vs):
                    by = y + si * bar_h
                    if v is None:
                        s.append(f'<text x="{label_w + 4}" y="{by + bar_h - 3}" font-size="11" fill="#718096">n/a</text>')
                        continue
                    w = max(1.0, bw * v / vmax)
                    s.append(
                        f'<rect x="{label_w}" y="{by + 1}" width="{w:.1f}" height="{bar_h - 2}" fill="{colors[si % 4]}"/>'
                    )
                    s.append(
                        f'<text x="{label_w + w + 4:.1f}" y="{by + bar_h - 3}" font-size="11">{fmt(v, 0 if v >= 100 else 2)}{unit}</text>'
                    )
                y += gh + group_gap
            s.append("</g>")
        y0 += row_h[ri] + gap
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


# ---------------------------------------------------------------- Markdown

def report(res, svg_rel):
    m = machine()
    meta = res.meta
    when = meta.get("date") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    dur, warm = meta.get("duration", "?"), meta.get("warmup", "?")
    idle_n = meta.get("idle_conns")
    md = []
    md.append("# Benchmarks\n")
    md.append(
        "Generated by `benches/compare.sh` (do not edit by hand; run it again). Every figure comes "
        "from `docs/benchmarks-results.jsonl`, the raw output of that one run; what the run does not "
        "measure is described in words, without figures.\n"
    )
    md.append(f"![benchmark chart]({svg_rel})\n")
    md.append("## Machine and method\n")
    md.append(table(["", ""], [
        ["date", when],
        ["commit measured", f"`{meta.get('commit', '?')}`"],
        ["CPUs (nproc)", m["nproc"]],
        ["CPU model", m["cpu"]],
        ["kernel", m["kernel"]],
        ["memory", m["memory"]],
        ["rustc", m["rustc"]],
        ["node", m["node"]],
        ["server CPU", meta.get("server_cpus") or "not pinned"],
        ["wsbench CPU", meta.get("client_cpus") or "not pinned"],
        ["duration per point", f"{warm} s warm-up + {dur} s measured"],
        ["rounds", f"{meta.get('repeat', 1)} rounds of the load scenarios, the peers interleaved "
                   f"(A B C, A B C, ...); each figure is the **median over the rounds**, the range "
                   f"(lowest–highest) in brackets"],
        *([["earlier build (`-before` peers)", meta["before"]]] if meta.get("before") else []),
        ["load average (1/5/15 min) at start / end", f"{meta.get('loadavg_start', '?')} / "
                                                     f"{res.meta_end.get('loadavg_end', '?')}"],
    ]))
    md.append("")
    md.append(
        "- Every server runs pinned to one core (`taskset`) and the load generator, `wsbench` "
        "(`tools/wsbench/src/main.rs`: one mio thread, no allocation per message), to the other. The Rust "
        "peers use tokio's `current_thread` runtime, so every server has one core and one event loop.\n"
        "- No round is chosen over another: a median over the rounds, and ratios are the "
        "ratio of the two peers' medians. The rounds interleave the peers, so a burst of other work "
        "on the machine falls on one round of every peer, not on every round of one.\n"
        "- **Server CPU per message** is the server's own CPU time (all threads, "
        "`/proc/PID/task/*/schedstat`) over the measured window divided by the messages: it compares "
        "servers fairly even where the shared machine, not the server, limits msgs/s.\n"
        "- `rr`: closed loop, C connections with one message in flight each (P=1); raw mode sends the "
        "5-byte text frame `hello`, JSON mode a Configurapi message "
        "`{\"name\":\"echo\",\"payload\":\"hello\",\"headers\":{\"message-id\":...}}` matched by message-id "
        "on the 200 envelope. Latencies are client-side round trips.\n"
        "- `churn`: C connections, each doing connect, upgrade, one round trip, close handshake, and "
        "waiting for the server's FIN, then starting over.\n"
        f"- `idle`: a fresh server, then {fmt(idle_n) if idle_n else 'the configured number of'} upgraded "
        "connections that send nothing; the server's RSS growth divided by the connections, then a new "
        "connection must still be upgraded. One run per peer.\n"
        "- `stream`: the `stream` route (`streamHandler`, a fixed number of 1 KiB chunk frames, see "
        "`benches/peers/runner-config.yaml`) requested again as soon as its `x-stream: done` frame "
        "arrives; `--slow-reader` requests `stream-big` (about 100 MB of chunks) and reads 1 MiB/s while "
        "sampling the server's RSS.\n"
    )
    md.append(load_table(res))

    md.append(targets(res))

    def peer_rows(peers):
        rows = []
        for p in peers:
            rows.append([f"`{p}`", DESCRIBE.get(p, p) + (f" — **n/a**: {res.na(p)}" if res.na(p) else "")])
        return table(["peer", "what"], rows)

    md.append("### Peers\n")
    md.append(peer_rows(ALL_PEERS))
    md.append(
        "\nStarted by `benches/peers/start.sh NAME PORT`; the Node peers are installed from npm "
        "(`benches/peers/package.json`), the Rust peers built from `benches/peers/rust-*` (lock files "
        "committed).\n"
    )

    # ---- raw echo
    md.append("## Raw echo, one message in flight per connection\n")
    rows = []
    for p in ECHO_PEERS:
        row = [f"`{p}`"]
        for c in (64, 512):
            kw = dict(mode="raw", conns=c, pipeline=1)
            row += [
                cell(res.stat(p, "rr", "msgs_per_s", **kw)),
                cell(res.stat(p, "rr", "p50_us", **kw)),
                cell(res.stat(p, "rr", "p99_us", **kw)),
                cell(res.stat(p, "rr", "server_cpu_us_per_msg", **kw), 2),
            ]
        row.append(" / ".join(
            cell(res.stat(p, "rr", "other_cpu_cores", mode="raw", conns=c, pipeline=1), 2) for c in (64, 512)))
        rows.append(row)
    md.append("Median over the rounds, range in brackets. The last column is the other work on the "
              "machine while the point was measured (busy CPU time from `/proc/stat` minus the "
              "server's and wsbench's own, in cores; not clamped, so clock-tick rounding can make a "
              "quiet round slightly negative).\n")
    md.append(table(
        ["peer", "C=64 msgs/s", "p50 µs", "p99 µs", "CPU µs/msg",
         "C=512 msgs/s", "p50 µs", "p99 µs", "CPU µs/msg", "other work C=64 / C=512"], rows))
    md.append("")

    # ---- ratios against each peer
    md.append(f"### `{OURS_ECHO}` against each peer\n")
    md.append("Each cell is this runner's median relative to the peer's median; **above 1.00x means the "
              "runner is better** (more msgs/s or connections/s; less CPU per message or memory per "
              "connection).\n")
    others = [p for p in ECHO_PEERS if p != OURS_ECHO]
    rrows = []
    for c in (64, 512):
        a = res.value(OURS_ECHO, "rr", "msgs_per_s", mode="raw", conns=c, pipeline=1)
        rrows.append([f"msgs/s, C={c}"] + [
            ratio(a, res.value(p, "rr", "msgs_per_s", mode="raw", conns=c, pipeline=1)) for p in others])
        a = res.value(OURS_ECHO, "rr", "server_cpu_us_per_msg", mode="raw", conns=c, pipeline=1)
        rrows.append([f"server CPU/msg, C={c}"] + [
            ratio(a, res.value(p, "rr", "server_cpu_us_per_msg", mode="raw", conns=c, pipeline=1), invert=True)
            for p in others])
    a = res.value(OURS_ECHO, "churn", "conns_per_s")
    rrows.append(["churn connections/s"] + [ratio(a, res.value(p, "churn", "conns_per_s")) for p in others])
    a = res.value(OURS_ECHO, "churn", "server_cpu_us_per_conn")
    rrows.append(["server CPU/connection (churn)"] + [
        ratio(a, res.value(p, "churn", "server_cpu_us_per_conn"), invert=True) for p in others])
    a = res.value(OURS_ECHO, "idle", "bytes_per_conn")
    rrows.append(["idle bytes/connection"] + [
        ratio(a, res.value(p, "idle", "bytes_per_conn"), invert=True) for p in others])
    md.append(table([""] + [f"vs `{p}`" for p in others], rrows))
    md.append("")

    # ---- Configurapi echo
    md.append("## Configurapi echo (JSON envelope, `echo` route)\n")
    rows = []
    for p in CFG_PEERS:
        row = [f"`{p}`"]
        for c in (64, 1):
            kw = dict(mode="json", conns=c, pipeline=1)
            row += [
                cell(res.stat(p, "rr", "msgs_per_s", **kw)),
                cell(res.stat(p, "rr", "p50_us", **kw)),
                cell(res.stat(p, "rr", "p99_us", **kw)),
                cell(res.stat(p, "rr", "server_cpu_us_per_msg", **kw), 2),
            ]
        rows.append(row)
    md.append(table(
        ["peer", "C=64 msgs/s", "p50 µs", "p99 µs", "CPU µs/msg",
         "C=1 msgs/s", "p50 µs", "p99 µs", "CPU µs/msg"], rows))
    md.append("")
    crows = []
    for c in (64, 1):
        for key, label, inv in (("msgs_per_s", "msgs/s", False), ("server_cpu_us_per_msg", "server CPU/msg", True),
                                ("p99_us", "p99 latency", True)):
            a = res.value(OURS_CFG, "rr", key, mode="json", conns=c, pipeline=1)
            b = res.value("node-configurapi", "rr", key, mode="json", conns=c, pipeline=1)
            crows.append([f"{label}, C={c}", ratio(a, b, invert=inv)])
    md.append("Ratios of the medians; above 1.00x means the runner is better.\n")
    md.append(table(["", f"`{OURS_CFG}` vs `node-configurapi`"], crows))
    if res.na(OURS_CFG):
        md.append(f"\n`{OURS_CFG}` is n/a in this run: {res.na(OURS_CFG)}.")
    md.append("")

    # ---- churn
    md.append("## Connection churn\n")
    rows = []
    for p in ALL_PEERS:
        modes = res.runs(p, "churn", "mode")
        conns = res.runs(p, "churn", "conns")
        rows.append([f"`{p}`", modes[0] if modes else "n/a", fmt(conns[0]) if conns else "n/a",
                     cell(res.stat(p, "churn", "conns_per_s")),
                     cell(res.stat(p, "churn", "handshake_p50_us")), cell(res.stat(p, "churn", "handshake_p99_us")),
                     cell(res.stat(p, "churn", "cycle_p50_us")), cell(res.stat(p, "churn", "server_cpu_us_per_conn"), 1),
                     fmt(sum(res.runs(p, "churn", "failures"))) if conns else "n/a"])
    md.append(table(["peer", "message", "C", "connections/s", "handshake p50 µs", "handshake p99 µs",
                     "whole cycle p50 µs", "server CPU µs/conn", "failed (all rounds)"], rows))
    md.append("")

    # ---- idle
    md.append("## Idle connections\n")
    rows = []
    for p in ALL_PEERS:
        per = res.value(p, "idle", "bytes_per_conn")
        served = res.runs(p, "idle", "new_connection_served")
        rows.append([f"`{p}`", fmt(res.value(p, "idle", "conns")),
                     cell(res.stat(p, "idle", "rss_before"), 1, 1 / 1048576),
                     cell(res.stat(p, "idle", "rss_after"), 1, 1 / 1048576), fmt(per),
                     "" if per is None else ("yes" if per <= 1024 else "no"),
                     fmt(all(served)) if served else "n/a"])
    md.append(table(["peer", "connections", "RSS before MiB", "RSS after MiB", "bytes/connection",
                     "≤ 1 KiB", "new connection served"], rows))
    md.append("\nOne run per peer. User-space memory only (RSS); the kernel's socket buffers are not "
              "counted for anyone.\n")

    # ---- stream
    md.append("## Streaming (`streamHandler`)\n")
    rows = []
    for p in CFG_PEERS:
        kw = dict(slow_reader=False)
        sk = dict(slow_reader=True)
        rows.append([f"`{p}`", cell(res.stat(p, "stream", "mb_per_s", **kw), 1),
                     cell(res.stat(p, "stream", "frames_per_s", **kw)),
                     cell(res.stat(p, "stream", "server_cpu_ms_per_mb", **kw), 2),
                     cell(res.stat(p, "stream", "rss_start", **sk), 1, 1 / 1048576),
                     cell(res.stat(p, "stream", "rss_peak", **sk), 1, 1 / 1048576),
                     cell(res.stat(p, "stream", "rss_growth", **sk), 1, 1 / 1048576)])
    md.append(table(["peer", "MB/s", "frames/s", "server CPU ms/MB", "slow reader: RSS start MiB",
                     "RSS peak MiB", "growth MiB"], rows))
    md.append("")

    # ---- size and startup
    md.append("## Binary size and start-up\n")
    rows = []
    for p in ALL_PEERS:
        size = res.value(p, "size", "bytes")
        st = res.stat(p, "startup", "startup_ms")
        rows.append([f"`{p}`", "n/a (node)" if p.startswith("node") else fmt(size and size / 1024, 0, " KiB"),
                     "n/a" if st is None else f"{cell(st, 1)} ms, {st.n} runs"])
    md.append(table(["peer", "release binary (stripped)", "start-up to listening (median, range)"], rows))
    md.append("\nStart-up is the time from spawning the server until its port accepts a TCP connection. "
              "Where this runner's bytes go, crate by crate, what was cut and what each size setting "
              "costs: [size.md](size.md).\n")

    md.append("## Notes\n")
    md.append(
        "- Every peer runs with its defaults except the 16 MiB message limit and no "
        "permessage-deflate. tokio-tungstenite's idle figure is its default read buffer per "
        "connection (`WebSocketConfig::read_buffer_size`), which it keeps while idle.\n"
        "- The Node peers are one Node process each; their V8 and libuv helper threads are "
        "pinned to the same core and counted in the server CPU.\n"
        "- The machine is shared (see the load table above): msgs/s and tail latencies move "
        "with other work on it, CPU per message much less. Compare CPU per message first.\n"
        "- Codec microbenchmarks (`benches/codec.rs`, criterion) are not part of this page: run "
        "`cargo bench --bench codec`.\n"
        "- Where the inline JSON path spends its instructions, and what was cut (callgrind): "
        "[profile.md](profile.md).\n"
        "- JS handlers through the handler host against the Node Configurapi runner on the "
        "same app (`benches/jshost_bench.py`): [benchmarks-js.md](benchmarks-js.md).\n"
        "- What `--cluster` costs (upgrade rate and JSON echo CPU with and without it, a "
        "cross-node management post against a local one, `benches/cluster_bench.sh`): "
        "[benchmarks-cluster.md](benchmarks-cluster.md).\n"
        "- permessage-deflate (runner with and without it, Node `ws` with perMessageDeflate; "
        "the compression library picked by measurement): "
        "[benchmarks-deflate.md](benchmarks-deflate.md).\n"
    )
    md.append("## Reproduce\n")
    md.append("```sh\nbenches/compare.sh                  # installs the peers, runs everything, rewrites this page\n"
              "DURATION=10 WARMUP=2 REPEAT=7 benches/compare.sh\n"
              "benches/peers/start.sh runner-echo 9001    # one peer by hand; prints its PID\n"
              "target/release/wsbench rr --addr 127.0.0.1:9001 -c 64 --pid PID\n"
              "cargo bench --bench codec             # codec microbenchmarks (criterion)\n```\n")
    return "\n".join(md) + "\n"


def load_table(res):
    """The 1-minute load average when each peer's round started, as recorded by compare.sh."""
    loads = res.loads()
    if not loads:
        return "The results hold no per-round load lines (an older run).\n"
    labels = [p for p in ALL_PEERS if any(p in v for v in loads.values())]
    rows = []
    for rnd in sorted(k for k in loads if k is not None):
        rows.append([str(rnd)] + [fmt(loads[rnd].get(p), 2) for p in labels])
    return ("Load average (1 minute) when each peer's round started; the per-point measure of "
            "other work is in the raw echo table.\n\n"
            + table(["round"] + [f"`{p}`" for p in labels], rows) + "\n")


# What limits each target when it is not met. Shown only next to an unmet target; kept
# here so a regenerated page keeps the explanation. Words only: a figure here would not
# come from the run the page shows.
WHY_UNMET = {
    "raw-rate": "msgs/s at P=1 is a closed loop: on 2 cores the load generator, pinned to the "
                "other core, and the kernel's loopback path set the pace for every fast server, so "
                "rounds of the same server can differ by more than servers do (see the ranges). "
                "Server CPU per message is the figure that separates them.",
    "raw-cpu": "Most of the cost is the kernel's loopback TCP (one recvfrom and one sendto per "
               "message); the server's own work per message is decoding one frame and queueing one. "
               "A point taken while other work ran on the server's core counts that core's cache "
               "and scheduler misses against the server.",
    "cfg-cpu-node": "The inline JSON path (parse, Event, 3-policy pipeline, envelope) was profiled "
                    "with callgrind and its allocations and copies cut ([profile.md](profile.md)); "
                    "what is left is serde_json parse and write and the kernel's share.",
    "cfg-cpu-raw": "The JSON path adds parsing and writing an envelope per message to the raw echo's "
                   "cost.",
    "cfg-p99": "At C=1 a round trip is mostly the kernel's wake-up path on both sides, not the "
               "server's work, so both runners' p99 sit near the same floor and the ratio moves "
               "with that floor's noise from round to round (see the p99 ranges). Busy-polling "
               "before sleeping would cut the wake-up but burn a core, which the small hosts this "
               "runner is for cannot spare.",
    "idle": "Per-connection state is the slab entry, the decoder and the application's Arc; "
            "buffers are released when a connection goes idle.",
    "slow": "A slow reader's queue is bounded by the high-water mark plus one frame per producer.",
    "size": "The largest parts of the binary are this runner's own code, rustls with ring, the "
            "standard library, the regex engines (with their Unicode tables, which JSON Schema "
            "`pattern` needs) and the unwind tables that `panic = \"unwind\"` needs to keep a "
            "panicking handler a 500 instead of a dead server. The per-crate split, what was cut "
            "and what is left: [size.md](size.md).",
    "startup": "",
    "cfg-cpu-raw17": "The JSON path's own work per message is parsing the message into the "
                     "event (serde_json's string scanning and map access: about a third of its "
                     "~6,000 instructions), the pipeline and writing the envelope; two small "
                     "heap blocks are left (the payload's string and the echo handler's copy "
                     "of it) and ~4 atomic operations (the push sink's reference count, the "
                     "connection's). What each step cut and what is left: "
                     "[profile.md](profile.md).",
    "size17": "What is left is mostly this runner's own code at opt-level 3; the cut, what each "
              "step saved and the next step (the cold modules in a package of their own, built "
              "for size) are in [size.md](size.md).",
    "startup17": "Start-up with a schema is dominated by compiling the JSON Schema draft's "
                 "metaschema (2020-12, the default draft, is the largest set) so that a bad schema "
                 "is a start-up error; see [size.md](size.md).",
}


def target_kit(res):
    """What both target tables use: the rows, a row adder, an rr median, its range."""
    rows = []

    def add(key, what, figure, ok):
        status = "n/a" if ok is None else ("met" if ok else "**not met**")
        rows.append((key, what, figure, status, ok))

    def rr(label, key, mode, c):
        return res.value(label, "rr", key, mode=mode, conns=c, pipeline=1)

    def rng(label, key, mode, c, digits):
        st = res.stat(label, "rr", key, mode=mode, conns=c, pipeline=1)
        if st is None or st.n < 2:
            return ""
        return f" ({fmt(st.lo, digits)}–{fmt(st.hi, digits)})"

    return rows, add, rr, rng


def targets(res):
    """Issue #7's targets, each with this run's medians and met / not met (by the medians)."""
    rows, add, rr, rng = target_kit(res)

    # The other servers only: an earlier build of this runner is not a peer.
    peers = [p for p in ECHO_PEERS if p != OURS_ECHO and not p.endswith("-before")]
    for c in (64, 512):
        key = "server_cpu_us_per_msg"
        ours = rr(OURS_ECHO, key, "raw", c)
        theirs = [(rr(p, key, "raw", c), p) for p in peers]
        theirs = [t for t in theirs if t[0]]
        what = f"raw echo C={c}: server CPU/msg within 1.1x of the cheapest peer"
        if ours and theirs:
            best, who = min(theirs)
            add("raw-cpu", what,
                f"{ours:.2f}{rng(OURS_ECHO, key, 'raw', c, 2)} us vs `{who}` {best:.2f}{rng(who, key, 'raw', c, 2)} us"
                f" = {ours / best:.2f}x", ours <= 1.1 * best)
        else:
            add("raw-cpu", what, "n/a", None)
        key = "msgs_per_s"
        ours = rr(OURS_ECHO, key, "raw", c)
        theirs = [(rr(p, key, "raw", c), p) for p in peers]
        theirs = [t for t in theirs if t[0]]
        what = f"raw echo C={c}: msgs/s at least the best peer's"
        if ours and theirs:
            best, who = max(theirs)
            add("raw-rate", what,
                f"{ours:,.0f}{rng(OURS_ECHO, key, 'raw', c, 0)} vs `{who}` {best:,.0f}{rng(who, key, 'raw', c, 0)}"
                f" = {ours / best:.2f}x", ours >= best)
        else:
            add("raw-rate", what, "n/a", None)
    key = "server_cpu_us_per_msg"
    ours = rr(OURS_CFG, key, "json", 64)
    node = rr("node-configurapi", key, "json", 64)
    raw = rr(OURS_ECHO, key, "raw", 64)
    add("cfg-cpu-node", "Configurapi echo C=64: server CPU/msg <= 0.25x the Node runner's",
        f"{ours:.2f}{rng(OURS_CFG, key, 'json', 64, 2)} us vs {node:.2f}{rng('node-configurapi', key, 'json', 64, 2)}"
        f" us = {ours / node:.2f}x" if ours and node else "n/a",
        ours <= 0.25 * node if ours and node else None)
    add("cfg-cpu-raw", "Configurapi echo C=64: server CPU/msg <= 2x this runner's raw echo",
        f"{ours:.2f} us vs {raw:.2f} us = {ours / raw:.2f}x" if ours and raw else "n/a",
        ours <= 2 * raw if ours and raw else None)
    key = "p99_us"
    ours = rr(OURS_CFG, key, "json", 1)
    node = rr("node-configurapi", key, "json", 1)
    add("cfg-p99", "Configurapi echo C=1: p99 latency <= 0.5x the Node runner's",
        f"{ours:,.0f}{rng(OURS_CFG, key, 'json', 1, 0)} us vs {node:,.0f}{rng('node-configurapi', key, 'json', 1, 0)}"
        f" us = {ours / node:.2f}x" if ours and node else "n/a",
        ours <= 0.5 * node if ours and node else None)
    idle_n = res.meta.get("idle_conns")
    for p in (OURS_ECHO, OURS_CFG):
        per = res.value(p, "idle", "bytes_per_conn")
        conns = res.value(p, "idle", "conns")
        add("idle", f"idle memory at 10,000 connections <= 1 KiB each (`{p}`)",
            "n/a" if per is None else f"{per:,.0f} B at {fmt(conns)} connections",
            None if per is None else (per <= 1024 if (conns or 0) >= 10000 else None))
    slow = res.stat(OURS_CFG, "stream", "rss_growth", slow_reader=True)
    slow_over = [] if slow is None else [v for v in slow.vals if v > 2 * 1048576]
    add("slow", "slow-reader stream: RSS growth <= high water (1 MiB) + 1 MiB",
        "n/a" if slow is None else f"{cell(slow, 1, 1 / 1048576)} MiB, {slow.n} runs",
        None if slow is None else slow.med <= 2 * 1048576)
    size = res.value(OURS_ECHO, "size", "bytes")
    add("size", "release binary, stripped, with TLS <= 4 MiB",
        "n/a" if size is None else f"{size / 1048576:.2f} MiB", None if size is None else size <= 4 << 20)
    st = res.stat(OURS_ECHO, "startup", "startup_ms")
    add("startup", "start-up to listening < 20 ms",
        "n/a" if st is None else f"{cell(st, 1)} ms", None if st is None else st.med < 20)

    rows17 = targets17(res)
    out = ["## Targets (issue #7)\n",
           "Each target as the issue states it, judged on this run's medians (range over the rounds "
           "in brackets). Where one is not met, or a round breaks a bound the median keeps, the "
           "lines under the table say so and, in words, what limits it.\n",
           table(["target", "this run", ""], [[w, f, st] for _, w, f, st, _ in rows]), ""]
    if slow_over:
        out.append(f"- **slow-reader stream**: {len(slow_over)} of {slow.n} rounds grew by more than the "
                   f"bound (at most {max(slow_over) / 1048576:.1f} MiB). The figure is the process's "
                   "resident set, which also holds what the allocator keeps after other work; the "
                   "write queue itself is held to high water plus one frame at every moment by the "
                   "tests (`Stats::queued_bytes_peak`, a recorded peak).")
    if idle_n is not None and idle_n < 10000:
        out.append(f"- The idle targets are n/a: this run opened {idle_n:,} connections, fewer than "
                   "the target's 10,000 (IDLE_CONNS, or the descriptor limit).")
    seen = set()
    for key, what, _, _, ok in rows:
        if ok is False and key not in seen and WHY_UNMET.get(key):
            seen.add(key)
            out.append(f"- **{what}**: {WHY_UNMET[key]}")
    out.append("")
    out += ["## Targets (issue #17: footprint)\n",
            "Judged the same way, on this run's medians. \"Before\" is the `-before` peers, this "
            "runner built from the earlier commit named in the method table, measured in the same "
            "rounds.\n",
            table(["target", "this run", ""], [[w, f, st] for _, w, f, st, _ in rows17]), ""]
    for key, what, _, _, ok in rows17:
        if ok is False and WHY_UNMET.get(key):
            out.append(f"- **{what}**: {WHY_UNMET[key]}")
    out.append("")
    return "\n".join(out)


def targets17(res):
    """Issue #17's targets: idle memory, the JSON path, raw echo kept, binary size, start-up."""
    rows, add, rr, rng = target_kit(res)

    for p, bar, before in ((OURS_ECHO, 256, BEFORE_ECHO), (OURS_CFG, 400, BEFORE_CFG)):
        per = res.value(p, "idle", "bytes_per_conn")
        conns = res.value(p, "idle", "conns")
        was = res.value(before, "idle", "bytes_per_conn")
        fig = "n/a" if per is None else f"{per:,.0f} B at {fmt(conns)} connections"
        if per is not None and was:
            fig += f" (before: {was:,.0f} B, {per / was:.2f}x)"
        add("idle17", f"idle memory at 10,000 connections <= {bar} B each (`{p}`)", fig,
            None if per is None else (per <= bar if (conns or 0) >= 10000 else None))
    key = "server_cpu_us_per_msg"
    ours = rr(OURS_CFG, key, "json", 64)
    node = rr("node-configurapi", key, "json", 64)
    raw = rr(OURS_ECHO, key, "raw", 64)
    was = rr(BEFORE_CFG, key, "json", 64)
    tail = f"; before: {was:.2f} us" if was else ""
    add("cfg-cpu-node17", "Configurapi echo C=64: server CPU/msg <= 0.20x the Node runner's",
        f"{ours:.2f}{rng(OURS_CFG, key, 'json', 64, 2)} us vs {node:.2f}{rng('node-configurapi', key, 'json', 64, 2)}"
        f" us = {ours / node:.2f}x{tail}" if ours and node else "n/a",
        ours <= 0.20 * node if ours and node else None)
    add("cfg-cpu-raw17", "Configurapi echo C=64: server CPU/msg <= 1.10x this runner's raw echo",
        f"{ours:.2f} us vs {raw:.2f} us = {ours / raw:.2f}x" if ours and raw else "n/a",
        ours <= 1.10 * raw if ours and raw else None)
    for c in (64, 512):
        ours = rr(OURS_ECHO, key, "raw", c)
        was = rr(BEFORE_ECHO, key, "raw", c)
        # "No worse" is judged with the rounds' noise allowed for: within 3% of the earlier
        # build's median (the ranges show how far rounds of one build move).
        add("raw-kept", f"raw echo C={c}: server CPU/msg no worse than before (median within 1.03x)",
            f"{ours:.2f}{rng(OURS_ECHO, key, 'raw', c, 2)} us vs {was:.2f}{rng(BEFORE_ECHO, key, 'raw', c, 2)} us"
            f" = {ours / was:.2f}x" if ours and was else "n/a",
            ours <= 1.03 * was if ours and was else None)
    size = res.value(OURS_ECHO, "size", "bytes")
    was = res.value(BEFORE_ECHO, "size", "bytes")
    add("size17", "release binary, stripped, with TLS and default features <= 4 MiB",
        "n/a" if size is None else f"{size:,.0f} B = {size / 1048576:.2f} MiB"
        + (f" (before: {was / 1048576:.2f} MiB)" if was else ""),
        None if size is None else size <= 4 << 20)
    for p, what in ((OURS_ECHO, "`--echo`"), (OURS_CFG, "the bench config, one JSON Schema compiled")):
        st = res.stat(p, "startup", "startup_ms")
        add("startup17", f"start-up to listening < 5 ms ({what})",
            "n/a" if st is None else f"{cell(st, 2)} ms, {st.n} runs", None if st is None else st.med < 5)
    return rows


def chart(res, path):
    def rr(p, key, mode, c):
        return res.value(p, "rr", key, mode=mode, conns=c, pipeline=1)

    panels = [
        ("Raw echo: msgs/s (P=1)", "", ["C=64", "C=512"],
         [(p, [rr(p, "msgs_per_s", "raw", 64), rr(p, "msgs_per_s", "raw", 512)]) for p in ECHO_PEERS]),
        ("Raw echo: server CPU µs per message", "", ["C=64", "C=512"],
         [(p, [rr(p, "server_cpu_us_per_msg", "raw", 64), rr(p, "server_cpu_us_per_msg", "raw", 512)])
          for p in ECHO_PEERS]),
        (f"Idle memory: bytes per connection ({res.meta.get('idle_conns', 10000):,} open)", "", ["bytes/conn"],
         [(p, [res.value(p, "idle", "bytes_per_conn")]) for p in ALL_PEERS]),
        ("Configurapi echo: msgs/s (JSON envelope)", "", ["C=64", "C=1"],
         [(p, [rr(p, "msgs_per_s", "json", 64), rr(p, "msgs_per_s", "json", 1)]) for p in CFG_PEERS]),
    ]
    svg_chart(panels, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    a = ap.parse_args()
    res = Results(load(a.results))
    # A "-before" peer is listed only when the run measured one.
    had = {r.get("label") for r in res.recs}
    global ECHO_PEERS, CFG_PEERS, ALL_PEERS
    ECHO_PEERS = [p for p in ECHO_PEERS if not p.endswith("-before") or p in had]
    CFG_PEERS = [p for p in CFG_PEERS if not p.endswith("-before") or p in had]
    ALL_PEERS = ECHO_PEERS + CFG_PEERS[::-1]
    chart(res, a.svg)
    svg_rel = os.path.relpath(a.svg, os.path.dirname(os.path.abspath(a.md)))
    with open(a.md, "w") as f:
        f.write(report(res, svg_rel))
    print(f"wrote {a.md} and {a.svg}", file=sys.stderr)


if __name__ == "__main__":
    main()
