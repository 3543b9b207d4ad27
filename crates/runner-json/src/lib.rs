//! The runner's per-message JSON code, in a package of its own so that the release
//! profile builds it at opt-level 2 while the rest of the runner is built for size
//! (#17, docs/size.md): generic code (serde_json's parser driven by [`message`]'s
//! visitors, its writer called by [`envelope`]) is compiled at the opt-level of the
//! package that instantiates it. Re-exported by `configurapi-runner-ws` at its old paths.

pub mod envelope;
pub mod message;

/// A complete data message, as the application gets it.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// Text, checked as UTF-8 by the codec.
    Text(&'a str),
    /// Binary.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The message's bytes.
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}
