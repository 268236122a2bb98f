//! A text message's `String`, made from its own bytes with one UTF-8 check and no copy.
//!
//! This is the one place in wharf with `unsafe`: std has no safe way to take bytes another
//! validator checked as a `String`, and on the hot path the alternative is a second check
//! or a copy (docs/decisions.md, "One pass and one check: a text message becomes its
//! `String` where it was unmasked").

use crate::InvalidUtf8;

/// From this many bytes on, text is checked with SIMD (`simdutf8`, which picks AVX2 or
/// SSE4.2 at run time) rather than by std. Below it std is cheaper, as SIMD pays for its
/// setup (callgrind, 4 KiB: 1,831 instructions for std's check, 593 for the SIMD one; 32 B:
/// 53 for std's on an aligned buffer).
pub(crate) const SIMD_UTF8_FROM: usize = 512;

/// `bytes` as a `String` when they are UTF-8, checked once and kept where they are.
///
/// # Errors
/// [`InvalidUtf8`] when they are not UTF-8.
#[allow(
    unsafe_code,
    reason = "a measured hot path: the SIMD check and no second one (docs/decisions.md)"
)]
pub(crate) fn into_string(bytes: Vec<u8>) -> Result<String, InvalidUtf8> {
    if bytes.len() < SIMD_UTF8_FROM {
        return String::from_utf8(bytes).map_err(|_| InvalidUtf8);
    }
    if simdutf8::basic::from_utf8(&bytes).is_err() {
        return Err(InvalidUtf8);
    }
    // SAFETY: `from_utf8_unchecked` requires `bytes` to be valid UTF-8, and `simdutf8` has
    // just checked exactly these bytes (the same `Vec`, not changed since), returning an
    // error for anything std's `str::from_utf8` rejects. The tests below hold the two
    // checks equal on every length around the threshold and with every kind of bad
    // sequence at every position; the `frame_decoder` fuzz target asserts that std
    // accepts every text it decodes.
    Ok(unsafe { String::from_utf8_unchecked(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Well-formed pieces of 1 to 4 bytes, and ill-formed ones std rejects.
    const GOOD: &[&str] = &[
        "a",
        "é",
        "€",
        "𝄞",
        "\u{7ff}",
        "\u{800}",
        "\u{ffff}",
        "\u{10ffff}",
    ];
    const BAD: &[&[u8]] = &[
        b"\xff",
        b"\x80",
        b"\xc2",
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xf0\x9f\x98",
    ];

    #[test]
    fn agrees_with_std_on_both_sides_of_the_simd_threshold() {
        for len in (0..80)
            .chain(SIMD_UTF8_FROM - 8..SIMD_UTF8_FROM + 80)
            .chain([4096])
        {
            for piece in GOOD {
                let text = piece.repeat(len / piece.len());
                assert_eq!(
                    into_string(text.as_bytes().to_vec()),
                    Ok(text.clone()),
                    "{piece:?} x {len}"
                );
            }
        }
    }

    #[test]
    fn rejects_every_bad_sequence_wherever_it_lies() {
        for len in [16, SIMD_UTF8_FROM, SIMD_UTF8_FROM + 63, 1024] {
            for bad in BAD {
                for at in 0..len {
                    let mut bytes = b"x".repeat(len);
                    bytes.truncate(at);
                    bytes.extend_from_slice(bad);
                    bytes.resize(len.max(bytes.len()), b'y');
                    assert!(std::str::from_utf8(&bytes).is_err());
                    assert_eq!(
                        into_string(bytes),
                        Err(InvalidUtf8),
                        "{bad:?} at {at} of {len}"
                    );
                }
            }
        }
    }
}
