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

/// From this many bytes on, text is checked with SIMD (`simdutf8`) rather than by std: std
/// offers no safe way to take bytes checked elsewhere as a `String`, so a message already in
/// its own `Vec` is then copied into its `String`, and from about here that copy costs less
/// than std's check (callgrind, 4 KiB: 1,831 instructions for std's check, 593 for the SIMD
/// one, about 700 for the copy and its allocation). A message still in the read buffer is
/// copied either way.
pub(crate) const SIMD_UTF8_FROM: usize = 512;

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

    /// A whole data message gathered in its own buffer (fragmented or inflated); a text
    /// message's UTF-8 is checked here, in the same pass that makes its `String`.
    pub(crate) fn data(text: bool, data: Vec<u8>) -> Result<Self, ProtocolError> {
        if !text {
            Ok(Self::Binary(data.into()))
        } else if data.len() >= SIMD_UTF8_FROM {
            Self::simd_text(&data)
        } else {
            String::from_utf8(data)
                .map(Self::Text)
                .map_err(|_| ProtocolError::INVALID_UTF8)
        }
    }

    /// A whole data message from its unmasked payload where it lies (the read buffer),
    /// copied once into its own `String` or `Bytes`. Short text is copied before std checks
    /// it: std's check goes a word at a time only over aligned bytes, and a new buffer is
    /// aligned where a payload in the read buffer rarely is (callgrind, 32 bytes: 53
    /// instructions against 138).
    pub(crate) fn copied(text: bool, payload: &[u8]) -> Result<Self, ProtocolError> {
        if text && payload.len() >= SIMD_UTF8_FROM {
            Self::simd_text(payload)
        } else {
            Self::data(text, payload.to_vec())
        }
    }

    /// Text checked with SIMD, then copied into its `String`.
    fn simd_text(bytes: &[u8]) -> Result<Self, ProtocolError> {
        simdutf8::basic::from_utf8(bytes)
            .map(|text| Self::Text(text.to_owned()))
            .map_err(|_| ProtocolError::INVALID_UTF8)
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
    fn copied_frames_are_checked_on_both_sides_of_the_simd_threshold() {
        for len in [2, SIMD_UTF8_FROM - 2, SIMD_UTF8_FROM, 4096] {
            let text = "é".repeat(len / 2);
            assert_eq!(
                Frame::copied(true, text.as_bytes()),
                Ok(Frame::Text(text.clone()))
            );
            assert_eq!(
                Frame::data(true, text.clone().into_bytes()),
                Ok(Frame::Text(text.clone()))
            );
            // Cut inside the last code point.
            let mut cut = text.into_bytes();
            cut.pop();
            assert_eq!(Frame::copied(true, &cut), Err(ProtocolError::INVALID_UTF8));
            assert_eq!(Frame::data(true, cut), Err(ProtocolError::INVALID_UTF8));
        }
        assert_eq!(
            Frame::copied(false, b"\xff"),
            Ok(Frame::Binary(Bytes::from_static(b"\xff")))
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
