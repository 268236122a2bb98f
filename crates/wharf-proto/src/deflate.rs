//! permessage-deflate, the WebSocket compression extension (RFC 7692).
//!
//! - [`negotiate`] — [`DeflateConfig`] (what a server allows) and
//!   [`DeflateParams`] (what one connection agreed on), from and to the
//!   `Sec-WebSocket-Extensions` header.
//! - [`codec`] — [`Deflater`] and [`Inflater`], one per direction.
//! - [`encode_compressed_frame`] — a data frame with RSV1 set.
//!
//! A [`Decoder`](crate::Decoder) inflates compressed messages itself once
//! [`Decoder::enable_deflate`](crate::Decoder::enable_deflate) was called:
//! the inflated size counts against `max_message_size`, so a compression
//! bomb is refused with 1009 before its output grows past that limit.
//!
//! ```
//! use wharf_proto::{Decoder, DecoderConfig, DeflateConfig, DeflateParams, Deflater, Frame, Role};
//! use wharf_proto::{OpCode, encode_compressed_frame};
//!
//! let params = DeflateParams::negotiate(["permessage-deflate"], &DeflateConfig::default()).unwrap();
//!
//! // The client compresses a message...
//! let mut deflater = Deflater::new(params.client_max_window_bits, 6, params.client_no_context_takeover);
//! let mut payload = Vec::new();
//! deflater.compress("a compressed hello, hello, hello".as_bytes(), &mut payload);
//! let mut wire = Vec::new();
//! encode_compressed_frame(&mut wire, OpCode::Text, &payload, Some([1, 2, 3, 4]));
//!
//! // ...and the server's decoder inflates it.
//! let mut decoder = Decoder::new(DecoderConfig::new(Role::Server));
//! decoder.enable_deflate(&params);
//! let mut frames = Vec::new();
//! decoder.decode(&mut wire, &mut frames).unwrap();
//! assert_eq!(frames, [Frame::Text("a compressed hello, hello, hello".into())]);
//! ```

pub mod codec;
pub mod negotiate;

pub use codec::{Deflater, Inflater};
pub use negotiate::{DeflateConfig, DeflateParams, EXTENSION_NAME};

use crate::{OpCode, apply_mask, encode_header, header_len};

/// Appends one unfragmented data frame whose `payload` is already
/// compressed (by a [`Deflater`]), with RSV1 set; masked with `mask`.
///
/// ```
/// use wharf_proto::{OpCode, encode_compressed_frame};
///
/// let mut out = Vec::new();
/// encode_compressed_frame(&mut out, OpCode::Text, &[0xf2, 0x48, 0x05, 0x00], None);
/// assert_eq!(out, [0xc1, 0x04, 0xf2, 0x48, 0x05, 0x00]);
/// ```
pub fn encode_compressed_frame(
    dst: &mut Vec<u8>,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    dst.reserve(header_len(payload.len(), mask.is_some()) + payload.len());
    let start = dst.len();
    encode_header(dst, true, opcode, mask, payload.len());
    if let Some(first) = dst.get_mut(start) {
        *first |= 0x40;
    }
    let body = dst.len();
    dst.extend_from_slice(payload);
    if let (Some(key), Some(body)) = (mask, dst.get_mut(body..)) {
        apply_mask(body, key, 0);
    }
}
