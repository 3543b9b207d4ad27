#!/usr/bin/env python3
"""Idle memory with and without permessage-deflate (issue #15): N connections that
negotiated deflate (--deflate shared, the default) against N that did not, each on a
fresh runner process; the server's resident growth per connection from
/proc/PID/status VmRSS after all N are open.

    python3 benches/deflate_idle.py [N] [RUNNER]    # N=10000, target/release/...
"""
import os, re, resource, socket, subprocess, sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
RUNNER = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "release", "configurapi-runner-ws")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
N = min(N, hard - 200)

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024

def run(mode, offer):
    p = subprocess.Popen([RUNNER, "--echo", "--host", "127.0.0.1", "--port", "0",
                          "--idle-timeout", "0", "--deflate", mode],
                         stderr=subprocess.PIPE, text=True)
    port = None
    for line in p.stderr:
        m = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    base = rss(p.pid)
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if offer else ""
    req = ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           + ext + "\r\n").encode()
    socks = []
    for _ in range(N):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1024)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert (b"permessage-deflate" in head) == offer, head
        socks.append(s)
    # Every 101 has arrived: the server has handled every handshake.
    grew = rss(p.pid) - base
    for s in socks:
        s.close()
    p.kill()
    p.wait()
    return grew

without = run("shared", False)
with_deflate = run("shared", True)
print(f"{N} idle connections: without deflate {without / N:.0f} B/conn, "
      f"with deflate negotiated (shared) {with_deflate / N:.0f} B/conn, "
      f"ratio {with_deflate / max(without, 1):.3f}")
