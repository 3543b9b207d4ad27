//! RFC 6455 frame decoding (client to server) and encoding (server to client), sans-IO.
//!
//! The decoder is fed whatever bytes the socket produced and never asks for more than it
//! was given: it keeps at most a partial frame header (14 bytes), a partial control frame
//! (125 bytes) and the message being reassembled. A whole, unfragmented frame that sits
//! in the input is unmasked in place and handed out as a slice of the input, so the common
//! small message costs no copy and no allocation. Every limit is checked on the frame
//! header, before any memory is reserved for the payload.

use super::error::{is_valid_close_code, ProtocolError};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Frame opcodes (RFC 6455 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: binary data.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    fn from_u8(b: u8) -> Result<Opcode, ProtocolError> {
        Ok(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => return Err(ProtocolError::UnknownOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Size limits enforced on the frame header, before the payload is read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest payload one frame may declare.
    pub max_frame: u64,
    /// Largest reassembled message.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 16 MiB: Autobahn 9.1.6/9.2.6 send 16 MiB messages in one frame.
        Limits {
            max_frame: 16 << 20,
            max_message: 16 << 20,
        }
    }
}

/// One complete item from the peer. Slices borrow the input or the decoder and are valid
/// until the next call to [`Decoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A complete text message (checked as UTF-8 here, once: #17).
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping with its payload (answer with a pong carrying the same bytes).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame: `None` when it carried no code, else the code and the UTF-8 reason.
    Close(Option<(u16, &'a [u8])>),
    // deflate: a message whose first frame had RSV1 (permessage-deflate): its payload is
    // still compressed and, for text, not yet checked as UTF-8 (ws::deflate inflates).
    /// A complete compressed message (only after [`Decoder::enable_deflate`]).
    Compressed {
        /// A text message (check the inflated bytes as UTF-8).
        text: bool,
        /// The compressed payload of all its frames.
        payload: &'a [u8],
    },
}

// #17 hotsplit: defined in crates/runner-json, whose message decoding takes it.
pub use runner_json::Message;

#[derive(Debug, Clone, Copy)]
struct FrameHead {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    len: u64,
    /// RSV1: the first frame of a compressed message.
    compressed: bool,
}

enum State {
    Header,
    Payload { head: FrameHead, got: u64 },
}

/// A frame split across reads: the header bytes so far, or where in the payload the
/// decoder is, and a control frame's payload. Boxed, and only while a frame is split
/// (rare for small messages), so an idle connection's decoder holds none of it.
struct Partial {
    state: State,
    hdr: [u8; 14],
    hdr_len: u8,
    ctrl: [u8; 125],
}

impl Partial {
    fn new() -> Box<Partial> {
        Box::new(Partial {
            state: State::Header,
            hdr: [0; 14],
            hdr_len: 0,
            ctrl: [0; 125],
        })
    }
}

/// The receiving half of the codec for one connection. The limits are the caller's
/// (one shared config), not copied into every connection.
#[derive(Default)]
pub struct Decoder {
    /// The message being reassembled; before the upgrade, the request head (see
    /// [`Decoder::head_buf`]).
    msg: Vec<u8>,
    /// A frame split across reads, if any.
    partial: Option<Box<Partial>>,
    utf8: Utf8Validator,
    /// Opcode of the fragmented message in progress (Text or Binary).
    open_message: Option<Opcode>,
    /// `msg` holds a delivered message; clear it at the next call.
    msg_delivered: bool,
    /// permessage-deflate was negotiated: RSV1 may be set on a message's first frame.
    deflate: bool,
    /// The message in progress is compressed.
    open_compressed: bool,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// permessage-deflate was negotiated: accept RSV1 on a message's first frame and
    /// hand such messages out as [`Incoming::Compressed`].
    pub fn enable_deflate(&mut self) {
        self.deflate = true;
    }

    /// The buffer the upgrade request head is read into before any frame: the
    /// reassembly buffer, which is empty until the upgrade, so a connection keeps one
    /// buffer rather than two. Empty it (or [`Decoder::release_buffers`]) before the
    /// first [`Decoder::decode`].
    pub fn head_buf(&mut self) -> &mut Vec<u8> {
        &mut self.msg
    }

    /// Give back the reassembly buffer and the split-frame state when no message or
    /// frame is in progress, so an idle connection holds no heap memory.
    pub fn release_buffers(&mut self) {
        if self.open_message.is_none() && self.between_frames() {
            self.msg = Vec::new();
            self.msg_delivered = false;
        }
        if self.between_frames() {
            self.partial = None;
        }
    }

    /// No frame is split across reads.
    fn between_frames(&self) -> bool {
        self.partial
            .as_ref()
            .is_none_or(|p| matches!(p.state, State::Header) && p.hdr_len == 0)
    }

    /// Bytes held for a message in progress (reassembly buffer capacity).
    pub fn buffered_capacity(&self) -> usize {
        self.msg.capacity()
    }

    /// Decode from `input`. Returns how many bytes were consumed and, when a frame
    /// completed a message or was a control frame, that item. Call again with the rest
    /// of the input until it is consumed. The input is unmasked in place.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a mut [u8],
        limits: &Limits,
    ) -> Result<(usize, Option<Incoming<'a>>), ProtocolError> {
        if self.msg_delivered {
            self.msg.clear();
            self.msg_delivered = false;
        }
        let mut pos = 0;
        let in_payload = match self.partial.as_deref() {
            Some(Partial {
                state: State::Payload { head, got },
                ..
            }) => Some((*head, *got)),
            _ => None,
        };
        let (head, mut got) = match in_payload {
            Some(at) => at,
            None => {
                let (head, used, split) = match self.read_header(input, limits)? {
                    Some(h) => h,
                    None => return Ok((input.len(), None)),
                };
                pos = used;
                let fits_in_input = (input.len() - pos) as u64 >= head.len;
                // Fast path: the whole frame is in the input and is a message of its own.
                if fits_in_input && !split {
                    let end = pos + head.len as usize;
                    let is_single = head.fin && self.open_message.is_none();
                    if head.opcode.is_control()
                        || (is_single && !matches!(head.opcode, Opcode::Continuation))
                    {
                        let payload = &mut input[pos..end];
                        apply_mask(payload, head.mask, 0);
                        if head.compressed {
                            let text = head.opcode == Opcode::Text;
                            return Ok((end, Some(Incoming::Compressed { text, payload })));
                        }
                        let item = complete_single(head.opcode, payload)?;
                        return Ok((end, Some(item)));
                    }
                }
                self.begin_payload(head);
                (head, 0)
            }
        };

        // Slow path: copy what is here, unmasking as it goes.
        let avail = ((input.len() - pos) as u64).min(head.len - got) as usize;
        let chunk = &input[pos..pos + avail];
        if head.opcode.is_control() {
            let start = got as usize;
            let ctrl = &mut self.partial.get_or_insert_with(Partial::new).ctrl;
            ctrl[start..start + avail].copy_from_slice(chunk);
            apply_mask(&mut ctrl[start..start + avail], head.mask, start);
        } else {
            let start = self.msg.len();
            self.msg.extend_from_slice(chunk);
            apply_mask(&mut self.msg[start..], head.mask, got as usize);
            if self.open_message == Some(Opcode::Text)
                && !self.open_compressed
                && self.utf8.feed(&self.msg[start..]).is_err()
            {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        got += avail as u64;
        pos += avail;
        if got < head.len {
            self.partial.get_or_insert_with(Partial::new).state = State::Payload { head, got };
            return Ok((pos, None));
        }
        if let Some(p) = self.partial.as_mut() {
            p.state = State::Header;
        }
        if head.opcode.is_control() {
            // The payload is in `ctrl`: the slow path copied it there (a zero-length one
            // copied nothing, and the box may then be fresh).
            let ctrl = &mut self.partial.get_or_insert_with(Partial::new).ctrl;
            let item = complete_single(head.opcode, &mut ctrl[..head.len as usize])?;
            return Ok((pos, Some(item)));
        }
        if !head.fin {
            return Ok((pos, None));
        }
        let opcode = self
            .open_message
            .take()
            .expect("data frame has a message open");
        self.msg_delivered = true;
        if self.open_compressed {
            let text = opcode == Opcode::Text;
            return Ok((
                pos,
                Some(Incoming::Compressed {
                    text,
                    payload: &self.msg,
                }),
            ));
        }
        if opcode == Opcode::Text {
            // The pieces were checked as they came (a bad byte fails its frame); the whole
            // is checked again to hand it on as text. This path takes fragmented messages
            // and any frame split across reads (so every large one): a second pass there,
            // one check for a message that arrived in one read.
            let text = std::str::from_utf8(&self.msg).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok((pos, Some(Incoming::Text(text))))
        } else {
            Ok((pos, Some(Incoming::Binary(&self.msg))))
        }
    }

    /// Parse a frame header from the buffered header bytes + `input`. Returns the
    /// header, how many bytes of `input` it used and whether it was split across reads,
    /// or `None` when the input ran out (the bytes are kept in the split-frame state).
    fn read_header(
        &mut self,
        input: &[u8],
        limits: &Limits,
    ) -> Result<Option<(FrameHead, usize, bool)>, ProtocolError> {
        let buffered = self.partial.as_ref().map_or(0, |p| p.hdr_len);
        // Parse straight from the input when nothing is buffered (the usual case).
        if buffered == 0 {
            if let Some((head, used)) = self.parse_header(input, limits)? {
                return Ok(Some((head, used, false)));
            }
        }
        // Buffer header bytes one need at a time so we never take payload bytes.
        let mut used = 0;
        loop {
            let (hdr, hdr_len) = match self.partial.as_deref() {
                Some(p) => (p.hdr, p.hdr_len as usize),
                None => ([0; 14], 0),
            };
            let need = header_len_needed(&hdr[..hdr_len]);
            if hdr_len >= 2 {
                // Checks the first two bytes as soon as they are here, as the unbuffered
                // path does: a bad header fails at once, not once its length arrives.
                if let Some((head, _)) = self.parse_header(&hdr[..hdr_len], limits)? {
                    if let Some(p) = self.partial.as_mut() {
                        p.hdr_len = 0;
                    }
                    // Split: the caller takes no fast path on input that does not hold it.
                    return Ok(Some((head, used, true)));
                }
            }
            let take = (need - hdr_len).min(input.len() - used);
            if take == 0 {
                return Ok(None);
            }
            let p = self.partial.get_or_insert_with(Partial::new);
            p.hdr[hdr_len..hdr_len + take].copy_from_slice(&input[used..used + take]);
            p.hdr_len += take as u8;
            used += take;
        }
    }

    fn parse_header(
        &self,
        b: &[u8],
        limits: &Limits,
    ) -> Result<Option<(FrameHead, usize)>, ProtocolError> {
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        let compressed = b[0] & 0x40 != 0;
        if b[0] & 0x30 != 0 || (compressed && !self.deflate) {
            return Err(ProtocolError::ReservedBitsSet);
        }
        let opcode = Opcode::from_u8(b[0] & 0x0F)?;
        // RFC 7692 6.1: RSV1 only on the first frame of a data message.
        if compressed && !matches!(opcode, Opcode::Text | Opcode::Binary) {
            return Err(ProtocolError::ReservedBitsSet);
        }
        if b[1] & 0x80 == 0 {
            return Err(ProtocolError::UnmaskedFrameFromClient);
        }
        let len7 = b[1] & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        } else {
            match (opcode, self.open_message) {
                (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (Opcode::Text | Opcode::Binary, Some(_)) => {
                    return Err(ProtocolError::ExpectedContinuation)
                }
                _ => {}
            }
        }
        let need = header_len_needed(b);
        if b.len() < need {
            return Ok(None);
        }
        let (len, mask_at) = match len7 {
            126 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
            127 => {
                let len = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBitSet);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        if !opcode.is_control() {
            if len > limits.max_frame {
                return Err(ProtocolError::FrameTooBig);
            }
            let so_far = if self.open_message.is_some() {
                self.msg.len() as u64
            } else {
                0
            };
            if so_far + len > limits.max_message as u64 {
                return Err(ProtocolError::MessageTooBig);
            }
        }
        let mask = [b[mask_at], b[mask_at + 1], b[mask_at + 2], b[mask_at + 3]];
        Ok(Some((
            FrameHead {
                fin,
                opcode,
                mask,
                len,
                compressed,
            },
            need,
        )))
    }

    fn begin_payload(&mut self, head: FrameHead) {
        if head.opcode.is_control() {
            return;
        }
        if head.opcode != Opcode::Continuation {
            self.open_message = Some(head.opcode);
            self.open_compressed = head.compressed;
            self.msg.clear();
            self.utf8.reset();
        }
        // Reserve for this frame but not past 1 MiB up front: a peer that declares a big
        // frame and sends it slowly should not get the memory before it sends the bytes.
        self.msg.reserve((head.len as usize).min(1 << 20));
    }
}

/// Header length implied by the first two bytes (2 when fewer than 2 are known).
fn header_len_needed(b: &[u8]) -> usize {
    if b.len() < 2 {
        return 2;
    }
    2 + 4
        + match b[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        }
}

/// Finish a frame that is a whole message or a control frame.
fn complete_single(opcode: Opcode, payload: &mut [u8]) -> Result<Incoming<'_>, ProtocolError> {
    Ok(match opcode {
        Opcode::Text => {
            Incoming::Text(std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?)
        }
        Opcode::Binary => Incoming::Binary(payload),
        Opcode::Ping => Incoming::Ping(payload),
        Opcode::Pong => Incoming::Pong(payload),
        Opcode::Close => Incoming::Close(parse_close(payload)?),
        Opcode::Continuation => unreachable!("continuations are never single frames"),
    })
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, &[u8])>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::CloseFrameTooShort),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = &payload[2..];
            std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Largest server frame header: 2 bytes + 8-byte length, no mask.
pub const MAX_HEADER: usize = 10;

/// Encode a final, unmasked server frame header for `len` payload bytes into `out`.
/// Returns the header length.
pub fn encode_header(out: &mut [u8; MAX_HEADER], opcode: Opcode, len: usize) -> usize {
    out[0] = 0x80 | opcode.as_u8();
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Append a whole server frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    let mut hdr = [0u8; MAX_HEADER];
    let n = encode_header(&mut hdr, opcode, payload.len());
    out.reserve(n + payload.len());
    out.extend_from_slice(&hdr[..n]);
    out.extend_from_slice(payload);
}

/// The payload of a close frame: the code in network order, then the reason, cut at a
/// character boundary so the control frame stays within 125 bytes.
pub fn close_payload(code: u16, reason: &str) -> ([u8; 125], usize) {
    let mut out = [0u8; 125];
    out[..2].copy_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    (out, 2 + end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// A masked client frame with explicit first byte (FIN/RSV/opcode).
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&KEY);
        let start = out.len();
        out.extend_from_slice(payload);
        crate::ws::mask::apply_mask_reference(&mut out[start..], KEY, 0);
        out
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, Vec<u8>)>),
        Compressed(bool, Vec<u8>),
    }

    fn own(i: Incoming<'_>) -> Owned {
        match i {
            Incoming::Text(s) => Owned::Text(s.as_bytes().to_vec()),
            Incoming::Binary(b) => Owned::Binary(b.to_vec()),
            Incoming::Ping(b) => Owned::Ping(b.to_vec()),
            Incoming::Pong(b) => Owned::Pong(b.to_vec()),
            Incoming::Close(c) => Owned::Close(c.map(|(c, r)| (c, r.to_vec()))),
            Incoming::Compressed { text, payload } => Owned::Compressed(text, payload.to_vec()),
        }
    }

    fn deflate_decoder() -> Decoder {
        let mut d = Decoder::new();
        d.enable_deflate();
        d
    }

    #[test]
    fn rsv1_marks_compressed_messages_whole_or_fragmented_once_deflate_is_on() {
        // Not UTF-8 as it stands: compressed text is checked after inflation.
        let z = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut bytes = client_frame(0xC1, &z);
        // Fragmented: RSV1 on the first frame only, a ping in between.
        bytes.extend(client_frame(0x42, &z[..3]));
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x80, &z[3..]));
        bytes.extend(client_frame(0x81, b"plain"));
        for step in [1, 2, 5, bytes.len()] {
            let (items, err) = run(&mut deflate_decoder(), &bytes, step);
            assert_eq!(err, None, "step {step}");
            assert_eq!(
                items,
                vec![
                    Owned::Compressed(true, z.to_vec()),
                    Owned::Ping(b"p".to_vec()),
                    Owned::Compressed(false, z.to_vec()),
                    Owned::Text(b"plain".to_vec()),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn rsv1_is_1002_without_deflate_and_on_continuations_and_control_frames() {
        let (_, err) = decode_all(&client_frame(0xC1, b"x"));
        assert_eq!(err, Some(ProtocolError::ReservedBitsSet));
        let mut cont = client_frame(0x01, b"a");
        cont.extend(client_frame(0xC0, b"b"));
        for bytes in [
            cont,
            client_frame(0xC9, b""),
            client_frame(0xC8, &[0x03, 0xe8]),
            client_frame(0xA1, b"x"),
            client_frame(0x91, b"x"),
        ] {
            let (_, err) = run(&mut deflate_decoder(), &bytes, bytes.len());
            assert_eq!(err, Some(ProtocolError::ReservedBitsSet), "{bytes:?}");
            assert_eq!(err.unwrap().close_code(), 1002);
        }
    }

    /// Feed `bytes` in pieces of `step`, collecting items until the first error.
    fn run(dec: &mut Decoder, bytes: &[u8], step: usize) -> (Vec<Owned>, Option<ProtocolError>) {
        run_with(dec, bytes, step, Limits::default())
    }

    fn run_with(
        dec: &mut Decoder,
        bytes: &[u8],
        step: usize,
        limits: Limits,
    ) -> (Vec<Owned>, Option<ProtocolError>) {
        let mut items = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            let mut piece = piece.to_vec();
            let mut pos = 0;
            while pos < piece.len() {
                match dec.decode(&mut piece[pos..], &limits) {
                    Ok((used, item)) => {
                        if let Some(i) = item {
                            items.push(own(i));
                        }
                        pos += used;
                    }
                    Err(e) => return (items, Some(e)),
                }
            }
        }
        (items, None)
    }

    fn decode_all(bytes: &[u8]) -> (Vec<Owned>, Option<ProtocolError>) {
        let whole = run(&mut Decoder::new(), bytes, bytes.len());
        // Every split must give the same answer: byte by byte and in odd pieces.
        for step in [1, 2, 3, 7, 13] {
            assert_eq!(run(&mut Decoder::new(), bytes, step), whole, "step {step}");
        }
        whole
    }

    #[test]
    fn text_and_binary_messages_decode_whole_and_split_at_every_byte() {
        let mut bytes = client_frame(0x81, b"Hello");
        bytes.extend(client_frame(0x82, &[0, 1, 2, 255]));
        bytes.extend(client_frame(0x81, b""));
        let (items, err) = decode_all(&bytes);
        assert_eq!(err, None);
        assert_eq!(
            items,
            vec![
                Owned::Text(b"Hello".to_vec()),
                Owned::Binary(vec![0, 1, 2, 255]),
                Owned::Text(vec![])
            ]
        );
    }

    #[test]
    fn extended_16_and_64_bit_lengths_decode() {
        for len in [125usize, 126, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let bytes = client_frame(0x82, &payload);
            let (items, err) = run(&mut Decoder::new(), &bytes, 4096);
            assert_eq!(err, None);
            assert_eq!(items, vec![Owned::Binary(payload)]);
        }
    }

    #[test]
    fn client_frames_must_be_masked_1002() {
        let (_, err) = decode_all(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!(err, Some(ProtocolError::UnmaskedFrameFromClient));
        assert_eq!(err.unwrap().close_code(), 1002);
    }

    /// Fuzz finding (fuzz/regressions/frame/unmasked-split-after-1-byte): a header whose
    /// first byte came in a read of its own was only checked once all of its length and
    /// mask bytes had arrived, so a bad short frame at the end of the input waited for
    /// more bytes instead of failing as it does when read whole.
    #[test]
    fn a_bad_header_split_after_its_first_byte_fails_at_once() {
        for bytes in [
            &[0x81u8, 0x01, b'x'][..],  // unmasked
            &[0xC1, 0x81, 1, 2][..],    // RSV1
            &[0x83, 0x80][..],          // opcode 3
            &[0x09, 0x80][..],          // fragmented ping
            &[0x89, 0xFE, 0, 200][..],  // ping over 125 bytes
            &[0x80, 0x81, 1, 2, 3][..], // continuation with no message
        ] {
            let whole = run(&mut Decoder::new(), bytes, bytes.len());
            assert!(whole.1.is_some(), "{bytes:?}");
            for step in [1, 2] {
                let split = run(&mut Decoder::new(), bytes, step);
                assert_eq!(split, whole, "{bytes:?} in reads of {step}");
            }
        }
    }

    #[test]
    fn rsv_bits_without_extension_are_1002() {
        for b0 in [0xC1, 0xA1, 0x91] {
            let (_, err) = decode_all(&client_frame(b0, b"x"));
            assert_eq!(err, Some(ProtocolError::ReservedBitsSet));
        }
    }

    #[test]
    fn unknown_opcodes_are_1002() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let (_, err) = decode_all(&client_frame(0x80 | op, b""));
            assert_eq!(err, Some(ProtocolError::UnknownOpcode(op)));
            assert_eq!(err.unwrap().close_code(), 1002);
        }
    }

    #[test]
    fn control_frames_over_125_bytes_are_1002() {
        let (_, err) = decode_all(&client_frame(0x89, &[0u8; 126]));
        assert_eq!(err, Some(ProtocolError::ControlFrameTooLong));
        let (items, err) = decode_all(&client_frame(0x89, &[7u8; 125]));
        assert_eq!((items, err), (vec![Owned::Ping(vec![7u8; 125])], None));
    }

    #[test]
    fn fragmented_control_frames_are_1002() {
        let (_, err) = decode_all(&client_frame(0x09, b"ping"));
        assert_eq!(err, Some(ProtocolError::FragmentedControlFrame));
    }

    #[test]
    fn fragmented_message_with_interleaved_control_frames() {
        let mut bytes = client_frame(0x01, b"Hel");
        bytes.extend(client_frame(0x89, b"p1"));
        bytes.extend(client_frame(0x00, b""));
        bytes.extend(client_frame(0x8A, b"p2"));
        bytes.extend(client_frame(0x80, b"lo"));
        let (items, err) = decode_all(&bytes);
        assert_eq!(err, None);
        assert_eq!(
            items,
            vec![
                Owned::Ping(b"p1".to_vec()),
                Owned::Pong(b"p2".to_vec()),
                Owned::Text(b"Hello".to_vec())
            ]
        );
    }

    #[test]
    fn continuation_without_a_message_is_1002() {
        let (_, err) = decode_all(&client_frame(0x80, b"x"));
        assert_eq!(err, Some(ProtocolError::UnexpectedContinuation));
    }

    #[test]
    fn new_message_inside_a_fragmented_one_is_1002() {
        let mut bytes = client_frame(0x01, b"a");
        bytes.extend(client_frame(0x81, b"b"));
        let (_, err) = decode_all(&bytes);
        assert_eq!(err, Some(ProtocolError::ExpectedContinuation));
    }

    #[test]
    fn invalid_utf8_fails_fast_in_the_fragment_where_it_appears_1007() {
        // First fragment is invalid; the message never finishes, yet the error comes.
        let bytes = client_frame(0x01, b"ok\xF4\x90\x80\x80");
        let (_, err) = decode_all(&bytes);
        assert_eq!(err, Some(ProtocolError::InvalidUtf8));
        assert_eq!(err.unwrap().close_code(), 1007);
        // Invalid as a whole single frame, too.
        let (_, err) = decode_all(&client_frame(
            0x81,
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80",
        ));
        assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn utf8_code_point_split_across_fragments_is_valid() {
        let euro = "€".as_bytes();
        let mut bytes = client_frame(0x01, &euro[..1]);
        bytes.extend(client_frame(0x00, &euro[1..2]));
        bytes.extend(client_frame(0x80, &euro[2..]));
        let (items, err) = decode_all(&bytes);
        assert_eq!((items, err), (vec![Owned::Text(euro.to_vec())], None));
    }

    #[test]
    fn message_ending_inside_a_code_point_is_1007() {
        let mut bytes = client_frame(0x01, b"a\xE2\x82");
        bytes.extend(client_frame(0x80, b""));
        let (_, err) = decode_all(&bytes);
        assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn close_frames_validate_code_and_reason() {
        let (items, err) = decode_all(&client_frame(0x88, b""));
        assert_eq!((items, err), (vec![Owned::Close(None)], None));
        let mut ok = 1000u16.to_be_bytes().to_vec();
        ok.extend_from_slice(b"bye");
        let (items, _) = decode_all(&client_frame(0x88, &ok));
        assert_eq!(items, vec![Owned::Close(Some((1000, b"bye".to_vec())))]);
        assert_eq!(
            decode_all(&client_frame(0x88, &[3])).1,
            Some(ProtocolError::CloseFrameTooShort)
        );
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            let (_, err) = decode_all(&client_frame(0x88, &code.to_be_bytes()));
            assert_eq!(err, Some(ProtocolError::InvalidCloseCode(code)));
            assert_eq!(err.unwrap().close_code(), 1002);
        }
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.extend_from_slice(b"\xFF");
        assert_eq!(
            decode_all(&client_frame(0x88, &bad_reason)).1,
            Some(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn ping_payload_is_returned_for_the_pong() {
        let (items, _) = decode_all(&client_frame(0x89, b"are you there"));
        assert_eq!(items, vec![Owned::Ping(b"are you there".to_vec())]);
    }

    #[test]
    fn oversized_frame_is_1009_before_any_payload_is_allocated() {
        let limits = Limits {
            max_frame: 1024,
            max_message: 4096,
        };
        let mut dec = Decoder::new();
        // Only the header of a 2^40-byte frame: the error comes from the header alone.
        let mut hdr = vec![0x82, 0x80 | 127];
        hdr.extend_from_slice(&(1u64 << 40).to_be_bytes());
        hdr.extend_from_slice(&KEY);
        let err = dec.decode(&mut hdr, &limits).unwrap_err();
        assert_eq!(err, ProtocolError::FrameTooBig);
        assert_eq!(err.close_code(), 1009);
        assert_eq!(dec.buffered_capacity(), 0);
    }

    #[test]
    fn reassembled_message_over_the_limit_is_1009() {
        let limits = Limits {
            max_frame: 1024,
            max_message: 1500,
        };
        let mut bytes = client_frame(0x02, &[0u8; 1000]);
        bytes.extend(client_frame(0x80, &[0u8; 501]));
        let (_, err) = run_with(&mut Decoder::new(), &bytes, bytes.len(), limits);
        assert_eq!(err, Some(ProtocolError::MessageTooBig));
        let mut bytes = client_frame(0x02, &[0u8; 1000]);
        bytes.extend(client_frame(0x80, &[0u8; 500]));
        let (items, err) = run_with(&mut Decoder::new(), &bytes, bytes.len(), limits);
        assert_eq!((items.len(), err), (1, None));
    }

    #[test]
    fn length_with_top_bit_set_is_1002() {
        let mut hdr = vec![0x82, 0x80 | 127];
        hdr.extend_from_slice(&(1u64 << 63).to_be_bytes());
        hdr.extend_from_slice(&KEY);
        let (_, err) = decode_all(&hdr);
        assert_eq!(err, Some(ProtocolError::LengthTopBitSet));
        assert_eq!(err.unwrap().close_code(), 1002);
    }

    #[test]
    fn many_empty_fragments_cost_no_memory() {
        let mut dec = Decoder::new();
        let mut bytes = client_frame(0x02, b"");
        for _ in 0..10_000 {
            bytes.extend(client_frame(0x00, b""));
        }
        let (items, err) = run(&mut dec, &bytes, bytes.len());
        assert_eq!((items.len(), err), (0, None));
        assert_eq!(dec.buffered_capacity(), 0);
    }

    #[test]
    fn release_buffers_frees_the_reassembly_buffer_between_messages() {
        let mut dec = Decoder::new();
        let mut bytes = client_frame(0x02, &[1u8; 3000]);
        bytes.extend(client_frame(0x80, &[2u8; 3000]));
        let (items, _) = run(&mut dec, &bytes, 1000);
        assert_eq!(items.len(), 1);
        assert!(dec.buffered_capacity() > 0);
        dec.release_buffers();
        assert_eq!(dec.buffered_capacity(), 0);
    }

    #[test]
    fn split_frame_state_is_held_only_while_a_frame_is_split() {
        let limits = Limits::default();
        let mut dec = Decoder::new();
        // Whole frames, control ones included: nothing boxed.
        let mut bytes = client_frame(0x81, b"hello");
        bytes.extend(client_frame(0x89, b"ping"));
        let (items, err) = run(&mut dec, &bytes, bytes.len());
        assert_eq!((items.len(), err), (2, None));
        assert!(dec.partial.is_none());
        // A ping cut inside its header, then inside its payload.
        let mut ping = client_frame(0x89, b"are you there");
        let (first, rest) = ping.split_at_mut(3);
        assert!(matches!(dec.decode(first, &limits), Ok((3, None))));
        dec.release_buffers();
        assert!(dec.partial.is_some(), "a header in progress is kept");
        let (mid, last) = rest.split_at_mut(5);
        assert!(matches!(dec.decode(mid, &limits), Ok((5, None))));
        dec.release_buffers();
        assert!(dec.partial.is_some(), "a payload in progress is kept");
        let (_, item) = dec.decode(last, &limits).unwrap();
        assert_eq!(item, Some(Incoming::Ping(b"are you there")));
        dec.release_buffers();
        assert!(dec.partial.is_none());
        assert_eq!(dec.buffered_capacity(), 0);
    }

    #[test]
    fn encode_header_uses_the_shortest_length_form() {
        let mut hdr = [0u8; MAX_HEADER];
        assert_eq!(encode_header(&mut hdr, Opcode::Text, 5), 2);
        assert_eq!(&hdr[..2], &[0x81, 5]);
        assert_eq!(encode_header(&mut hdr, Opcode::Binary, 126), 4);
        assert_eq!(&hdr[..4], &[0x82, 126, 0, 126]);
        assert_eq!(encode_header(&mut hdr, Opcode::Binary, 65536), 10);
        assert_eq!(&hdr[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn close_payload_cuts_long_reasons_at_a_char_boundary() {
        let reason = "é".repeat(100);
        let (buf, n) = close_payload(1000, &reason);
        assert!(n <= 125);
        assert_eq!(&buf[..2], &[0x03, 0xE8]);
        assert!(std::str::from_utf8(&buf[2..n]).is_ok());
    }
}
