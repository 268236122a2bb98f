//! [`Utf8Validator`]: incremental, fail-fast UTF-8 validation of a text
//! message that arrives in pieces.

use std::fmt;

/// The error of [`Utf8Validator`]: the bytes fed so far are not UTF-8.
///
/// ```
/// use wharf_proto::{InvalidUtf8, ProtocolError};
/// assert_eq!(ProtocolError::from(InvalidUtf8).code(), 1007);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

impl From<InvalidUtf8> for crate::ProtocolError {
    fn from(_: InvalidUtf8) -> Self {
        Self::INVALID_UTF8
    }
}

/// Validates UTF-8 fed in arbitrary pieces, each byte once. It fails as soon
/// as the bytes are definitely invalid; an incomplete code point at the end
/// of a piece is carried over (at most 3 bytes) and only an error at
/// [`finish`](Self::finish).
///
/// ```
/// use wharf_proto::Utf8Validator;
///
/// let euro = "€".as_bytes(); // e2 82 ac
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&euro[..1]).is_ok());
/// assert!(v.feed(&euro[1..]).is_ok());
/// assert!(v.finish().is_ok());
///
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(b"ok \xe2\x82").is_ok()); // may still complete
/// assert!(v.feed(b"(").is_err()); // cannot: fails at once
///
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(b"\xf0\x9f").is_ok());
/// assert!(v.finish().is_err()); // truncated at the end
/// ```
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: usize,
}

/// The length of the sequence a valid UTF-8 lead byte starts.
const fn sequence_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    ///
    /// ```
    /// assert!(wharf_proto::Utf8Validator::new().finish().is_ok());
    /// ```
    pub const fn new() -> Self {
        Self {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Forgets any carried-over bytes, to start a new message.
    ///
    /// ```
    /// let mut v = wharf_proto::Utf8Validator::new();
    /// v.feed(b"\xc3").unwrap();
    /// v.reset();
    /// assert!(v.finish().is_ok());
    /// ```
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Validates the next piece of the message.
    ///
    /// # Errors
    /// [`InvalidUtf8`] as soon as the bytes so far cannot be the start of
    /// valid UTF-8.
    ///
    /// ```
    /// let mut v = wharf_proto::Utf8Validator::new();
    /// assert!(v.feed("κόσμε".as_bytes()).is_ok());
    /// assert!(v.feed(b"\xc0\xaf").is_err()); // overlong
    /// ```
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            // Complete the carried code point with the first bytes of this piece.
            let have = self.partial_len;
            let need = sequence_len(self.partial[0]).saturating_sub(have);
            let take = need.min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            let end = have + take;
            let buf = self.partial.get_mut(have..end).ok_or(InvalidUtf8)?;
            buf.copy_from_slice(head);
            let candidate = self.partial.get(..end).ok_or(InvalidUtf8)?;
            match std::str::from_utf8(candidate) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: this piece was too short to finish it.
                    self.partial_len = end;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            bytes = rest;
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = bytes.get(e.valid_up_to()..).unwrap_or_default();
                let buf = self.partial.get_mut(..tail.len()).ok_or(InvalidUtf8)?;
                buf.copy_from_slice(tail);
                self.partial_len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the message and resets the validator.
    ///
    /// # Errors
    /// [`InvalidUtf8`] when the message ended inside a code point.
    ///
    /// ```
    /// let mut v = wharf_proto::Utf8Validator::new();
    /// v.feed(b"abc").unwrap();
    /// assert!(v.finish().is_ok());
    /// ```
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.partial_len > 0;
        self.partial_len = 0;
        if incomplete { Err(InvalidUtf8) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut last = 0;
        for &cut in cuts {
            v.feed(&bytes[last..cut])?;
            last = cut;
        }
        v.feed(&bytes[last..])?;
        v.finish()
    }

    const SAMPLES: &[&[u8]] = &[
        b"",
        b"hello",
        "κόσμε".as_bytes(),
        "a€b𝄞c".as_bytes(),
        "\u{10ffff}\u{7ff}\u{800}\u{ffff}".as_bytes(),
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", // surrogate
        b"\xf4\x90\x80\x80",                                               // above U+10FFFF
        b"\xe0\x80\xaf",                                                   // overlong
        b"\xc2",                                                           // truncated
        b"\x80abc",                                                        // lone continuation
        b"ab\xf0\x9f\x98",                                                 // truncated 4-byte
        b"\xff",
    ];

    #[test]
    fn every_two_and_three_way_split_agrees_with_std() {
        for sample in SAMPLES {
            let expected = std::str::from_utf8(sample).is_ok();
            for a in 0..=sample.len() {
                assert_eq!(
                    feed_split(sample, &[a]).is_ok(),
                    expected,
                    "{sample:?} @{a}"
                );
                for b in a..=sample.len() {
                    assert_eq!(feed_split(sample, &[a, b]).is_ok(), expected);
                }
            }
        }
    }

    #[test]
    fn byte_by_byte_fails_at_first_bad_byte() {
        // Valid "κόσμε" then a surrogate: the error is at \xa0 (index 12).
        let bytes = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80";
        let mut v = Utf8Validator::new();
        let failed_at = bytes.iter().position(|b| v.feed(&[*b]).is_err());
        assert_eq!(failed_at, Some(12));
    }

    #[test]
    fn carry_completed_then_rest_validated() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2").is_ok());
        assert!(v.feed(b"\x82").is_ok());
        assert!(v.feed(b"\xacok\xff").is_err());
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2").is_ok());
        assert!(v.feed(b"\x82\xacok\xf0\x9f").is_ok());
        assert!(v.feed(b"\x98\x80").is_ok());
        assert!(v.finish().is_ok());
    }
}
