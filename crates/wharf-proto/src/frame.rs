//! [`Frame`]: what the [`Decoder`](crate::Decoder) yields.

use bytes::Bytes;

use crate::{OpCode, ProtocolError, parse_close_payload};

/// A whole data message or a single control frame, as decoded.
///
/// ```
/// use wharf_proto::{Frame, OpCode};
///
/// let frame = Frame::Text("hi".into());
/// assert_eq!(frame.opcode(), OpCode::Text);
/// assert_eq!(Frame::Close(Some((1000, "bye".into()))).opcode(), OpCode::Close);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole text message, validated as UTF-8 (once: the decoder hands over the
    /// `String` it checked).
    Text(String),
    /// A whole binary message.
    Binary(Bytes),
    /// A ping and its payload.
    Ping(Bytes),
    /// A pong and its payload.
    Pong(Bytes),
    /// A close frame: its code and reason, already validated, if it had any.
    Close(Option<(u16, String)>),
}

impl Frame {
    /// The opcode of the (first) frame this came in.
    ///
    /// ```
    /// assert_eq!(wharf_proto::Frame::Pong("".into()).opcode(), wharf_proto::OpCode::Pong);
    /// ```
    pub const fn opcode(&self) -> OpCode {
        match self {
            Self::Text(_) => OpCode::Text,
            Self::Binary(_) => OpCode::Binary,
            Self::Ping(_) => OpCode::Ping,
            Self::Pong(_) => OpCode::Pong,
            Self::Close(_) => OpCode::Close,
        }
    }

    /// A whole data message in its own buffer (unmasked as it was copied there, gathered
    /// from fragments, or inflated); a text message's UTF-8 is checked once and its buffer
    /// becomes its `String` (see `text::into_string`).
    pub(crate) fn data(text: bool, data: Vec<u8>) -> Result<Self, ProtocolError> {
        if text {
            Ok(Self::Text(crate::text::into_string(data)?))
        } else {
            Ok(Self::Binary(data.into()))
        }
    }

    /// A control frame from its unmasked payload; a close payload is parsed
    /// and validated.
    pub(crate) fn control(opcode: OpCode, payload: Vec<u8>) -> Result<Self, ProtocolError> {
        Ok(match opcode {
            OpCode::Ping => Self::Ping(payload.into()),
            OpCode::Pong => Self::Pong(payload.into()),
            _ => Self::Close(parse_close_payload(&payload)?.map(|(c, r)| (c, r.to_owned()))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_frames() {
        assert_eq!(
            Frame::data(true, b"a".to_vec()),
            Ok(Frame::Text("a".into()))
        );
        assert_eq!(
            Frame::data(false, b"a".to_vec()),
            Ok(Frame::Binary("a".into()))
        );
        assert_eq!(
            Frame::data(true, vec![0xff]),
            Err(ProtocolError::INVALID_UTF8)
        );
    }

    #[test]
    fn control_frames() {
        assert_eq!(
            Frame::control(OpCode::Ping, b"p".to_vec()),
            Ok(Frame::Ping("p".into()))
        );
        assert_eq!(
            Frame::control(OpCode::Pong, vec![]),
            Ok(Frame::Pong("".into()))
        );
        assert_eq!(
            Frame::control(OpCode::Close, vec![]),
            Ok(Frame::Close(None))
        );
        let close = Frame::control(OpCode::Close, b"\x0f\xa0why".to_vec());
        assert_eq!(close, Ok(Frame::Close(Some((4000, "why".into())))));
        let bad = Frame::control(OpCode::Close, b"\x03\xee".to_vec());
        assert_eq!(bad, Err(ProtocolError::INVALID_CLOSE_CODE));
    }

    #[test]
    fn opcodes() {
        assert_eq!(Frame::Binary(Bytes::new()).opcode(), OpCode::Binary);
        assert_eq!(Frame::Ping(Bytes::new()).opcode(), OpCode::Ping);
    }
}
