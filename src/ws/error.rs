//! Protocol errors of the RFC 6455 codec. Each variant names the rule the peer broke and
//! documents the close code the server answers with before it closes the TCP connection.

use std::fmt;

/// Close codes the server sends (RFC 6455 section 7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown, idle timeout).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy rejected the connection (on_connect, backpressure cap).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or message over the configured size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server hit an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Why the codec failed the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without the mask bit (RFC 6455 5.1). Close 1002.
    UnmaskedFrameFromClient,
    /// RSV1-3 set with no extension negotiated (5.2), or RSV1 where permessage-deflate
    /// does not allow it (a continuation or control frame, RFC 7692 6). Close 1002.
    ReservedBitsSet,
    /// Opcode 3-7 or 0xB-0xF (5.2). Close 1002.
    UnknownOpcode(u8),
    /// A control frame with a payload over 125 bytes (5.5). Close 1002.
    ControlFrameTooLong,
    /// A control frame without FIN (5.5). Close 1002.
    FragmentedControlFrame,
    /// A continuation frame with no message started (5.4). Close 1002.
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is still open (5.4). Close 1002.
    ExpectedContinuation,
    /// A 64-bit payload length with the most significant bit set (5.2). Close 1002.
    LengthTopBitSet,
    /// A frame whose declared payload is over the frame limit. Close 1009.
    FrameTooBig,
    /// A message whose reassembled size would pass the message limit. Close 1009.
    MessageTooBig,
    /// Text that is not valid UTF-8, detected at the first bad sequence (8.1). Close 1007.
    InvalidUtf8,
    /// A close frame with a 1-byte payload (5.5.1). Close 1002.
    CloseFrameTooShort,
    /// A close code that may not be sent on the wire (7.4). Close 1002.
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8 (5.5.1). Close 1007.
    InvalidCloseReason,
    /// A permessage-deflate message that does not inflate (RFC 7692 8). Close 1007.
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code the server sends for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::FrameTooBig | ProtocolError::MessageTooBig => {
                close_code::MESSAGE_TOO_BIG
            }
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::InvalidCompressedData => close_code::INVALID_PAYLOAD,
            _ => close_code::PROTOCOL_ERROR,
        }
    }

    /// A short reason text for the close frame (kept under 123 bytes).
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::UnmaskedFrameFromClient => "unmasked client frame",
            ProtocolError::ReservedBitsSet => "reserved bits set",
            ProtocolError::UnknownOpcode(_) => "unknown opcode",
            ProtocolError::ControlFrameTooLong => "control frame too long",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::UnexpectedContinuation => "unexpected continuation frame",
            ProtocolError::ExpectedContinuation => "expected continuation frame",
            ProtocolError::LengthTopBitSet => "invalid payload length",
            ProtocolError::FrameTooBig => "frame too big",
            ProtocolError::MessageTooBig => "message too big",
            ProtocolError::InvalidUtf8 => "invalid UTF-8 in text message",
            ProtocolError::CloseFrameTooShort => "close frame too short",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::InvalidCloseReason => "invalid UTF-8 in close reason",
            ProtocolError::InvalidCompressedData => "invalid compressed data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code())
    }
}

impl std::error::Error for ProtocolError {}

/// Whether a peer may send `code` in a close frame (RFC 6455 7.4.1 and 7.4.2, plus the
/// IANA registry: 1012-1014 are registered since).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_that_may_not_be_sent_are_rejected() {
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(code), "{code}");
        }
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn every_error_maps_to_its_close_code() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::InvalidCloseReason.close_code(), 1007);
        assert_eq!(ProtocolError::MessageTooBig.close_code(), 1009);
        assert_eq!(ProtocolError::FrameTooBig.close_code(), 1009);
        assert_eq!(ProtocolError::UnmaskedFrameFromClient.close_code(), 1002);
        assert_eq!(ProtocolError::InvalidCloseCode(1005).close_code(), 1002);
    }
}
