//! The sans-IO RFC 6455 layer: the upgrade handshake, the frame codec, masking, UTF-8
//! validation and close codes. Nothing here touches a socket; it is tested from byte
//! literals.

pub mod deflate;
pub mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod session;
pub mod utf8;

pub use error::{close_code, ProtocolError};
pub use frame::{Decoder, Incoming, Limits, Message, Opcode};
pub use handshake::{HandshakeError, HandshakeLimits, UpgradeRequest};
