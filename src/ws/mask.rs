//! Client-to-server payload masking (RFC 6455 section 5.3).
//!
//! `apply_mask` is the fast path: it XORs a machine word at a time. `apply_mask_reference`
//! is the obvious byte loop, kept beside it so tests can compare the two at every
//! alignment and offset (the habit tungstenite and fastwebsockets follow).

/// XOR `buf` with `key`, where `offset` is how many payload bytes of this frame came
/// before `buf` (frames may arrive in pieces, and the key rotates with the position).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that index 0 of `buf` lines up with key[offset % 4].
    let key = rotate(key, offset);
    let (head, body, tail) = split_words(buf);
    let key_word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    // The head has fewer than 8 bytes; the words start at buf[head.len()].
    for (i, b) in head.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
    let word_key = rotate_word(key_word, head.len());
    for chunk in body.chunks_exact_mut(8) {
        let w = u64::from_ne_bytes(chunk.try_into().expect("chunks_exact gives 8 bytes"));
        chunk.copy_from_slice(&(w ^ word_key).to_ne_bytes());
    }
    let tail_start = head.len() + body.len();
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= key[(tail_start + i) & 3];
    }
}

/// The byte-at-a-time definition, used as the reference in tests.
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]]
}

/// The 8-byte key pattern as seen from a word that starts `shift` bytes into the pattern.
fn rotate_word(word: u64, shift: usize) -> u64 {
    let bytes = word.to_ne_bytes();
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = bytes[(i + shift) & 3];
    }
    u64::from_ne_bytes(out)
}

/// Split into an unaligned head (< 8 bytes), a body whose start is 8-byte aligned and
/// whose length is a multiple of 8, and a tail (< 8 bytes). Aligned loads let the
/// compiler vectorise the body loop without `unsafe`.
fn split_words(buf: &mut [u8]) -> (&mut [u8], &mut [u8], &mut [u8]) {
    let misalign = buf.as_ptr() as usize & 7;
    let head_len = if misalign == 0 {
        0
    } else {
        (8 - misalign).min(buf.len())
    };
    let (head, rest) = buf.split_at_mut(head_len);
    let body_len = rest.len() & !7;
    let (body, tail) = rest.split_at_mut(body_len);
    (head, body, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_mask_matches_reference_at_every_alignment_offset_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for align in 0..8 {
            for offset in 0..4 {
                for len in 0..(data.len() - align) {
                    let mut storage = data.clone();
                    let mut reference = data.clone();
                    apply_mask(&mut storage[align..align + len], key, offset);
                    apply_mask_reference(&mut reference[align..align + len], key, offset);
                    assert_eq!(
                        storage, reference,
                        "align {align} offset {offset} len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn masking_twice_restores_the_payload() {
        let key = [1, 2, 3, 4];
        let mut data = b"Hello, WebSocket".to_vec();
        apply_mask(&mut data, key, 0);
        assert_ne!(&data[..], b"Hello, WebSocket");
        apply_mask(&mut data, key, 0);
        assert_eq!(&data[..], b"Hello, WebSocket");
    }

    #[test]
    fn rfc6455_section_5_7_masked_hello() {
        // "A single-frame masked text message" payload from RFC 6455 5.7.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [9, 8, 7, 6];
        let whole: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut at_once = whole.clone();
        apply_mask(&mut at_once, key, 0);
        let mut pieces = whole.clone();
        let mut pos = 0;
        for step in [1, 3, 8, 13, 64, 100, 811] {
            let end = (pos + step).min(pieces.len());
            apply_mask(&mut pieces[pos..end], key, pos);
            pos = end;
        }
        assert_eq!(at_once, pieces);
    }
}
