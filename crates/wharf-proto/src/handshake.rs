//! Opening-handshake key helpers (RFC 6455 §4.2.2 and §4.1).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// The GUID appended to `Sec-WebSocket-Key` before hashing.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key ++ GUID)).
///
/// ```
/// assert_eq!(
///     wharf_proto::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: 24 characters of standard,
/// padded base64 that decode to exactly 16 bytes.
///
/// ```
/// use wharf_proto::is_valid_key;
///
/// assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
/// assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // unpadded
/// assert!(!is_valid_key(b"not a key"));
/// ```
pub fn is_valid_key(key: &[u8]) -> bool {
    if key.len() != 24 || !key.ends_with(b"==") {
        return false;
    }
    let mut out = [0u8; 18];
    matches!(STANDARD.decode_slice(key, &mut out), Ok(16))
}

/// A `Sec-WebSocket-Key` for a client request, from 16 random bytes the
/// caller supplies.
///
/// ```
/// use wharf_proto::{generate_key, is_valid_key};
///
/// let key = generate_key(*b"the sample nonce");
/// assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
/// assert!(is_valid_key(key.as_bytes()));
/// ```
pub fn generate_key(random: [u8; 16]) -> String {
    STANDARD.encode(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        // A second vector, computed apart from this crate (Python's hashlib and base64), so
        // a constant answer or a wrong GUID cannot pass on the RFC's example alone.
        assert_eq!(
            accept_key(b"x3JJHMbDL1EzLkh9GBhXDw=="),
            "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
        );
    }

    #[test]
    fn key_validation() {
        assert!(is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(is_valid_key(b"/////////////////////w=="));
        // Wrong lengths, URL-safe alphabet, non-canonical trailing bits.
        assert!(!is_valid_key(b""));
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAAA="));
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!is_valid_key(b"_____________________w=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=\0"));
    }

    #[test]
    fn generated_keys_are_valid() {
        for seed in 0..=255u8 {
            let key = generate_key([seed; 16]);
            assert_eq!(key.len(), 24);
            assert!(is_valid_key(key.as_bytes()));
        }
    }
}
