//! The compressor and decompressor of one direction: raw DEFLATE with the
//! RFC 7692 framing (each message ends in a sync flush whose trailing
//! `00 00 ff ff` is not sent).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::ProtocolError;

/// The empty stored block that ends every compressed message on the wire
/// before it is stripped (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses the messages of one direction.
///
/// ```
/// use wharf_proto::{Deflater, Inflater};
///
/// let mut deflater = Deflater::new(15, 6, false);
/// let mut inflater = Inflater::new(false);
/// for _ in 0..2 {
///     let mut wire = Vec::new();
///     deflater.compress(b"hello hello hello hello", &mut wire);
///     assert!(wire.len() < 23);
///     assert_eq!(inflater.inflate(&wire, 1024).unwrap(), b"hello hello hello hello");
/// }
/// ```
pub struct Deflater {
    compress: Compress,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor with a window of `window_bits` (clamped to 9..=15) at
    /// `level` (0 to 9); with `no_context_takeover` every message is
    /// compressed on its own.
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        Self {
            compress: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                window_bits.clamp(9, 15),
            ),
            no_context_takeover,
        }
    }

    /// Appends the compressed form of one whole message's payload to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        // A sync flush adds a few bytes per 16 KiB block and the tail; incompressible
        // input grows by about that much.
        out.reserve(payload.len() + payload.len() / 1024 + 16);
        let mut pos = 0;
        loop {
            let before = self.compress.total_in();
            let input = payload.get(pos..).unwrap_or_default();
            // An error is impossible here: the stream is raw, never finished, and given
            // output space every time.
            let _ = self.compress.compress_vec(input, out, FlushCompress::Sync);
            pos += usize::try_from(self.compress.total_in() - before).unwrap_or(usize::MAX);
            if pos >= payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(1024));
        }
        if out.len() >= start + TAIL.len() && out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if self.no_context_takeover {
            self.compress.reset();
        }
    }
}

/// Decompresses the messages of one direction, never producing more than
/// the given limit.
///
/// ```
/// use wharf_proto::{Deflater, Inflater, ProtocolError};
///
/// let mut wire = Vec::new();
/// Deflater::new(15, 6, true).compress(&[b'a'; 10_000], &mut wire);
/// let mut inflater = Inflater::new(true);
/// assert_eq!(inflater.inflate(&wire, 10_000).unwrap().len(), 10_000);
/// // One byte over the limit is refused with 1009.
/// assert_eq!(inflater.inflate(&wire, 9_999), Err(ProtocolError::MESSAGE_TOO_BIG));
/// ```
pub struct Inflater {
    decompress: Decompress,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A decompressor; with `no_context_takeover` the peer compresses each
    /// message on its own, and the window is reset after each. The window
    /// is always 15 bits, which inflates any smaller window too.
    pub fn new(no_context_takeover: bool) -> Self {
        Self {
            decompress: Decompress::new(false),
            no_context_takeover,
        }
    }

    /// Inflates one whole message (its frames' payloads concatenated). The
    /// output buffer grows with what is produced and never beyond
    /// `limit + 1` bytes.
    ///
    /// # Errors
    /// [`ProtocolError::MESSAGE_TOO_BIG`] (1009) when the message inflates
    /// to more than `limit` bytes; [`ProtocolError::INVALID_COMPRESSED_DATA`]
    /// (1007) when it is not valid DEFLATE data. The inflater must not be
    /// used after an error.
    pub fn inflate(&mut self, input: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
        let cap = limit.saturating_add(1);
        let mut out =
            Vec::with_capacity(input.len().saturating_mul(3).clamp(256, 64 * 1024).min(cap));
        let mut ended = false;
        for chunk in [input, &TAIL[..]] {
            let mut pos = 0;
            while !ended {
                if out.len() == out.capacity() {
                    if out.len() >= cap {
                        return Err(ProtocolError::MESSAGE_TOO_BIG);
                    }
                    let grow = out.capacity().max(1024).min(cap - out.len());
                    out.reserve_exact(grow);
                }
                let (before_in, before_out) = (self.decompress.total_in(), out.len());
                let input = chunk.get(pos..).unwrap_or_default();
                let status = self
                    .decompress
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .map_err(|_| ProtocolError::INVALID_COMPRESSED_DATA)?;
                let used = usize::try_from(self.decompress.total_in() - before_in).unwrap_or(0);
                pos += used;
                // A block with BFINAL set ends the stream (RFC 7692 §7.2.3.4): what
                // follows it is ignored and the next message starts a new stream.
                ended = status == Status::StreamEnd;
                let room_left = out.len() < out.capacity();
                if pos >= chunk.len() && room_left {
                    break;
                }
                if used == 0 && out.len() == before_out && room_left {
                    return Err(ProtocolError::INVALID_COMPRESSED_DATA);
                }
            }
        }
        if out.len() > limit {
            return Err(ProtocolError::MESSAGE_TOO_BIG);
        }
        if self.no_context_takeover || ended {
            self.decompress.reset(false);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_takeover_shrinks_repeated_messages() {
        let message = b"{\"type\":\"chat\",\"room\":\"lobby\",\"text\":\"hello everyone\"}";
        let mut with = Deflater::new(15, 6, false);
        let mut without = Deflater::new(15, 6, true);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        with.compress(message, &mut a);
        without.compress(message, &mut b);
        assert_eq!(a, b, "the first message compresses the same");
        let (mut a2, mut b2) = (Vec::new(), Vec::new());
        with.compress(message, &mut a2);
        without.compress(message, &mut b2);
        assert!(a2.len() < b2.len() / 2, "{} vs {}", a2.len(), b2.len());
        assert_eq!(b2, b, "without takeover every message is alone");

        let mut inflater = Inflater::new(false);
        for wire in [&a, &a2] {
            assert_eq!(inflater.inflate(wire, 1 << 20).expect("valid"), message);
        }
    }

    #[test]
    fn every_window_size_round_trips() {
        let text: Vec<u8> = (0..100_000u32)
            .map(|i| (i * 7 % 251) as u8 ^ (i / 300) as u8)
            .collect();
        for bits in 9..=15 {
            let mut wire = Vec::new();
            Deflater::new(bits, 6, true).compress(&text, &mut wire);
            let out = Inflater::new(true)
                .inflate(&wire, text.len())
                .expect("valid");
            assert_eq!(out, text, "window {bits}");
        }
    }

    #[test]
    fn empty_and_incompressible_payloads() {
        let mut deflater = Deflater::new(15, 6, false);
        let mut inflater = Inflater::new(false);
        let noise: Vec<u8> = (0..70_000u64)
            .map(|i| (i.wrapping_mul(0x9e3779b97f4a7c15) >> 56) as u8)
            .collect();
        for payload in [&b""[..], &noise[..], b"x"] {
            let mut wire = Vec::new();
            deflater.compress(payload, &mut wire);
            assert_eq!(inflater.inflate(&wire, 1 << 20).expect("valid"), payload);
        }
    }

    #[test]
    fn a_bomb_is_stopped_at_the_limit() {
        let mut wire = Vec::new();
        Deflater::new(15, 9, true).compress(&vec![0u8; 16 << 20], &mut wire);
        assert!(wire.len() < 40_000, "{}", wire.len());
        let mut inflater = Inflater::new(true);
        assert_eq!(
            inflater.inflate(&wire, 1 << 20),
            Err(ProtocolError::MESSAGE_TOO_BIG)
        );
    }

    #[test]
    fn garbage_is_invalid_data() {
        let mut inflater = Inflater::new(true);
        assert_eq!(
            inflater.inflate(&[0xff, 0xff, 0xff], 1024),
            Err(ProtocolError::INVALID_COMPRESSED_DATA)
        );
    }

    #[test]
    fn a_final_block_ends_the_message() {
        // A whole raw stream with BFINAL set (what `Finish` produces) is accepted too.
        let mut compress = Compress::new(Compression::default(), false);
        let mut wire = Vec::with_capacity(64);
        compress
            .compress_vec(b"final", &mut wire, FlushCompress::Finish)
            .expect("valid");
        let mut inflater = Inflater::new(false);
        assert_eq!(inflater.inflate(&wire, 100).expect("valid"), b"final");
        let mut next = Vec::new();
        Deflater::new(15, 6, false).compress(b"next", &mut next);
        assert_eq!(inflater.inflate(&next, 100).expect("valid"), b"next");
    }
}
