//! Close codes: what the server sends when it ends a connection, and what a client should do.
//!
//! Every code wharf puts on the wire is a named constant here, documented with its meaning
//! and the client's next move, so applications and clients can treat them as data.

use std::fmt;

/// A WebSocket close status code (RFC 6455 §7.4).
///
/// ```
/// use wharf::CloseCode;
/// assert_eq!(CloseCode::NORMAL.as_u16(), 1000);
/// assert!(CloseCode::new(4001).is_application());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled. Client: do not reconnect unless it wants to.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is shutting down or restarting. Client: reconnect with backoff.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol (bad frame, bad opcode, unmasked frame). Client: fix the client; do not retry blindly.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a message type the endpoint does not accept. Client: do not resend that kind of message.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present in the peer's close frame (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection ended without a close frame (TCP reset, EOF; never sent on the wire). Client: reconnect with backoff.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message or close reason was not valid UTF-8. Client: fix the encoding.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy was violated (slow consumer, rate limit, auth revoked). Client: back off before reconnecting.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message or frame was larger than the server accepts. Client: send smaller messages.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server's handler failed. Client: reconnect with backoff; report if it repeats.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting. Client: reconnect with backoff.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (overload, slow consumer when configured). Client: reconnect after a delay.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 4010, sent by wharf to the members of a history room when publications they should
    /// have received are gone from the history (trimmed before a gap could be filled, or the
    /// store lost the room): reconnect and rejoin from the last position you received; the
    /// recovery then says `recovered: false`, and the client reloads its state.
    pub const RESYNC: CloseCode = CloseCode(4010);

    /// Wraps a raw code.
    pub const fn new(code: u16) -> CloseCode {
        CloseCode(code)
    }

    /// The raw code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether the code is in the application range 4000–4999.
    pub const fn is_application(self) -> bool {
        self.0 >= 4000 && self.0 <= 4999
    }

    /// Whether the code may be sent in a close frame (RFC 6455 §7.4; 1005, 1006, 1015 may not).
    pub fn is_sendable(self) -> bool {
        wharf_proto::is_valid_close_code(self.0)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_follow_rfc_6455() {
        assert!(CloseCode::NORMAL.is_sendable());
        assert!(CloseCode::new(4999).is_sendable());
        assert!(!CloseCode::NO_STATUS.is_sendable());
        assert!(!CloseCode::ABNORMAL.is_sendable());
        assert!(!CloseCode::new(999).is_sendable());
    }
}
