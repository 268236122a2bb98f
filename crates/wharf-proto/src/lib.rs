//! The RFC 6455 (WebSocket) protocol engine shared by wharf's server and
//! client: frame headers, masking, a streaming decoder that assembles
//! messages with fail-fast UTF-8 validation, close frames and the handshake
//! keys. It does no I/O and never panics on any input. Its one `unsafe` (the only one in
//! wharf) takes a text message's checked bytes as its `String` without a second check
//! (`text.rs`).
//!
//! ```
//! use wharf_proto::{Decoder, DecoderConfig, Frame, OpCode, Role, encode_frame};
//!
//! // A client masks its frames...
//! let mut wire = Vec::new();
//! encode_frame(&mut wire, OpCode::Text, "héllo".as_bytes(), Some([1, 2, 3, 4]));
//! encode_frame(&mut wire, OpCode::Ping, b"", Some([5, 6, 7, 8]));
//!
//! // ...and the server decodes them, from any split of the stream.
//! let mut decoder = Decoder::new(DecoderConfig::new(Role::Server));
//! let mut frames = Vec::new();
//! let used = decoder.decode(&mut wire[..4], &mut frames).unwrap();
//! let mut rest = [&wire[used..4], &wire[4..]].concat();
//! decoder.decode(&mut rest, &mut frames).unwrap();
//! assert_eq!(frames, [Frame::Text("héllo".into()), Frame::Ping("".into())]);
//! ```
//!
//! # Layout
//! - [`opcode`] — [`OpCode`].
//! - [`error`] — [`ProtocolError`], a violation with its close code.
//! - [`mask`] — [`apply_mask`] and [`mask_copy`].
//! - [`header`] — [`FrameHeader::parse`] and [`encode_header`].
//! - [`encode`] — [`encode_frame`], [`encode_close`] and [`truncate_reason`].
//! - [`close`] — [`is_valid_close_code`] and [`parse_close_payload`].
//! - [`utf8`] — [`Utf8Validator`], incremental fail-fast UTF-8 validation.
//! - [`config`] — [`DecoderConfig`] and [`Role`].
//! - [`frame`] — [`Frame`], a decoded message or control frame.
//! - `text` — a text message's `String`, checked once (SIMD from 512 bytes), not copied.
//! - [`decoder`] — [`Decoder`], the streaming decoder.
//! - [`pool`] — payload buffers kept per thread for the next message ([`pool::take`],
//!   [`pool::give`]).
//! - [`handshake`] — [`accept_key`], [`is_valid_key`] and [`generate_key`].
//! - [`deflate`] — permessage-deflate (RFC 7692): [`DeflateConfig`],
//!   [`DeflateParams`], [`Deflater`], [`Inflater`] and [`encode_compressed_frame`].

pub mod close;
pub mod config;
pub mod decoder;
pub mod deflate;
pub mod encode;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod header;
pub mod mask;
pub mod opcode;
pub mod pool;
mod text;
pub mod utf8;

pub use close::{is_valid_close_code, parse_close_payload};
pub use config::{DecoderConfig, Role};
pub use decoder::Decoder;
pub use deflate::{DeflateConfig, DeflateParams, Deflater, Inflater, encode_compressed_frame};
pub use encode::{MAX_CLOSE_REASON_LEN, encode_close, encode_frame, truncate_reason};
pub use error::ProtocolError;
pub use frame::Frame;
pub use handshake::{GUID, accept_key, generate_key, is_valid_key};
pub use header::{FrameHeader, MAX_HEADER_LEN, encode_header, header_len};
pub use mask::{apply_mask, mask_copy};
pub use opcode::OpCode;
pub use utf8::{InvalidUtf8, Utf8Validator};
