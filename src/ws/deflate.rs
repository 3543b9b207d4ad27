//! permessage-deflate (RFC 7692) message transforms, sans-IO: [`Inflater`] turns a
//! compressed message payload into the message, [`Deflater`] the other way. Frames are
//! the decoder's and the write queue's business; these see whole message payloads.
//!
//! Whole messages, not frames, so that one context can serve many connections: in
//! `shared` mode (no context takeover both ways) a reactor thread owns one of each and
//! resets it per message, and a connection holds nothing for deflate between messages.
//! The decoder keeps a fragmented compressed message's bytes like any other message,
//! counted against the message limit, and inflation counts the output against the same
//! limit as it grows, so a deflate bomb costs at most the limit (docs/limits.md).

use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressionStrategy, CompressorOxide, TDEFLFlush,
    TDEFLStatus,
};
use miniz_oxide::inflate::stream::{inflate, InflateState, MinReset, ZeroReset};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use std::cell::RefCell;

use super::error::ProtocolError;
use super::extension::{DeflateMode, DeflateParams};

/// The empty stored block a sync flush ends with; the sender strips it and the receiver
/// appends it (RFC 7692 7.2.1, 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// First output step; the buffer doubles from there up to the limit.
const FIRST_CHUNK: usize = 4096;

/// Compression level: miniz's 1 (greedy, one probe) is several times faster than the
/// default on JSON and loses a few percent of ratio (docs/benchmarks.md).
const LEVEL: i32 = 1;

/// A raw-deflate decompressor with a 32 KiB window (reads any window the peer used).
pub struct Inflater {
    state: Box<InflateState>,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    /// A fresh decompressor (about 43 KiB, most of it the window).
    pub fn new() -> Inflater {
        Inflater {
            state: InflateState::new_boxed(DataFormat::Raw),
        }
    }

    /// Inflate one message's payload (its frames' payloads joined, RSV1 set on the first)
    /// and append it to `out`. Fails with [`ProtocolError::MessageTooBig`] as soon as
    /// `out` would pass `max` bytes, having held at most `max + 1`, and with
    /// [`ProtocolError::InvalidCompressedData`] on data that is not raw deflate.
    /// `reset`: forget the window afterwards (the peer does no context takeover); it is
    /// also forgotten after any error, and zeroed, so a shared context never lets one
    /// connection's message reach into another's bytes.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
        reset: bool,
    ) -> Result<(), ProtocolError> {
        let res = match self.feed(input, out, max) {
            Ok(false) => self.feed(&TAIL, out, max).map(|_| ()),
            // The peer ended the stream (BFINAL): nothing can follow in this context.
            Ok(true) => {
                self.state.reset_as(MinReset);
                Ok(())
            }
            Err(e) => Err(e),
        };
        if reset || res.is_err() {
            self.state.reset_as(ZeroReset);
        }
        res
    }

    /// Returns whether the stream ended.
    fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<bool, ProtocolError> {
        // One byte past the limit is room enough to see that the limit is passed.
        let cap = max.saturating_add(1);
        loop {
            if out.len() == out.capacity() {
                let want = out.len().max(FIRST_CHUNK).min(cap - out.len());
                out.reserve_exact(want);
            }
            let start = out.len();
            let room = (out.capacity() - start).min(cap - start);
            out.resize(start + room, 0);
            let r = inflate(&mut self.state, input, &mut out[start..], MZFlush::None);
            out.truncate(start + r.bytes_written);
            input = &input[r.bytes_consumed..];
            if out.len() > max {
                return Err(ProtocolError::MessageTooBig);
            }
            match r.status {
                Ok(MZStatus::StreamEnd) => return Ok(true),
                Ok(_) | Err(MZError::Buf) => {}
                Err(_) => return Err(ProtocolError::InvalidCompressedData),
            }
            let stuck = r.bytes_consumed == 0 && r.bytes_written == 0;
            if (input.is_empty() && r.bytes_written < room) || stuck {
                return Ok(false);
            }
        }
    }
}

/// A raw-deflate compressor. Its window never exceeds `2^window_bits`: with the full
/// 15 bits it searches normally; below that (a client that asked for a smaller
/// `server_max_window_bits`) it only encodes runs (distance 1), which any window holds.
pub struct Deflater {
    c: Box<CompressorOxide>,
}

impl Deflater {
    /// A compressor for a window of `window_bits` (8..=15). About 230 KiB.
    pub fn new(window_bits: u8) -> Deflater {
        // miniz's level 1 takes a fast path that ignores the RLE strategy, so runs-only
        // compression uses a level that searches.
        let (level, strategy) = if window_bits >= 15 {
            (LEVEL, CompressionStrategy::Default)
        } else {
            (6, CompressionStrategy::RLE)
        };
        // Negative window bits: raw deflate, no zlib header.
        let flags = create_comp_flags_from_zip_params(level, -15, strategy as i32);
        Deflater {
            c: Box::new(CompressorOxide::new(flags)),
        }
    }

    /// Compress a message payload and append it to `out`, ending with a sync flush
    /// whose empty block is left off (RFC 7692 7.2.1). `reset`: the next message does
    /// not refer back to this one (no context takeover).
    pub fn deflate(&mut self, input_all: &[u8], out: &mut Vec<u8>, reset: bool) {
        let mut input = input_all;
        let begin = out.len();
        out.reserve(input.len() / 2 + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.len().max(1024));
            }
            let start = out.len();
            let room = out.capacity() - start;
            out.resize(start + room, 0);
            let (status, used, written) =
                compress(&mut self.c, input, &mut out[start..], TDEFLFlush::Sync);
            out.truncate(start + written);
            input = &input[used..];
            // A compressor fed valid arguments does not fail; if it did, the stream is
            // no longer usable, and the message goes as a stored block instead.
            debug_assert_eq!(status, TDEFLStatus::Okay);
            if status != TDEFLStatus::Okay {
                self.c.reset();
                out.truncate(begin);
                stored_block(input_all, out);
                return;
            }
            // Done once the sync flush's empty block is out. Input all taken and room
            // left over is not enough: miniz may hold back its last block (lookahead)
            // and write it, with the flush, only on the next call (Autobahn 12.2.9:
            // 4 KiB of a 64 KiB message went missing without this).
            if input.is_empty() && written < room && out[begin..].ends_with(&TAIL) {
                break;
            }
            if input.is_empty() && used == 0 && written == 0 {
                // No progress and no flush: not expected; send the message stored.
                debug_assert!(false, "miniz made no progress");
                self.c.reset();
                out.truncate(begin);
                stored_block(input_all, out);
                out.extend_from_slice(&TAIL);
                break;
            }
        }
        debug_assert!(out[begin..].ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        if reset {
            self.c.reset();
        }
    }
}

/// The `--deflate` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Off, shared contexts, or per-connection contexts.
    pub mode: DeflateMode,
    /// Messages shorter than this go uncompressed (default 1 KiB, as Node `ws`).
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            mode: DeflateMode::Shared,
            threshold: 1024,
        }
    }
}

/// What a connection that negotiated permessage-deflate holds: its parameters and, only
/// in `takeover` mode once a message used them, its own contexts. Directions without
/// context takeover use the thread's shared contexts, reset per message.
pub struct ConnDeflate {
    /// What was negotiated.
    pub params: DeflateParams,
    threshold: usize,
    inflater: Option<Box<Inflater>>,
    deflater: Option<Box<Deflater>>,
}

impl ConnDeflate {
    /// Negotiate from the request's `Sec-WebSocket-Extensions` values: the connection's
    /// state and the answer's header value, or `None` when deflate is not used.
    pub fn negotiate<'a>(
        offers: impl IntoIterator<Item = &'a str>,
        cfg: &DeflateConfig,
    ) -> Option<(ConnDeflate, String)> {
        let (params, answer) = super::extension::negotiate(offers, cfg.mode)?;
        Some((
            ConnDeflate {
                params,
                threshold: cfg.threshold,
                inflater: None,
                deflater: None,
            },
            answer,
        ))
    }

    /// Inflate a compressed message into `out` (see [`Inflater::inflate`]).
    pub fn inflate(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ProtocolError> {
        if self.params.client_no_context_takeover {
            SHARED.with(|s| {
                let mut s = s.borrow_mut();
                s.inflater
                    .get_or_insert_with(Inflater::new)
                    .inflate(payload, out, max, true)
            })
        } else {
            self.inflater
                .get_or_insert_with(Box::default)
                .inflate(payload, out, max, false)
        }
    }

    /// The compressed payload for an outgoing data message, or `None` when it stays
    /// as it is (under the threshold).
    pub fn deflate(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        if payload.len() < self.threshold {
            return None;
        }
        let mut out = Vec::new();
        let bits = self.params.server_max_window_bits;
        if self.params.server_no_context_takeover {
            SHARED.with(|s| {
                let mut s = s.borrow_mut();
                let d = if bits >= 15 {
                    &mut s.deflater
                } else {
                    &mut s.deflater_rle
                };
                d.get_or_insert_with(|| Deflater::new(bits))
                    .deflate(payload, &mut out, true)
            });
        } else {
            self.deflater
                .get_or_insert_with(|| Box::new(Deflater::new(bits)))
                .deflate(payload, &mut out, false);
        }
        Some(out)
    }

    /// Bytes of per-connection context this connection holds (0 in `shared` mode).
    pub fn context_bytes(&self) -> usize {
        self.inflater.as_ref().map_or(0, |_| INFLATER_BYTES)
            + self.deflater.as_ref().map_or(0, |_| DEFLATER_BYTES)
    }
}

/// Heap held by one [`Inflater`]: the 32 KiB window plus the decoder's tables.
pub const INFLATER_BYTES: usize = std::mem::size_of::<InflateState>();
/// Heap held by one [`Deflater`]: miniz's LZ code buffer (64 KiB), its hash chains and
/// window (about 160 KiB) and Huffman tables.
pub const DEFLATER_BYTES: usize =
    std::mem::size_of::<CompressorOxide>() + (32 << 10) + 258 + (128 << 10) + 4320;

/// The contexts one thread shares among its connections, and the buffer it inflates
/// into (a message is handled before the next one is inflated).
#[derive(Default)]
struct Shared {
    inflater: Option<Inflater>,
    deflater: Option<Deflater>,
    deflater_rle: Option<Deflater>,
    scratch: Vec<u8>,
}

thread_local! {
    static SHARED: RefCell<Shared> = RefCell::default();
}

/// Run `f` with the thread's inflation buffer, empty. A buffer grown past 64 KiB by a
/// large message is given back afterwards, so the thread does not keep its peak.
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SHARED.with(|s| std::mem::take(&mut s.borrow_mut().scratch));
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= 64 << 10 {
        SHARED.with(|s| s.borrow_mut().scratch = buf);
    }
    r
}

/// `input` as non-final stored blocks (no compression), ending like a sync flush.
fn stored_block(input: &[u8], out: &mut Vec<u8>) {
    for chunk in input.chunks(0xffff) {
        let n = chunk.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from("[");
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(
                "{{\"id\":{i},\"name\":\"item-{i}\",\"tags\":[\"a\",\"b\"],\"ok\":true}},"
            ));
            i += 1;
        }
        s.push_str("{}]");
        s.into_bytes()
    }

    #[test]
    fn rfc7692_hello_samples_inflate() {
        // 7.2.3.1: "Hello" compressed; 7.2.3.2: the same in two frames, joined.
        let mut inf = Inflater::new();
        let mut out = Vec::new();
        inf.inflate(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &mut out,
            100,
            true,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
        // 7.2.3.3: a stored block.
        out.clear();
        inf.inflate(
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &mut out,
            100,
            true,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn context_takeover_refers_back_to_the_previous_message() {
        // 7.2.3.2: the second "Hello" with the first's window.
        let mut inf = Inflater::new();
        let mut out = Vec::new();
        inf.inflate(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &mut out,
            100,
            false,
        )
        .unwrap();
        out.clear();
        inf.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100, false)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn empty_message_round_trips_in_a_byte_or_two() {
        let mut d = Deflater::new(15);
        let mut out = Vec::new();
        d.deflate(b"", &mut out, true);
        assert!(!out.is_empty() && out.len() <= 2, "{out:?}");
        let mut back = Vec::new();
        Inflater::new().inflate(&out, &mut back, 10, true).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn round_trips_with_and_without_takeover_and_small_windows() {
        for bits in [8, 9, 12, 15] {
            for reset in [true, false] {
                let mut d = Deflater::new(bits);
                let mut inf = Inflater::new();
                for n in [0, 1, 100, 4096, 70_000, 300_000] {
                    let msg = json(n);
                    let mut z = Vec::new();
                    d.deflate(&msg, &mut z, reset);
                    if n >= 4096 && bits == 15 {
                        assert!(z.len() * 3 < msg.len(), "{n}: {} bytes", z.len());
                    }
                    let mut back = Vec::new();
                    inf.inflate(&z, &mut back, 1 << 20, reset).unwrap();
                    assert_eq!(back, msg, "bits {bits} reset {reset} n {n}");
                }
            }
        }
    }

    #[test]
    fn incompressible_messages_round_trip() {
        let mut x = 0x1234_5678u32;
        let mut noise = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        };
        for n in [65536, 100_000, 131072] {
            let msg: Vec<u8> = (0..n).map(|_| noise()).collect();
            let mut z = Vec::new();
            Deflater::new(15).deflate(&msg, &mut z, true);
            let mut back = Vec::new();
            Inflater::new()
                .inflate(&z, &mut back, 1 << 20, true)
                .unwrap();
            assert_eq!(back.len(), msg.len(), "{n}");
            assert_eq!(back, msg, "{n}");
            // As stored blocks (what zlib makes of noise): the inflater copies these
            // through its window in pieces.
            let mut stored = Vec::new();
            stored_block(&msg, &mut stored);
            back.clear();
            Inflater::new()
                .inflate(&stored, &mut back, 1 << 20, true)
                .unwrap();
            assert_eq!(back.len(), msg.len(), "stored {n}");
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_with_bounded_memory() {
        let mut d = Deflater::new(15);
        let mut z = Vec::new();
        d.deflate(&vec![0u8; 8 << 20], &mut z, true);
        assert!(z.len() < 64 << 10, "{}", z.len());
        let mut inf = Inflater::new();
        let mut out = Vec::new();
        let max = 1 << 20;
        assert_eq!(
            inf.inflate(&z, &mut out, max, true),
            Err(ProtocolError::MessageTooBig)
        );
        assert!(out.capacity() <= max + 1, "{}", out.capacity());
        // The context is usable again afterwards.
        out.clear();
        inf.inflate(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &mut out,
            100,
            true,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn the_exact_limit_passes() {
        let msg = vec![b'a'; 5000];
        let mut z = Vec::new();
        Deflater::new(15).deflate(&msg, &mut z, true);
        let mut out = Vec::new();
        Inflater::new().inflate(&z, &mut out, 5000, true).unwrap();
        assert_eq!(out, msg);
        out.clear();
        assert_eq!(
            Inflater::new().inflate(&z, &mut out, 4999, true),
            Err(ProtocolError::MessageTooBig)
        );
    }

    #[test]
    fn garbage_is_invalid_data_and_a_reset_context_cannot_see_old_bytes() {
        let mut inf = Inflater::new();
        let mut out = Vec::new();
        // BTYPE 11 is reserved.
        assert_eq!(
            inf.inflate(&[0xff, 0xff], &mut out, 100, true),
            Err(ProtocolError::InvalidCompressedData)
        );
        // A secret through the shared context, reset after it; then a message made
        // with the secret as its context, which refers back to it.
        let mut d = Deflater::new(15);
        let mut first = Vec::new();
        d.deflate(b"secret secret secret", &mut first, false);
        let mut second = Vec::new();
        d.deflate(b"secret!", &mut second, false);
        out.clear();
        inf.inflate(&first, &mut out, 100, true).unwrap();
        out.clear();
        let _ = inf.inflate(&second, &mut out, 100, true);
        assert!(!out.windows(6).any(|w| w == b"secret"), "{out:?}");
        // Kept context: the same bytes do read back.
        let mut keep = Inflater::new();
        out.clear();
        keep.inflate(&first, &mut out, 100, false).unwrap();
        out.clear();
        keep.inflate(&second, &mut out, 100, false).unwrap();
        assert_eq!(out, b"secret!");
    }
}
