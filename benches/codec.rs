//! Codec microbenchmarks: frame decode, encode and unmasking at 16 B, 1 KiB, 64 KiB and
//! 1 MiB (reported as bytes/s), and upgrade-request parsing.
//!
//! ```sh
//! cargo bench --bench codec              # all of them
//! cargo bench --bench codec -- mask/     # one group
//! ```
//!
//! - `decode/text` and `decode/binary`: one whole masked client frame in the input, the
//!   common case (the fast path: unmask in place, UTF-8 check for text, hand out a
//!   slice). The input is re-masked before each iteration, outside the timing.
//! - `decode_split_64k/text`: the same frame fed in 64 KiB reads, as the reactor's shared
//!   read buffer delivers a large frame (the slow path: copy into the reassembly buffer).
//! - `encode/text`: `encode_frame` into a reused buffer (header + copy).
//! - `mask/word` vs `mask/reference`: `apply_mask` (a word at a time) against the
//!   byte-at-a-time definition.
//! - `handshake/parse_request`: a browser-like upgrade request, then the 101 answer.
//!
//! The message -> Event -> envelope bench for a 3-policy route is in benches/pipeline.rs
//! (`inline/message_to_envelope_3_policies`).

use std::hint::black_box;

use configurapi_runner_ws::ws::frame::{encode_frame, Decoder, Incoming, Limits, Opcode};
use configurapi_runner_ws::ws::handshake::{parse_request, HandshakeLimits};
use configurapi_runner_ws::ws::mask::{apply_mask, apply_mask_reference};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// ASCII text of `n` bytes (valid UTF-8, like a JSON message).
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A final, masked client frame carrying `body`.
fn client_frame(opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let n = body.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= 0xFFFF {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&KEY);
    let start = f.len();
    f.extend_from_slice(body);
    apply_mask_reference(&mut f[start..], KEY, 0);
    f
}

fn batch(size: usize) -> BatchSize {
    if size >= 64 << 10 {
        BatchSize::LargeInput
    } else {
        BatchSize::SmallInput
    }
}

/// Decode one message from `input` in steps of at most `step` bytes; the message length.
fn decode_all(dec: &mut Decoder, input: &mut [u8], step: usize) -> usize {
    let mut pos = 0;
    let mut got = 0;
    while pos < input.len() {
        let end = (pos + step).min(input.len());
        let mut chunk_pos = pos;
        while chunk_pos < end {
            let (used, item) = dec
                .decode(&mut input[chunk_pos..end], &Limits::default())
                .expect("valid frame");
            chunk_pos += used;
            match item {
                Some(Incoming::Text(m)) => got = black_box(m).len(),
                Some(Incoming::Binary(m)) => got = black_box(m).len(),
                Some(_) => panic!("unexpected control frame"),
                None => {}
            }
        }
        pos = end;
    }
    got
}

fn decode(c: &mut Criterion) {
    for (opcode, name) in [(0x1u8, "text"), (0x2, "binary")] {
        let mut g = c.benchmark_group(format!("decode/{name}"));
        for (size, label) in SIZES {
            let frame = client_frame(opcode, &payload(size));
            let mut dec = Decoder::new();
            assert_eq!(decode_all(&mut dec, &mut frame.clone(), usize::MAX), size);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter_batched_ref(
                    || frame.clone(),
                    |input| decode_all(&mut dec, input, usize::MAX),
                    batch(size),
                )
            });
        }
        g.finish();
    }
    let mut g = c.benchmark_group("decode_split_64k/text");
    for (size, label) in SIZES.into_iter().filter(|&(s, _)| s >= 64 << 10) {
        let frame = client_frame(0x1, &payload(size));
        let mut dec = Decoder::new();
        assert_eq!(decode_all(&mut dec, &mut frame.clone(), 64 << 10), size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |input| decode_all(&mut dec, input, 64 << 10),
                batch(size),
            )
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode/text");
    for (size, label) in SIZES {
        let body = payload(size);
        let mut out = Vec::with_capacity(size + 16);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, Opcode::Text, black_box(&body));
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn mask(c: &mut Criterion) {
    type MaskFn = fn(&mut [u8], [u8; 4], usize);
    let impls: [(&str, MaskFn); 2] = [("word", apply_mask), ("reference", apply_mask_reference)];
    for (name, f) in impls {
        let mut g = c.benchmark_group(format!("mask/{name}"));
        for (size, label) in SIZES {
            let mut buf = payload(size);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| f(black_box(&mut buf), black_box(KEY), 0))
            });
        }
        g.finish();
    }
}

/// What a browser sends (Chrome, trimmed of cookies).
const UPGRADE: &[u8] = b"GET /chat?token=abc123 HTTP/1.1\r\n\
Host: 127.0.0.1:8000\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:3000\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\r\n";

fn handshake(c: &mut Criterion) {
    let limits = HandshakeLimits::default();
    let (req, used) = parse_request(UPGRADE, &limits)
        .expect("valid request")
        .expect("complete head");
    assert_eq!(used, UPGRADE.len());
    assert_eq!(req.subprotocol.as_deref(), Some("chat"));
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Bytes(UPGRADE.len() as u64));
    g.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(UPGRADE), &limits))
    });
    g.bench_function("parse_request_and_101", |b| {
        b.iter(|| {
            let (req, _) = parse_request(black_box(UPGRADE), &limits)
                .expect("valid request")
                .expect("complete head");
            req.response()
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode, mask, handshake);
criterion_main!(benches);
