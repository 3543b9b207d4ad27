//! Incremental UTF-8 validation across frame pieces and fragments.
//!
//! Text may arrive split anywhere, even inside a code point. The validator keeps at most
//! three bytes of an unfinished sequence and fails on the first byte that can no longer
//! start or continue a valid sequence, so a bad message is rejected in the frame where
//! the bad byte is, not at the end of the message (Autobahn 6.4.*).

/// Streaming UTF-8 validator. `Default` is the start state.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// The input holds a byte sequence that is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// Validate the next piece of text.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let have = self.pending_len as usize;
            let need = sequence_len(self.pending[0]) - have;
            let take = need.min(input.len());
            self.pending[have..have + take].copy_from_slice(&input[..take]);
            let now = have + take;
            match std::str::from_utf8(&self.pending[..now]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the rest comes later.
                    self.pending_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            input = &input[take..];
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    let rest = &input[e.valid_up_to()..];
                    self.pending[..rest.len()].copy_from_slice(rest);
                    self.pending_len = rest.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// The message ended: an unfinished sequence is an error. Resets the validator.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Forget any state (a new message starts).
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// Length of the sequence a lead byte starts. Only called on bytes `from_utf8` already
/// accepted as the start of an incomplete sequence, so they are valid lead bytes.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], split_every: usize) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        for chunk in bytes.chunks(split_every.max(1)) {
            v.feed(chunk)?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_split_at_every_byte_is_accepted() {
        let text = "κόσμε-€-𝄞-hello-\u{10FFFF}".as_bytes();
        for step in 1..text.len() {
            assert_eq!(feed_split(text, step), Ok(()), "step {step}");
        }
    }

    #[test]
    fn invalid_sequence_fails_at_the_first_bad_byte() {
        // 0xF4 0x90 is past U+10FFFF: the validator must fail on the second byte,
        // without waiting for the rest of the sequence.
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"ok \xF4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn surrogates_and_overlongs_are_rejected() {
        for bad in [
            &b"\xED\xA0\x80"[..],
            b"\xC0\xAF",
            b"\xE0\x80\xAF",
            b"\xFF",
            b"\x80",
        ] {
            for step in 1..=bad.len() {
                assert_eq!(
                    feed_split(bad, step),
                    Err(InvalidUtf8),
                    "{bad:?} step {step}"
                );
            }
        }
    }

    #[test]
    fn truncated_sequence_at_message_end_is_rejected() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"abc\xE2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // finish() resets, so the next message starts clean.
        assert_eq!(v.feed(b"abc"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
