//! Whole-frame encoding: [`encode_frame`], [`encode_close`] and [`truncate_reason`].

use crate::{OpCode, apply_mask, encode_header, header_len};

/// The longest close reason: a control payload is at most 125 bytes, two of
/// which hold the code.
pub const MAX_CLOSE_REASON_LEN: usize = 123;

/// Appends one unfragmented frame (FIN set) to `dst`, reserving once. With a
/// `mask` (client side) the payload is masked.
///
/// ```
/// use wharf_proto::{encode_frame, OpCode};
///
/// let mut out = Vec::new();
/// encode_frame(&mut out, OpCode::Text, b"Hello", None);
/// assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
///
/// out.clear();
/// encode_frame(&mut out, OpCode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
#[inline]
pub fn encode_frame(dst: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) {
    dst.reserve(header_len(payload.len(), mask.is_some()) + payload.len());
    encode_header(dst, true, opcode, mask, payload.len());
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let (Some(key), Some(body)) = (mask, dst.get_mut(start..)) {
        apply_mask(body, key, 0);
    }
}

/// Appends a close frame carrying `code` and `reason` (cut to 123 bytes by
/// [`truncate_reason`]). To close without a code, use [`encode_frame`] with
/// an empty payload.
///
/// ```
/// use wharf_proto::encode_close;
///
/// let mut out = Vec::new();
/// encode_close(&mut out, 1000, "bye", None);
/// assert_eq!(out, [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
/// ```
pub fn encode_close(dst: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let reason = truncate_reason(reason);
    let len = 2 + reason.len();
    dst.reserve(header_len(len, mask.is_some()) + len);
    encode_header(dst, true, OpCode::Close, mask, len);
    let start = dst.len();
    dst.extend_from_slice(&code.to_be_bytes());
    dst.extend_from_slice(reason.as_bytes());
    if let (Some(key), Some(body)) = (mask, dst.get_mut(start..)) {
        apply_mask(body, key, 0);
    }
}

/// Cuts `reason` to at most [`MAX_CLOSE_REASON_LEN`] (123) bytes, on a
/// char boundary.
///
/// ```
/// use wharf_proto::truncate_reason;
///
/// assert_eq!(truncate_reason("short"), "short");
/// let long = "é".repeat(100); // 200 bytes
/// assert_eq!(truncate_reason(&long).len(), 122);
/// ```
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON_LEN {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameHeader;

    #[test]
    fn unmasked_ping_rfc() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Ping, b"Hello", None);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn large_frames_use_extended_lengths() {
        let payload = vec![7u8; 70_000];
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Binary, &payload, Some([1, 2, 3, 4]));
        let (h, n) = FrameHeader::parse(&out).ok().flatten().expect("header");
        assert_eq!((h.payload_len, n), (70_000, 14));
        let mut body = out[n..].to_vec();
        apply_mask(&mut body, [1, 2, 3, 4], 0);
        assert_eq!(body, payload);
    }

    #[test]
    fn close_masked_round_trips() {
        let mut out = Vec::new();
        encode_close(&mut out, 1001, "away", Some([5, 6, 7, 8]));
        assert_eq!(&out[..2], [0x88, 0x86]);
        let mut body = out[6..].to_vec();
        apply_mask(&mut body, [5, 6, 7, 8], 0);
        assert_eq!(body, b"\x03\xe9away");
    }

    #[test]
    fn close_reason_is_truncated() {
        let mut out = Vec::new();
        encode_close(&mut out, 1000, &"x".repeat(500), None);
        assert_eq!(out.len(), 2 + 125);
        assert_eq!(out[1], 125);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        for prefix in 0..4 {
            let s = format!("{}{}", "a".repeat(prefix), "€".repeat(60));
            let t = truncate_reason(&s);
            assert!(t.len() <= 123 && t.len() >= 121, "{}", t.len());
            assert!(s.starts_with(t));
        }
        assert_eq!(truncate_reason(&"a".repeat(123)).len(), 123);
    }
}
