#!/usr/bin/env python3
"""Writes the hand-written seeds to fuzz/corpus/<target>/seed-*.

Run from anywhere: python3 fuzz/make_seeds.py. The incremental targets (frame, upgrade,
mgmt_http) take a prefix [lim0, lim1, n, len_1..len_n] before the payload (src/fuzzing.rs,
`Feed`): each payload is written with a few ways of cutting it into reads.
"""
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

# Ways to cut a payload into reads: one byte at a time, whole, odd sizes.
SPLITS = [[], [0], [3], [1, 5, 200], [2, 14]]


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def fed(target, name, lim0, lim1, payload, splits=SPLITS):
    for i, lens in enumerate(splits):
        write(target, f"{name}-{i}", bytes([lim0, lim1, len(lens)] + lens) + payload)


# ---- frame -------------------------------------------------------------------------
KEY = b"\x11\x22\x33\x44"


def frame(b0, payload, length=None, ext=None, key=KEY):
    """A masked client frame; ext forces 126/127 length encoding."""
    n = len(payload) if length is None else length
    out = bytes([b0])
    if ext == 127 or (ext is None and n > 0xFFFF):
        out += bytes([0x80 | 127]) + struct.pack(">Q", n)
    elif ext == 126 or (ext is None and n >= 126):
        out += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        out += bytes([0x80 | n])
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return out + key + masked


TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
FIN = 0x80
frames = {
    "text": frame(FIN | TEXT, b"Hello"),
    "text-utf8": frame(FIN | TEXT, "h\u00e9llo \u2603 \U0001F600".encode()),
    "binary": frame(FIN | BINARY, bytes(range(40))),
    "empty-text": frame(FIN | TEXT, b""),
    "ping": frame(FIN | PING, b"are you there"),
    "pong": frame(FIN | PONG, b""),
    "close-empty": frame(FIN | CLOSE, b""),
    "close-reason": frame(FIN | CLOSE, struct.pack(">H", 1000) + b"bye"),
    "close-4000": frame(FIN | CLOSE, struct.pack(">H", 4000)),
    "fragmented-text": frame(TEXT, b"Hel") + frame(CONT, b"lo, ") + frame(FIN | CONT, b"world"),
    "fragmented-utf8-split": frame(TEXT, "\u2603".encode()[:1])
    + frame(FIN | CONT, "\u2603".encode()[1:]),
    "fragmented-ping-between": frame(BINARY, b"\x00\x01")
    + frame(FIN | PING, b"p")
    + frame(FIN | CONT, b"\x02\x03"),
    "ext16": frame(FIN | BINARY, bytes(i % 251 for i in range(300))),
    "ext16-short": frame(FIN | TEXT, b"abc", ext=126),
    "ext64": frame(FIN | BINARY, b"x" * 130, ext=127),
    "ext64-huge": frame(FIN | BINARY, b"", length=1 << 40)[:14],
    "ext64-topbit": frame(FIN | BINARY, b"", length=1 << 63)[:14],
    "many": frame(FIN | TEXT, b"a")
    + frame(FIN | PING, b"")
    + frame(FIN | BINARY, b"b" * 126)
    + frame(FIN | CLOSE, struct.pack(">H", 1001)),
    "bad-utf8": frame(FIN | TEXT, b"\xff\xfe"),
    "bad-utf8-fragment": frame(TEXT, b"ok") + frame(FIN | CONT, b"\xc3"),
    "bad-close-code": frame(FIN | CLOSE, struct.pack(">H", 1005)),
    "close-1-byte": frame(FIN | CLOSE, b"\x03"),
    "close-bad-reason": frame(FIN | CLOSE, struct.pack(">H", 1000) + b"\xff"),
    "rsv": frame(FIN | 0x40 | TEXT, b"x"),
    "opcode3": frame(FIN | 3, b"x"),
    "unmasked": bytes([FIN | TEXT, 1]) + b"x",
    "ping-fragmented": frame(PING, b""),
    "ping-too-long": frame(FIN | PING, b"p" * 126),
    "continuation-first": frame(FIN | CONT, b"x"),
    "text-during-fragment": frame(TEXT, b"a") + frame(FIN | TEXT, b"b"),
}
for name, data in frames.items():
    fed("frame", name, 255, 255, data)
# Small limits: the same frames against a 40-byte frame and 64-byte message limit.
for name in ["ext16", "fragmented-text", "many", "binary"]:
    fed("frame", name + "-small", 10, 8, frames[name], splits=[[0], [7]])

# ---- upgrade -----------------------------------------------------------------------
GOOD = (
    b"GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
upgrades = {
    "rfc": GOOD,
    "subprotocols": GOOD[:-2] + b"Sec-WebSocket-Protocol: chat, superchat\r\n\r\n",
    "odd-case": b"GET / HTTP/1.1\r\nhOsT: h\r\nUPGRADE: WebSocket\r\n"
    b"connection: keep-alive, UPGRADE\r\nSEC-WEBSOCKET-KEY:   dGhlIHNhbXBsZSBub25jZQ==  \r\n"
    b"sec-websocket-version: 13\r\nsec-websocket-protocol: v1.json.api\r\n\r\n",
    "pipelined-frame": GOOD + frame(FIN | TEXT, b"hi"),
    "bare-lf": GOOD.replace(b"\r\n", b"\n"),
    "post": GOOD.replace(b"GET", b"POST", 1),
    "no-version": GOOD.replace(b"Sec-WebSocket-Version: 13\r\n", b""),
    "version-8": GOOD.replace(b"Version: 13", b"Version: 8"),
    "bad-key": GOOD.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"),
    "two-keys": GOOD[:-2] + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    "http10": GOOD.replace(b"HTTP/1.1", b"HTTP/1.0"),
    "plain-get": b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "no-connection": GOOD.replace(b"Connection: Upgrade\r\n", b""),
    "bad-subprotocol": GOOD[:-2] + b"Sec-WebSocket-Protocol: a b, c\r\n\r\n",
    "empty-subprotocol": GOOD[:-2] + b"Sec-WebSocket-Protocol: \r\n\r\n",
    "absolute-target": GOOD.replace(b"/chat?x=1", b"http://h/chat?token=abc&y=%20"),
    "obs-text": GOOD[:-2] + b"X-Name: caf\xe9\r\n\r\n",
    "leading-crlf": b"\r\n" + GOOD,
    "malformed": b"GET /\x01 HTTP/1.1\r\n\r\n",
    "partial": GOOD[:40],
}
for name, data in upgrades.items():
    fed("upgrade", name, 255, 31, data)
fed("upgrade", "rfc-small", 4, 3, GOOD, splits=[[0], [9]])

# ---- mgmt_http ---------------------------------------------------------------------
H = b"Host: 127.0.0.1:9100\r\n"
http = {
    "get": b"GET /@connections HTTP/1.1\r\n" + H + b"\r\n",
    "get-query": b"GET /@connections?limit=10&after=a%2Fb&x=1+2 HTTP/1.1\r\n" + H + b"\r\n",
    "post-cl": b"POST /@connections/abc HTTP/1.1\r\n" + H
    + b"Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"hello\":\"w\"}",
    "post-chunked": b"POST /@connections/abc HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\n4;name=v\r\nWiki\r\n5 ; x\r\npedia\r\n0\r\nX-T: 1\r\n\r\n",
    "chunked-upper": b"POST /p HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
    "pipelined": b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n"
    + b"DELETE /@connections/x HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n"
    + b"GET /metrics HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "expect-continue": b"POST /@connections/a HTTP/1.1\r\n" + H
    + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    "expect-other": b"POST /a HTTP/1.1\r\n" + H + b"Expect: magic\r\n\r\n",
    "http10-keepalive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    "head": b"HEAD /metrics HTTP/1.1\r\n" + H + b"\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    "absolute": b"GET http://127.0.0.1:9100/@connections?x=1 HTTP/1.1\r\n" + H + b"\r\n",
    "cl-and-te": b"POST / HTTP/1.1\r\n" + H
    + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-gzip": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    "te-not-last": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    "cl-list": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2, 2\r\n\r\nok",
    "cl-conflict": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "cl-huge": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\n" + H + H + b"\r\n",
    "http2": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "bad-target": b"GET foo HTTP/1.1\r\n" + H + b"\r\n",
    "chunk-bare-lf": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
    "chunk-junk": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1x\r\nx\r\n",
    "chunk-huge": b"POST / HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
    "leading-crlf": b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
}
for name, data in http.items():
    fed("mgmt_http", name, 255, 255, data)
fed("mgmt_http", "post-chunked-small", 20, 0x13, http["post-chunked"], splits=[[0], [11]])

# ---- message -----------------------------------------------------------------------
messages = {
    "protocol-example": b'{"name":"getData","method":"get","params":{"id":123},"query":{"verbose":"1"},'
    b'"payload":{"foo":"bar"},"headers":{"message-id":"abc-123","correlation-id":"trace-9"}}',
    "echo": b'{"name":"echo","payload":{"hi":1},"headers":{"message-id":"1"}}',
    "ping": b'{"name":"ping","payload":{"from":"me"},"headers":{"message-id":"2"}}',
    "ping-no-payload": b'{"name":"ping","headers":{"message-id":2}}',
    "stream": b'{"name":"stream","headers":{"message-id":"3"}}',
    "inspect": b'{"name":"inspect","params":{"id":7},"query":{"id":8,"correlationid":"c"},'
    b'"headers":{"message-id":{"n":[1,2]}}}',
    "method-post": b'{"name":"","method":"POST","payload":null}',
    "name-number": b'{"name":42,"method":"Put","headers":{"push-function":"x","postback-url":"y"}}',
    "not-json": b"not json {",
    "number": b"42",
    "array": b"[1]",
    "string": b'"echo"',
    "empty": b"",
    "binary": b"\x00\xff\xfe{",
    "deep": b'{"name":"echo","payload":' + b"[" * 100 + b"]" * 100 + b"}",
    "unicode": '{"name":"echo","payload":"\u2603\\u00e9\\ud83d\\ude00","headers":{"message-id":"\u00e9"}}'.encode(),
}
for name, data in messages.items():
    write("message", name, data)

# ---- config ------------------------------------------------------------------------
def yaml_blocks(path):
    text = open(path, encoding="utf-8").read()
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


for f in sorted(os.listdir(os.path.join(ROOT, "tests", "fixtures"))):
    if f.endswith(".yaml"):
        write("config", "fixture-" + f, open(os.path.join(ROOT, "tests", "fixtures", f), "rb").read())
write("config", "default", open(os.path.join(ROOT, "src", "runner", "default_config.yaml"), "rb").read())
for i, block in enumerate(yaml_blocks(os.path.join(ROOT, "docs", "config.md"))):
    write("config", f"docs-config-{i}", block.encode())
configs = {
    "when": b"api:\n  events:\n    - name: a\n      when: production\n      policies: [echoHandler]\n"
    b"    - name: a\n      policies:\n        - setJsonResponseHandler: [201, {x: 1}]\n",
    "not-mapping": b"- a\n- b\n",
    "no-api": b"apx: 1\n",
    "events-string": b"api:\n  events: nope\n",
    "no-name": b"api:\n  events:\n    - policies: []\n",
    "bad-policy": b"api:\n  events:\n    - name: a\n      policies: ['', {}, 3]\n",
    "import-string": b"import: configurapi-handler-http\napi:\n  events: []\n",
    "import-unknown": b"import: [nope]\napi:\n  events: []\n",
    "unknown-handler": b"api:\n  events:\n    - name: a\n      policies: [noSuchHandler]\n",
    "anchors": b"x: &a [1, 2]\napi:\n  events:\n    - name: *a\n      logLevel: debug\n      policies:\n"
    b"        - headerHandler:\n          parameters: *a\n",
    "tags": b"api: !custom\n  events:\n    - name: !!int 5\n      policies: [echoHandler]\n",
    "syntax": b"api: [\n",
}
for name, data in configs.items():
    write("config", name, data)
