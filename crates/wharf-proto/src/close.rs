//! Close frames (RFC 6455 §5.5.1, §7.4): code validity and payload parsing.

use crate::ProtocolError;

/// Whether a peer may send `code` in a close frame: 1000–1003, 1007–1014
/// and 3000–4999. Codes below 1000, 1004–1006 (reserved or never sent),
/// 1015 (TLS failure, never sent), 1016–2999 (unassigned) and ≥ 5000 are not.
///
/// ```
/// use wharf_proto::is_valid_close_code;
///
/// assert!(is_valid_close_code(1000));
/// assert!(is_valid_close_code(4999));
/// assert!(!is_valid_close_code(1005));
/// assert!(!is_valid_close_code(2000));
/// ```
pub const fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close payload: `Ok(None)` when empty, else the code and the
/// reason.
///
/// # Errors
/// 1002 for a 1-byte payload or an invalid code (see
/// [`is_valid_close_code`]); 1007 when the reason is not UTF-8.
///
/// ```
/// use wharf_proto::{parse_close_payload, ProtocolError};
///
/// assert_eq!(parse_close_payload(b""), Ok(None));
/// assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(Some((1000, "bye"))));
/// assert_eq!(parse_close_payload(b"\x03"), Err(ProtocolError::CLOSE_PAYLOAD_TOO_SHORT));
/// assert_eq!(parse_close_payload(b"\x03\xed"), Err(ProtocolError::INVALID_CLOSE_CODE));
/// assert_eq!(parse_close_payload(b"\x03\xe8\xff"), Err(ProtocolError::INVALID_CLOSE_REASON));
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CLOSE_PAYLOAD_TOO_SHORT),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::INVALID_CLOSE_CODE);
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::INVALID_CLOSE_REASON)?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_table() {
        for code in 0..=u16::MAX {
            let expected = match code {
                0..=999 => false,
                1000..=1003 => true,
                1004..=1006 => false,
                1007..=1014 => true,
                1015..=2999 => false,
                3000..=4999 => true,
                _ => false,
            };
            assert_eq!(is_valid_close_code(code), expected, "{code}");
        }
    }

    #[test]
    fn autobahn_7_7_and_7_9_codes() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close_payload(b"\x03\xe8"), Ok(Some((1000, ""))));
        let utf8 = "\u{3b1}\u{1f600}";
        let mut p = vec![0x0f, 0xa0];
        p.extend_from_slice(utf8.as_bytes());
        assert_eq!(parse_close_payload(&p), Ok(Some((4000, utf8))));
        assert_eq!(
            parse_close_payload(b"\x00\x00").map_err(|e| e.code()),
            Err(1002)
        );
        let err = parse_close_payload(b"\x03\xe8\xce\xba\xe1\xbd").map_err(|e| e.code());
        assert_eq!(err, Err(1007));
    }
}
