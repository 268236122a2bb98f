//! [`OpCode`]: the frame opcodes of RFC 6455 §5.2.

/// A frame opcode. Reserved opcodes have no variant: [`OpCode::from_u8`]
/// returns `None` for them.
///
/// ```
/// use wharf_proto::OpCode;
///
/// assert_eq!(OpCode::from_u8(0x1), Some(OpCode::Text));
/// assert_eq!(OpCode::from_u8(0x3), None);
/// assert!(OpCode::Ping.is_control());
/// assert_eq!(OpCode::Close.as_u8(), 0x8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a UTF-8 text message.
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl OpCode {
    /// Parses the 4-bit opcode; reserved values (3-7, 0xB-0xF) and
    /// anything above 0xF give `None`.
    ///
    /// ```
    /// use wharf_proto::OpCode;
    /// assert_eq!(OpCode::from_u8(0xA), Some(OpCode::Pong));
    /// assert_eq!(OpCode::from_u8(0xB), None);
    /// ```
    #[inline]
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The wire value of the opcode.
    ///
    /// ```
    /// assert_eq!(wharf_proto::OpCode::Binary.as_u8(), 2);
    /// ```
    #[inline]
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// True for Close, Ping and Pong.
    ///
    /// ```
    /// use wharf_proto::OpCode;
    /// assert!(OpCode::Close.is_control());
    /// assert!(!OpCode::Text.is_control());
    /// ```
    #[inline]
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reserved() {
        for v in 0..=255u8 {
            match OpCode::from_u8(v) {
                Some(op) => assert_eq!(op.as_u8(), v),
                None => assert!(matches!(v, 3..=7 | 0xB..)),
            }
        }
    }

    #[test]
    fn control() {
        let control: Vec<_> = (0..16u8)
            .filter_map(OpCode::from_u8)
            .filter(|op| op.is_control())
            .collect();
        assert_eq!(control, [OpCode::Close, OpCode::Ping, OpCode::Pong]);
    }
}
