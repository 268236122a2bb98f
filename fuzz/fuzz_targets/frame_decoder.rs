//! `wharf_proto::Decoder` on arbitrary bytes, whole and split at a fuzz-chosen point.
//!
//! Input: one byte of settings (bit 0: client role, else server; bit 1: small limits, else
//! the defaults; bit 2: permessage-deflate negotiated, so RSV1 messages are inflated; bit 3:
//! with context takeover), two bytes of split point, then the stream.
//!
//! Invariants: never panics; never consumes more than it was given and leaves at most an
//! incomplete header; once failed it stays failed with the same error and emits nothing;
//! text messages are valid UTF-8, control payloads at most 125 bytes, messages within
//! `max_message_size`, close frames carry a valid code; and the split stream decodes to the
//! same frames and the same error as the whole one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_proto::{
    Decoder, DecoderConfig, DeflateConfig, DeflateParams, Frame, MAX_HEADER_LEN, ProtocolError,
    Role, is_valid_close_code,
};

fuzz_target!(|data: &[u8]| {
    let [settings, split_hi, split_lo, stream @ ..] = data else {
        return;
    };
    let role = if settings & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let mut config = DecoderConfig::new(role);
    if settings & 2 != 0 {
        config = config
            .with_max_frame_size(64)
            .with_max_message_size(256)
            .with_fragment_cost(16);
    }
    let deflate = (settings & 4 != 0).then(|| {
        let mut offer = DeflateConfig::default();
        offer.server_no_context_takeover = settings & 8 == 0;
        offer.client_no_context_takeover = settings & 8 == 0;
        DeflateParams::negotiate(["permessage-deflate"], &offer).expect("a plain offer is accepted")
    });
    let split = usize::from(u16::from_be_bytes([*split_hi, *split_lo])) % (stream.len() + 1);

    let whole = decode_all(&config, deflate.as_ref(), &[stream]);
    let (first, second) = stream.split_at(split);
    let parts = decode_all(&config, deflate.as_ref(), &[first, second]);
    assert_eq!(whole, parts, "split at {split} decodes differently");

    for frame in &whole.0 {
        match frame {
            Frame::Text(text) => {
                // A `String`, but made without std's check from 512 bytes on (wharf-proto
                // `text.rs`): std must agree that it is UTF-8.
                assert!(
                    std::str::from_utf8(text.as_bytes()).is_ok(),
                    "text not UTF-8"
                );
                assert!(text.len() <= config.max_message_size);
            }
            Frame::Binary(bytes) => assert!(bytes.len() <= config.max_message_size),
            Frame::Ping(bytes) | Frame::Pong(bytes) => assert!(bytes.len() <= 125),
            Frame::Close(Some((code, reason))) => {
                assert!(is_valid_close_code(*code), "invalid close code {code}");
                assert!(reason.len() <= 123);
            }
            Frame::Close(None) => {}
        }
    }
});

/// Feeds `chunks` one after another the way the connection driver does (the unconsumed tail
/// of one read goes in front of the next) and returns every frame and the error, if any.
fn decode_all(
    config: &DecoderConfig,
    deflate: Option<&DeflateParams>,
    chunks: &[&[u8]],
) -> (Vec<Frame>, Option<ProtocolError>) {
    let mut decoder = Decoder::new(config.clone());
    if let Some(params) = deflate {
        decoder.enable_deflate(params);
    }
    let mut frames = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        match decoder.decode(&mut pending, &mut frames) {
            Ok(used) => {
                assert!(used <= pending.len(), "consumed more than the input");
                pending.drain(..used);
                assert!(
                    pending.len() < MAX_HEADER_LEN,
                    "left a whole header unconsumed"
                );
            }
            Err(error) => {
                let before = frames.len();
                assert_eq!(
                    decoder.decode(&mut b"\x81\x80\0\0\0\0".to_vec(), &mut frames),
                    Err(error)
                );
                assert_eq!(decoder.decode(&mut pending, &mut frames), Err(error));
                assert_eq!(frames.len(), before, "a failed decoder emitted frames");
                return (frames, Some(error));
            }
        }
    }
    (frames, None)
}
