//! Frame headers (RFC 6455 §5.2): [`FrameHeader::parse`] and [`encode_header`].

use crate::{OpCode, ProtocolError};

/// The longest possible frame header: 2 bytes, an 8-byte length and a
/// 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// A parsed frame header, not yet checked against the protocol rules
/// (that is the [`Decoder`](crate::Decoder)'s job).
///
/// ```
/// use wharf_proto::FrameHeader;
///
/// // RFC 6455 §5.7: a masked "Hello".
/// let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (header, len) = FrameHeader::parse(&bytes).unwrap().unwrap();
/// assert!(header.fin);
/// assert_eq!(header.opcode, 0x1);
/// assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!((header.payload_len, len), (5, 6));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: this is the final fragment of a message.
    pub fin: bool,
    /// The three RSV bits as `0b0xyz`: RSV1 is `0b100`, RSV3 is `0b001`.
    pub rsv: u8,
    /// The raw 4-bit opcode (possibly reserved; see [`OpCode::from_u8`]).
    pub opcode: u8,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the front of `buf`, returning it with its length
    /// in bytes, or `Ok(None)` when `buf` does not yet hold the whole header.
    /// Non-minimal length encodings are accepted.
    ///
    /// # Errors
    /// [`ProtocolError::INVALID_LENGTH`] (1002) when a 64-bit length has its
    /// most significant bit set.
    ///
    /// ```
    /// use wharf_proto::FrameHeader;
    /// assert_eq!(FrameHeader::parse(&[0x82, 0x7e, 0x01]), Ok(None));
    /// let (h, n) = FrameHeader::parse(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap();
    /// assert_eq!((h.payload_len, n), (256, 4));
    /// ```
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let Some(&[b0, b1]) = buf.get(..2) else {
            return Ok(None);
        };
        let (payload_len, mut len) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
                Some(bytes) => (u64::from_be_bytes(bytes), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if payload_len >> 63 != 0 {
            return Err(ProtocolError::INVALID_LENGTH);
        }
        let mask = if b1 & 0x80 != 0 {
            match buf.get(len..len + 4) {
                Some(&[a, b, c, d]) => {
                    len += 4;
                    Some([a, b, c, d])
                }
                _ => return Ok(None),
            }
        } else {
            None
        };
        let header = Self {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0b111,
            opcode: b0 & 0x0f,
            mask,
            payload_len,
        };
        Ok(Some((header, len)))
    }
}

/// The length of the header [`encode_header`] writes for this payload length.
///
/// ```
/// assert_eq!(wharf_proto::header_len(125, false), 2);
/// assert_eq!(wharf_proto::header_len(126, true), 8);
/// assert_eq!(wharf_proto::header_len(70_000, true), 14);
/// ```
#[inline]
pub const fn header_len(payload_len: usize, masked: bool) -> usize {
    let base = match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    };
    if masked { base + 4 } else { base }
}

/// Appends a frame header (RSV bits clear) with the minimal length encoding.
///
/// ```
/// use wharf_proto::{encode_header, OpCode};
///
/// let mut out = Vec::new();
/// encode_header(&mut out, true, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), 5);
/// assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
/// ```
#[inline]
pub fn encode_header(
    dst: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: usize,
) {
    let b0 = if fin { 0x80 } else { 0 } | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload_len {
        // The match arms bound each value, so the casts cannot truncate.
        0..=125 => dst.extend_from_slice(&[b0, mask_bit | payload_len as u8]),
        126..=0xffff => {
            let [a, b] = (payload_len as u16).to_be_bytes();
            dst.extend_from_slice(&[b0, mask_bit | 126, a, b]);
        }
        _ => {
            dst.extend_from_slice(&[b0, mask_bit | 127]);
            dst.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        dst.extend_from_slice(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(buf: &[u8]) -> (FrameHeader, usize) {
        match FrameHeader::parse(buf) {
            Ok(Some(parsed)) => parsed,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rfc_examples() {
        // Unmasked "Hello".
        let (h, n) = parse_ok(&[0x01, 0x03, b'H', b'e', b'l']);
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (false, 1, None, 3, 2)
        );
        // 256 bytes binary, unmasked.
        let (h, n) = parse_ok(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.opcode, h.payload_len, n), (2, 256, 4));
        // 64 KiB binary, unmasked.
        let (h, n) = parse_ok(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn rsv_bits() {
        let (h, _) = parse_ok(&[0xc1, 0x00]);
        assert_eq!(h.rsv, 0b100);
        let (h, _) = parse_ok(&[0x91, 0x00]);
        assert_eq!(h.rsv, 0b001);
    }

    #[test]
    fn incomplete_headers_need_more() {
        let mut full = Vec::new();
        encode_header(&mut full, true, OpCode::Binary, Some([1, 2, 3, 4]), 100_000);
        assert_eq!(full.len(), MAX_HEADER_LEN);
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..cut]), Ok(None), "cut {cut}");
        }
        let (h, n) = parse_ok(&full);
        assert_eq!(
            (h.payload_len, h.mask, n),
            (100_000, Some([1, 2, 3, 4]), 14)
        );
    }

    #[test]
    fn msb_of_64_bit_length_is_an_error() {
        let buf = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&buf), Err(ProtocolError::INVALID_LENGTH));
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let (h, n) = parse_ok(&[0x82, 0x7e, 0x00, 0x05]);
        assert_eq!((h.payload_len, n), (5, 4));
        let (h, n) = parse_ok(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!((h.payload_len, n), (5, 10));
    }

    #[test]
    fn encode_round_trips() {
        for len in [0, 1, 125, 126, 127, 0xffff, 0x10000, 1 << 33] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let mut out = Vec::new();
                encode_header(&mut out, len % 2 == 0, OpCode::Ping, mask, len);
                assert_eq!(out.len(), header_len(len, mask.is_some()));
                let (h, n) = parse_ok(&out);
                assert_eq!(n, out.len());
                assert_eq!(h.payload_len, len as u64);
                assert_eq!((h.fin, h.rsv, h.opcode, h.mask), (len % 2 == 0, 0, 9, mask));
            }
        }
    }
}
