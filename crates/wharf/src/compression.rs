//! permessage-deflate on the sending side: which messages a connection compresses, with which
//! compressor, and fan-out frames compressed once for every member that can take them.
//!
//! Without context takeover (the default) a message is compressed with a per-thread
//! compressor, reset after each message, so connections keep no compressor of their own. With
//! it, each connection has its own compressor, made at its first compressed message and used
//! under its outbox lock, so messages are compressed in the order they go on the wire.

use std::cell::RefCell;

use bytes::Bytes;
use wharf_proto::{DeflateParams, Deflater, OpCode};

use crate::Compression;

/// How one connection compresses what it sends, as negotiated at its handshake.
#[derive(Debug)]
pub(crate) struct SendCompression {
    threshold: usize,
    level: u32,
    window_bits: u8,
    /// Keep one compressor (and its window) for the whole connection.
    pub(crate) takeover: bool,
}

/// A compressor's settings: window bits and level.
type Key = (u8, u32);

thread_local! {
    /// Per-thread compressors for messages compressed without context takeover.
    static SHARED: RefCell<Vec<(Key, Deflater)>> = const { RefCell::new(Vec::new()) };
    /// Where a message is compressed before its frame header (which needs its length) is known.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A compression scratch buffer grown beyond this is freed after use.
const KEEP_SCRATCH: usize = 256 * 1024;

impl SendCompression {
    /// `None` when nothing will be compressed: an 8-bit window was negotiated, which raw
    /// DEFLATE cannot produce (RFC 7692 lets any message go uncompressed).
    pub(crate) fn new(params: &DeflateParams, config: &Compression) -> Option<SendCompression> {
        (params.server_max_window_bits >= 9).then_some(SendCompression {
            threshold: config.threshold,
            level: config.level,
            window_bits: params.server_max_window_bits,
            takeover: !params.server_no_context_takeover,
        })
    }

    /// Whether a message of this kind and size is compressed.
    pub(crate) fn wants(&self, opcode: OpCode, len: usize) -> bool {
        matches!(opcode, OpCode::Text | OpCode::Binary) && len >= self.threshold
    }

    fn key(&self) -> Key {
        (self.window_bits, self.level)
    }

    /// A compressor for this connection alone (context takeover).
    pub(crate) fn own_deflater(&self) -> Deflater {
        Deflater::new(self.window_bits, self.level, false)
    }

    /// Compresses `payload` with this thread's compressor for these settings and appends the
    /// frame to `out`.
    pub(crate) fn encode_fresh(&self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
        let key = self.key();
        SHARED.with_borrow_mut(|shared| {
            let index = match shared.iter().position(|(k, _)| *k == key) {
                Some(index) => index,
                None => {
                    shared.push((key, Deflater::new(key.0, key.1, true)));
                    shared.len() - 1
                }
            };
            if let Some((_, deflater)) = shared.get_mut(index) {
                encode_with(deflater, opcode, payload, out);
            }
        });
    }
}

/// Compresses `payload` with `deflater` and appends the compressed frame to `out`.
pub(crate) fn encode_with(
    deflater: &mut Deflater,
    opcode: OpCode,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        deflater.compress(payload, scratch);
        wharf_proto::encode_compressed_frame(out, opcode, scratch, None);
        if scratch.capacity() > KEEP_SCRATCH {
            *scratch = Vec::new();
        }
    });
}

/// One message on its way to many connections: encoded plainly once, and compressed at most
/// once per compressor setting for the members that compress without context takeover.
pub(crate) struct Fanout<'m> {
    pub(crate) opcode: OpCode,
    pub(crate) payload: &'m [u8],
    /// Encoded once, shared by every connection's queue when it is large.
    pub(crate) plain: Bytes,
    compressed: RefCell<Vec<(Key, Vec<u8>)>>,
}

impl<'m> Fanout<'m> {
    pub(crate) fn new(opcode: OpCode, payload: &'m [u8]) -> Fanout<'m> {
        let mut plain = Vec::with_capacity(payload.len() + 10);
        wharf_proto::encode_frame(&mut plain, opcode, payload, None);
        Fanout {
            opcode,
            payload,
            plain: plain.into(),
            compressed: RefCell::new(Vec::new()),
        }
    }

    /// Calls `f` with the frame compressed as `compression` (without context takeover) would.
    pub(crate) fn with_fresh<R>(
        &self,
        compression: &SendCompression,
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        let key = compression.key();
        let mut cache = self.compressed.borrow_mut();
        let index = match cache.iter().position(|(k, _)| *k == key) {
            Some(index) => index,
            None => {
                let mut frame = Vec::new();
                compression.encode_fresh(self.opcode, self.payload, &mut frame);
                cache.push((key, frame));
                cache.len() - 1
            }
        };
        f(cache
            .get(index)
            .map(|(_, frame)| frame.as_slice())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_proto::{Decoder, DecoderConfig, DeflateConfig, Frame, Role};

    fn params(takeover: bool, window: &str) -> DeflateParams {
        let mut config = DeflateConfig::default();
        config.server_no_context_takeover = !takeover;
        let offer = format!("permessage-deflate{window}");
        DeflateParams::negotiate([offer.as_str()], &config).expect("accepted")
    }

    fn client_decode(params: &DeflateParams, wire: &[u8]) -> Vec<Frame> {
        let mut decoder = Decoder::new(DecoderConfig::new(Role::Client));
        decoder.enable_deflate(params);
        let mut frames = Vec::new();
        decoder
            .decode(&mut wire.to_vec(), &mut frames)
            .expect("valid frames");
        frames
    }

    #[test]
    fn small_and_control_messages_stay_plain() {
        let p = params(false, "");
        let c = SendCompression::new(&p, &Compression::on()).expect("compresses");
        assert!(!c.wants(OpCode::Text, 127));
        assert!(c.wants(OpCode::Text, 128) && c.wants(OpCode::Binary, 1000));
        assert!(!c.wants(OpCode::Ping, 1000));
        let eight = params(false, "; server_max_window_bits=8");
        assert!(SendCompression::new(&eight, &Compression::on()).is_none());
    }

    #[test]
    fn fanout_frames_are_compressed_once_per_setting() {
        let p = params(false, "");
        let c = SendCompression::new(&p, &Compression::on()).expect("compresses");
        let text = "fan-out to many, fan-out to many, fan-out to many".repeat(10);
        let fanout = Fanout::new(OpCode::Text, text.as_bytes());
        let first = fanout.with_fresh(&c, <[u8]>::to_vec);
        let again = fanout.with_fresh(&c, <[u8]>::to_vec);
        assert_eq!(first, again);
        assert_eq!(fanout.compressed.borrow().len(), 1);
        assert!(first.len() < fanout.plain.len() / 4);
        assert_eq!(first[0], 0xc1, "FIN, RSV1, text");
        assert_eq!(client_decode(&p, &first), [Frame::Text(text)]);
    }

    #[test]
    fn own_compressor_carries_context() {
        let p = params(true, "");
        let c = SendCompression::new(&p, &Compression::on()).expect("compresses");
        assert!(c.takeover);
        let mut deflater = c.own_deflater();
        let mut wire = Vec::new();
        let text = "a message repeated with context takeover ".repeat(5);
        encode_with(&mut deflater, OpCode::Text, text.as_bytes(), &mut wire);
        let first = wire.len();
        encode_with(&mut deflater, OpCode::Text, text.as_bytes(), &mut wire);
        assert!(wire.len() - first < first / 2);
        let frames = client_decode(&p, &wire);
        assert_eq!(frames, [Frame::Text(text.clone()), Frame::Text(text)]);
    }
}
