#!/usr/bin/env python3
"""Latency of a management post to a connection on another runner (forwarded through
Redis) against one to a connection on the same runner (issue #16, docs/cluster.md).

    benches/cluster_post_latency.py WS_ADDR MGMT_OWNER MGMT_OTHER [N]

One client connects to WS_ADDR (the owner runner) and reads everything it gets; a
keep-alive HTTP/1.1 connection posts N times to it through MGMT_OTHER (cross-node) and
N times through MGMT_OWNER (local), in interleaved batches. Each post answers 200 only
once the owner has queued the frame. Prints p50/p99 in microseconds for both, as JSON.
"""
import base64
import json
import os
import socket
import sys
import threading
import time


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def ws_connect(addr):
    s = socket.create_connection(hostport(addr))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (f"GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("upgrade failed")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"upgrade refused: {head[:80]!r}")
    # Read and drop whatever arrives, so queues never fill.
    threading.Thread(target=lambda: [None for _ in iter(lambda: s.recv(65536), b"")],
                     daemon=True).start()
    return s


class Http:
    def __init__(self, addr):
        self.s = socket.create_connection(hostport(addr))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def call(self, method, target, body=b""):
        self.s.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(self.buf) < length:
            self.buf += self.s.recv(65536)
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    ws_addr, owner, other = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 5000
    _ws = ws_connect(ws_addr)
    own = Http(owner)
    ids = []
    deadline = time.time() + 10
    while not ids and time.time() < deadline:
        ids = json.loads(own.call("GET", "/@connections?scope=local")[1])
    if len(ids) != 1:
        raise SystemExit(f"expected one connection on the owner, found {ids}")
    target = f"/@connections/{ids[0]}"
    body = b'{"body":"ping"}'
    far = Http(other)
    times = {"local": [], "cross-node": []}
    batch = 100
    for i in range(0, n, batch):
        for name, h in (("local", own), ("cross-node", far)):
            for _ in range(batch):
                t = time.perf_counter_ns()
                status, _ = h.call("POST", target, body)
                times[name].append((time.perf_counter_ns() - t) / 1000)
                if status != 200:
                    raise SystemExit(f"{name} post answered {status}")
    out = {k: {"n": len(v), "p50_us": round(pct(v, 50)), "p99_us": round(pct(v, 99))}
           for k, v in times.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
