//! Per-connection write queue with an exact count of the bytes not yet written.
//!
//! The count is the backpressure signal: stream producers and metrics read it, and
//! the reactor stops reading from a peer whose queue is over the high-water mark.
//! Small frames are coalesced into one pooled buffer; large payloads keep their own
//! buffer and go out with one vectored write together with their header. When the
//! queue drains, its buffers go back to the reactor's pool, so an idle connection
//! holds no write buffer at all.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use crate::ws::frame::{encode_header, Opcode, MAX_HEADER};

/// Payloads up to this size are copied into the shared tail buffer.
const COALESCE_PAYLOAD: usize = 16 * 1024;
/// Most slices handed to one `writev`.
const MAX_IOV: usize = 64;
/// Largest buffer in the queue, so `head_written` fits in 32 bits (every connection
/// keeps the queue, #17): a payload over 4 GiB is queued in pieces.
const MAX_BUF: usize = u32::MAX as usize;

/// Emptied queue rings a [`BufPool`] keeps for the next queues that fill.
const MAX_FREE_RINGS: usize = 64;

/// A free list of byte buffers shared by all connections of one reactor thread.
pub struct BufPool {
    free: Vec<Vec<u8>>,
    /// Emptied queues' rings (#17: a queue gives its ring back when it drains, so an
    /// idle connection holds none, and the next answer takes one from here instead of
    /// allocating and freeing one per message).
    rings: Vec<VecDeque<Vec<u8>>>,
    buf_capacity: usize,
    max_free: usize,
}

impl BufPool {
    /// A pool handing out buffers of `buf_capacity` bytes and keeping at most `max_free`.
    pub fn new(buf_capacity: usize, max_free: usize) -> BufPool {
        BufPool {
            free: Vec::new(),
            rings: Vec::new(),
            buf_capacity,
            max_free,
        }
    }

    /// An empty buffer, reused when one is free.
    pub fn get(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.buf_capacity))
    }

    /// An empty ring for a queue, reused when one is free.
    fn ring(&mut self) -> VecDeque<Vec<u8>> {
        self.rings.pop().unwrap_or_default()
    }

    /// Give an empty ring back (small ones only: most queues never hold more than a
    /// few buffers). At most [`MAX_FREE_RINGS`] are kept (96 B each for the usual 4
    /// buffers): about as many as connections that answer in one event batch.
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    fn put_ring(&mut self, ring: VecDeque<Vec<u8>>) {
        if ring.capacity() > 0 && ring.capacity() <= 16 && self.rings.len() < MAX_FREE_RINGS {
            self.rings.push(ring);
        }
    }

    /// Give a buffer back. Oversized ones are freed so the pool does not hoard memory.
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() >= self.buf_capacity
            && buf.capacity() <= 4 * self.buf_capacity
            && self.free.len() < self.max_free
        {
            buf.clear();
            self.free.push(buf);
        }
    }
}

/// Encoded bytes waiting for the socket.
#[derive(Default)]
pub struct WriteQueue {
    bufs: VecDeque<Vec<u8>>,
    queued: usize,
    /// Bit i set: `bufs[i]` begins with a frame (or HTTP) boundary rather than the rest
    /// of a large payload. Only the first 32 buffers are tracked; the rest count as
    /// continuations, which only makes [`WriteQueue::drop_unstarted`] keep more.
    starts: u32,
    /// Bytes of `bufs[0]` already written (buffers are at most [`MAX_BUF`]).
    head_written: u32,
}

impl WriteQueue {
    /// Bytes queued and not yet accepted by the socket. Exact.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queue raw bytes (an HTTP answer).
    pub fn push_raw(&mut self, pool: &mut BufPool, bytes: &[u8]) {
        self.tail(pool, bytes.len()).extend_from_slice(bytes);
        self.queued += bytes.len();
    }

    /// Queue one final, unmasked frame, copying the payload.
    pub fn push_frame(&mut self, pool: &mut BufPool, opcode: Opcode, payload: &[u8]) {
        let mut hdr = [0u8; MAX_HEADER];
        let n = encode_header(&mut hdr, opcode, payload.len());
        if payload.len() <= COALESCE_PAYLOAD {
            let tail = self.tail(pool, n + payload.len());
            tail.extend_from_slice(&hdr[..n]);
            tail.extend_from_slice(payload);
        } else {
            self.tail(pool, n).extend_from_slice(&hdr[..n]);
            self.push_payload(payload.to_vec(), MAX_BUF);
        }
        self.queued += n + payload.len();
    }

    /// Queue one final, unmasked frame whose payload the caller gives away (no copy for
    /// large payloads).
    pub fn push_frame_owned(&mut self, pool: &mut BufPool, opcode: Opcode, payload: Vec<u8>) {
        if payload.len() <= COALESCE_PAYLOAD {
            return self.push_frame(pool, opcode, &payload);
        }
        let mut hdr = [0u8; MAX_HEADER];
        let n = encode_header(&mut hdr, opcode, payload.len());
        self.tail(pool, n).extend_from_slice(&hdr[..n]);
        self.queued += n + payload.len();
        self.push_payload(payload, MAX_BUF);
    }

    /// Queue one final, unmasked frame whose payload `write` appends to the buffer it is
    /// given, in place: no buffer of its own, no copy (#17: an inline answer's envelope
    /// is serialised straight into the queue). `hint` is a guess of the payload's size.
    pub fn push_frame_with(
        &mut self,
        pool: &mut BufPool,
        opcode: Opcode,
        hint: usize,
        write: &mut dyn FnMut(&mut Vec<u8>),
    ) {
        if hint > COALESCE_PAYLOAD {
            let mut payload = Vec::with_capacity(hint);
            write(&mut payload);
            return self.push_frame_owned(pool, opcode, payload);
        }
        // The header's length follows the payload's, known once it is written: room is
        // left for the header the hint calls for (2 bytes under 126, else 4), and the
        // payload is moved when its length came out on the other side.
        let guess = if hint < 126 { 2 } else { 4 };
        let tail = self.tail(pool, guess + hint);
        let at = tail.len();
        // #17 json-reply: fixed-size pieces (stores, not a call to memcpy/memset).
        if guess == 2 {
            tail.extend_from_slice(&[0; 2]);
        } else {
            tail.extend_from_slice(&[0; 4]);
        }
        write(tail);
        let len = tail.len() - at - guess;
        if guess == 2 && len < 126 {
            // The usual small answer: its 2-byte header (encode_header's) in the room
            // left for it.
            tail[at] = 0x80 | opcode.as_u8();
            tail[at + 1] = len as u8;
            self.queued += 2 + len;
            return;
        }
        let mut hdr = [0u8; MAX_HEADER];
        let n = encode_header(&mut hdr, opcode, len);
        if n == MAX_HEADER {
            // Over 64 KiB: the payload gets a buffer of its own after its header, as a
            // large payload pushed any other way does.
            let payload = tail.split_off(at + guess);
            tail.truncate(at);
            tail.extend_from_slice(&hdr[..n]);
            self.queued += n + len;
            return self.push_payload(payload, MAX_BUF);
        }
        if n > guess {
            tail.resize(at + n + len, 0);
            tail.copy_within(at + guess..at + guess + len, at + n);
        } else if n < guess {
            tail.copy_within(at + guess.., at + n);
            tail.truncate(at + n + len);
        }
        tail[at..at + n].copy_from_slice(&hdr[..n]);
        self.queued += n + len;
    }

    /// deflate: queue one final frame with RSV1 set (a permessage-deflate payload).
    pub fn push_frame_compressed(&mut self, pool: &mut BufPool, opcode: Opcode, payload: Vec<u8>) {
        let mut hdr = [0u8; MAX_HEADER];
        let n = encode_header(&mut hdr, opcode, payload.len());
        hdr[0] |= 0x40;
        self.queued += n + payload.len();
        if payload.len() <= COALESCE_PAYLOAD {
            let tail = self.tail(pool, n + payload.len());
            tail.extend_from_slice(&hdr[..n]);
            tail.extend_from_slice(&payload);
        } else {
            self.tail(pool, n).extend_from_slice(&hdr[..n]);
            self.push_payload(payload, MAX_BUF);
        }
    }

    /// Queue a large payload's own buffer (the rest of a frame whose header is queued),
    /// in pieces of at most `max` bytes.
    fn push_payload(&mut self, mut payload: Vec<u8>, max: usize) {
        while payload.len() > max {
            let rest = payload.split_off(max);
            self.bufs.push_back(payload);
            payload = rest;
        }
        self.bufs.push_back(payload);
    }

    /// A buffer at the back with room for `need` more bytes without growing past what
    /// coalescing allows: the last pooled buffer when it has room, else a fresh one.
    fn tail(&mut self, pool: &mut BufPool, need: usize) -> &mut Vec<u8> {
        let reuse = match self.bufs.back() {
            Some(b) => b.len() + need <= b.capacity().max(COALESCE_PAYLOAD + MAX_HEADER),
            None => false,
        };
        if !reuse {
            if self.bufs.capacity() == 0 {
                // #17 json-reply: the ring given up holds no memory: forgotten, not
                // dropped (its drop glue was ~44 instructions a message, echo included).
                std::mem::forget(std::mem::replace(&mut self.bufs, pool.ring()));
            }
            self.mark_start(self.bufs.len());
            self.bufs.push_back(pool.get());
        }
        self.bufs.back_mut().expect("just ensured a tail buffer")
    }

    /// Write as much as the socket takes. Returns `Ok(true)` when the queue is empty.
    /// `WouldBlock` is not an error: it returns `Ok(false)`.
    pub fn flush<W: Write>(&mut self, w: &mut W, pool: &mut BufPool) -> io::Result<bool> {
        while self.queued > 0 {
            let written = if self.bufs.len() == 1 {
                w.write(&self.bufs[0][self.head_written as usize..])
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (i, b) in self.bufs.iter().take(MAX_IOV).enumerate() {
                    let start = if i == 0 {
                        self.head_written as usize
                    } else {
                        0
                    };
                    iov[i] = IoSlice::new(&b[start..]);
                    n += 1;
                }
                w.write_vectored(&iov[..n])
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n, pool),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize, pool: &mut BufPool) {
        self.queued -= n;
        while n > 0 {
            let head_left = self.bufs[0].len() - self.head_written as usize;
            if n < head_left {
                // Below the buffer's length, which is at most MAX_BUF.
                self.head_written += n as u32;
                return;
            }
            n -= head_left;
            self.head_written = 0;
            let done = self.bufs.pop_front().expect("advance within queued bytes");
            self.starts >>= 1;
            pool.put(done);
        }
        if self.bufs.is_empty() {
            // Give the ring back too: idle connections hold nothing.
            pool.put_ring(std::mem::take(&mut self.bufs));
        }
    }

    /// Drop everything queued (the peer is gone).
    pub fn clear(&mut self, pool: &mut BufPool) {
        for b in self.bufs.drain(..) {
            pool.put(b);
        }
        pool.put_ring(std::mem::take(&mut self.bufs));
        self.starts = 0;
        self.head_written = 0;
        self.queued = 0;
    }

    /// Drop the frames the socket has not begun to take, keeping the head buffer and
    /// the payload it is in the middle of, so the stream stays well framed and a close
    /// frame queued next is the next thing the peer reads. Returns the bytes dropped.
    pub fn drop_unstarted(&mut self, pool: &mut BufPool) -> usize {
        let cut = (1..self.bufs.len().min(32)).find(|&i| self.starts & (1 << i) != 0);
        let Some(cut) = cut else {
            return 0;
        };
        let mut dropped = 0;
        for b in self.bufs.drain(cut..) {
            dropped += b.len();
            pool.put(b);
        }
        self.starts &= (1u32 << cut) - 1;
        self.queued -= dropped;
        dropped
    }

    fn mark_start(&mut self, index: usize) {
        if index < 32 {
            self.starts |= 1 << index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call and then reports WouldBlock once.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        block_next: bool,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.block_next {
                self.block_next = false;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.block_next = true;
            let n = buf.len().min(self.cap);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn queued_count_is_exact_through_partial_writes() {
        let mut pool = BufPool::new(1024, 4);
        let mut q = WriteQueue::default();
        q.push_frame(&mut pool, Opcode::Text, b"hello");
        q.push_frame_owned(&mut pool, Opcode::Binary, vec![7u8; 100_000]);
        q.push_frame(&mut pool, Opcode::Text, b"bye");
        let total = (2 + 5) + (10 + 100_000) + (2 + 3);
        assert_eq!(q.queued(), total);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 777,
            block_next: false,
        };
        let mut rounds = 0;
        while !q.flush(&mut w, &mut pool).unwrap() {
            assert_eq!(q.queued(), total - w.out.len());
            rounds += 1;
        }
        assert!(rounds > 10);
        assert_eq!(q.queued(), 0);
        assert_eq!(w.out.len(), total);
        assert_eq!(&w.out[..7], &[0x81, 5, b'h', b'e', b'l', b'l', b'o']);
        assert_eq!(&w.out[7..17], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x86, 0xA0]);
        assert_eq!(&w.out[total - 5..], &[0x81, 3, b'b', b'y', b'e']);
    }

    #[test]
    fn small_frames_share_one_buffer_and_drained_queue_holds_nothing() {
        let mut pool = BufPool::new(1024, 4);
        let mut q = WriteQueue::default();
        for _ in 0..10 {
            q.push_frame(&mut pool, Opcode::Text, b"0123456789");
        }
        assert_eq!(q.bufs.len(), 1);
        let mut out = Vec::new();
        assert!(q.flush(&mut out, &mut pool).unwrap());
        assert_eq!(out.len(), 120);
        assert_eq!(q.bufs.capacity(), 0);
        // Its ring went back to the pool too, for the next queue that fills.
        assert_eq!(pool.rings.len(), 1);
        // The buffer went back to the pool and is handed out again.
        assert_eq!(pool.free.len(), 1);
    }

    #[test]
    fn drop_unstarted_keeps_the_frame_in_progress_and_whole_frames_only() {
        let mut pool = BufPool::new(1024, 4);
        let mut q = WriteQueue::default();
        q.push_frame(&mut pool, Opcode::Text, b"first");
        q.push_frame_owned(&mut pool, Opcode::Binary, vec![1u8; 40_000]);
        q.push_frame_owned(&mut pool, Opcode::Binary, vec![2u8; 40_000]);
        q.push_frame(&mut pool, Opcode::Text, b"last");
        // The socket takes the first frame and the next one's header.
        let mut w = Trickle {
            out: Vec::new(),
            cap: 7 + 4 + 1000,
            block_next: false,
        };
        assert!(!q.flush(&mut w, &mut pool).unwrap());
        let dropped = q.drop_unstarted(&mut pool);
        assert_eq!(dropped, 4 + 40_000 + 2 + 4);
        q.push_frame(&mut pool, Opcode::Close, &[0x03, 0xF0]);
        let mut rest = Vec::new();
        assert!(q.flush(&mut rest, &mut pool).unwrap());
        w.out.extend_from_slice(&rest);
        // What the peer reads: "first", the whole 40,000-byte frame, then the close.
        assert_eq!(w.out.len(), 7 + 4 + 40_000 + 4);
        assert_eq!(&w.out[7..11], &[0x82, 126, 0x9C, 0x40]);
        assert!(w.out[11..11 + 40_000].iter().all(|&b| b == 1));
        assert_eq!(&w.out[w.out.len() - 4..], &[0x88, 2, 0x03, 0xF0]);
        assert_eq!(q.queued(), 0);
    }

    #[test]
    fn a_payload_over_the_buffer_limit_is_queued_in_pieces_and_written_whole() {
        let mut pool = BufPool::new(1024, 4);
        let mut q = WriteQueue::default();
        q.push_raw(&mut pool, b"head");
        q.queued += 20;
        q.push_payload((0..20u8).collect(), 7);
        assert_eq!(q.bufs.len(), 4);
        assert!(q.bufs.iter().all(|b| b.len() <= 7));
        let mut w = Trickle {
            out: Vec::new(),
            cap: 5,
            block_next: false,
        };
        while !q.flush(&mut w, &mut pool).unwrap() {}
        let mut want = b"head".to_vec();
        want.extend(0..20u8);
        assert_eq!(w.out, want);
    }

    #[test]
    fn a_frame_written_in_place_is_the_frame_pushed_as_a_copy_at_every_header_size() {
        // Payload sizes at each header length's edges (2, 4 and 10 bytes), with hints
        // too small, right and too large, after a frame already in the tail buffer.
        for len in [0, 1, 125, 126, 127, 1000, 65_535, 65_536, 70_000] {
            for hint in [0, len, 200, 20_000] {
                let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let (mut pool_a, mut pool_b) = (BufPool::new(1024, 4), BufPool::new(1024, 4));
                let (mut a, mut b) = (WriteQueue::default(), WriteQueue::default());
                a.push_frame(&mut pool_a, Opcode::Text, b"before");
                b.push_frame(&mut pool_b, Opcode::Text, b"before");
                a.push_frame_with(&mut pool_a, Opcode::Text, hint, &mut |out| {
                    out.extend_from_slice(&payload)
                });
                b.push_frame(&mut pool_b, Opcode::Text, &payload);
                a.push_frame(&mut pool_a, Opcode::Binary, b"after");
                b.push_frame(&mut pool_b, Opcode::Binary, b"after");
                assert_eq!(a.queued(), b.queued(), "len {len} hint {hint}");
                let (mut wa, mut wb) = (Vec::new(), Vec::new());
                assert!(a.flush(&mut wa, &mut pool_a).unwrap());
                assert!(b.flush(&mut wb, &mut pool_b).unwrap());
                assert_eq!(wa.len(), wb.len(), "len {len} hint {hint}");
                assert!(wa == wb, "len {len} hint {hint}: different bytes");
            }
        }
    }

    #[test]
    fn drop_unstarted_with_one_buffer_drops_nothing() {
        let mut pool = BufPool::new(1024, 4);
        let mut q = WriteQueue::default();
        q.push_frame(&mut pool, Opcode::Text, b"a");
        q.push_frame(&mut pool, Opcode::Text, b"b");
        assert_eq!(q.drop_unstarted(&mut pool), 0);
        assert_eq!(q.queued(), 6);
    }
}
