//! [`ProtocolError`]: a violation of RFC 6455 by the peer, with the close
//! code and reason to send back.

use std::fmt;

/// A protocol violation detected while decoding, carrying the close code
/// (1002, 1007 or 1009) and a short reason to put into the close frame.
///
/// ```
/// use wharf_proto::ProtocolError;
///
/// let err = ProtocolError::RESERVED_OPCODE;
/// assert_eq!(err.code(), 1002);
/// assert_eq!(err.reason(), "reserved opcode");
/// assert_eq!(err.to_string(), "protocol error 1002: reserved opcode");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolError {
    code: u16,
    reason: &'static str,
}

impl ProtocolError {
    /// Builds an error from a close code and a reason (keep it ≤ 123 bytes:
    /// it goes into a close frame).
    ///
    /// ```
    /// let err = wharf_proto::ProtocolError::new(1002, "bad frame");
    /// assert_eq!(err.code(), 1002);
    /// ```
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }

    /// A protocol error (close code 1002).
    ///
    /// ```
    /// assert_eq!(wharf_proto::ProtocolError::protocol("x").code(), 1002);
    /// ```
    pub const fn protocol(reason: &'static str) -> Self {
        Self::new(1002, reason)
    }

    /// Invalid payload data, such as bad UTF-8 (close code 1007).
    ///
    /// ```
    /// assert_eq!(wharf_proto::ProtocolError::invalid_payload("x").code(), 1007);
    /// ```
    pub const fn invalid_payload(reason: &'static str) -> Self {
        Self::new(1007, reason)
    }

    /// A frame or message over the configured limit (close code 1009).
    ///
    /// ```
    /// assert_eq!(wharf_proto::ProtocolError::too_big("x").code(), 1009);
    /// ```
    pub const fn too_big(reason: &'static str) -> Self {
        Self::new(1009, reason)
    }

    /// The close code to send to the peer.
    ///
    /// ```
    /// assert_eq!(wharf_proto::ProtocolError::MESSAGE_TOO_BIG.code(), 1009);
    /// ```
    pub const fn code(&self) -> u16 {
        self.code
    }

    /// The human-readable reason, short enough for a close frame.
    ///
    /// ```
    /// assert_eq!(wharf_proto::ProtocolError::INVALID_UTF8.reason(), "invalid UTF-8 in text message");
    /// ```
    pub const fn reason(&self) -> &'static str {
        self.reason
    }

    /// RSV bits set without a negotiated extension (1002).
    pub const RESERVED_BITS: Self = Self::protocol("reserved bits set");
    /// Opcode 3-7 or 0xB-0xF (1002).
    pub const RESERVED_OPCODE: Self = Self::protocol("reserved opcode");
    /// Control frame with FIN clear (1002).
    pub const CONTROL_FRAGMENTED: Self = Self::protocol("control frame fragmented");
    /// Control frame payload over 125 bytes (1002).
    pub const CONTROL_TOO_LONG: Self = Self::protocol("control frame too long");
    /// A client sent an unmasked frame (1002).
    pub const UNMASKED_CLIENT_FRAME: Self = Self::protocol("unmasked client frame");
    /// A server sent a masked frame (1002).
    pub const MASKED_SERVER_FRAME: Self = Self::protocol("masked server frame");
    /// Continuation frame with no message started (1002).
    pub const UNEXPECTED_CONTINUATION: Self = Self::protocol("unexpected continuation frame");
    /// New data frame while a fragmented message is in progress (1002).
    pub const EXPECTED_CONTINUATION: Self = Self::protocol("expected continuation frame");
    /// 64-bit payload length with its most significant bit set (1002).
    pub const INVALID_LENGTH: Self = Self::protocol("invalid payload length");
    /// Close frame with a 1-byte payload (1002).
    pub const CLOSE_PAYLOAD_TOO_SHORT: Self = Self::protocol("close payload too short");
    /// Close frame with a code that may not be sent (1002).
    pub const INVALID_CLOSE_CODE: Self = Self::protocol("invalid close code");
    /// Text message that is not valid UTF-8 (1007).
    pub const INVALID_UTF8: Self = Self::invalid_payload("invalid UTF-8 in text message");
    /// Close reason that is not valid UTF-8 (1007).
    pub const INVALID_CLOSE_REASON: Self = Self::invalid_payload("invalid UTF-8 in close reason");
    /// Frame payload over the configured maximum (1009).
    pub const FRAME_TOO_BIG: Self = Self::too_big("frame too big");
    /// Message over the configured maximum (1009); for a compressed
    /// message, its inflated size.
    pub const MESSAGE_TOO_BIG: Self = Self::too_big("message too big");
    /// A compressed message that is not valid DEFLATE data (1007).
    pub const INVALID_COMPRESSED_DATA: Self = Self::invalid_payload("invalid compressed data");
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(ProtocolError::RESERVED_BITS.code(), 1002);
        assert_eq!(ProtocolError::INVALID_UTF8.code(), 1007);
        assert_eq!(ProtocolError::INVALID_CLOSE_REASON.code(), 1007);
        assert_eq!(ProtocolError::FRAME_TOO_BIG.code(), 1009);
        assert_eq!(ProtocolError::new(1011, "x"), ProtocolError::new(1011, "x"));
    }

    #[test]
    fn reasons_fit_in_close_frame() {
        for e in [
            ProtocolError::RESERVED_BITS,
            ProtocolError::RESERVED_OPCODE,
            ProtocolError::CONTROL_FRAGMENTED,
            ProtocolError::CONTROL_TOO_LONG,
            ProtocolError::UNMASKED_CLIENT_FRAME,
            ProtocolError::MASKED_SERVER_FRAME,
            ProtocolError::UNEXPECTED_CONTINUATION,
            ProtocolError::EXPECTED_CONTINUATION,
            ProtocolError::INVALID_LENGTH,
            ProtocolError::CLOSE_PAYLOAD_TOO_SHORT,
            ProtocolError::INVALID_CLOSE_CODE,
            ProtocolError::INVALID_UTF8,
            ProtocolError::INVALID_CLOSE_REASON,
            ProtocolError::FRAME_TOO_BIG,
            ProtocolError::MESSAGE_TOO_BIG,
            ProtocolError::INVALID_COMPRESSED_DATA,
        ] {
            assert!(!e.reason().is_empty() && e.reason().len() <= 123);
        }
    }

    #[test]
    fn display_and_error() {
        let e: Box<dyn std::error::Error> = Box::new(ProtocolError::MESSAGE_TOO_BIG);
        assert_eq!(e.to_string(), "protocol error 1009: message too big");
    }
}
