//! Unit tests of the decoder: one per protocol rule, plus the fast and
//! partial paths.

use super::*;
use crate::text::SIMD_UTF8_FROM;
use crate::{encode_close, encode_frame, encode_header};
use bytes::Bytes;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked frame with explicit FIN, RSV bits and raw opcode.
fn raw(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header(&mut out, fin, OpCode::Text, Some(KEY), payload.len());
    out[0] = (out[0] & 0x80) | (rsv << 4) | opcode;
    mask_copy(&mut out, payload, KEY, 0);
    out
}

fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, payload, Some(KEY));
    out
}

fn server() -> Decoder {
    Decoder::new(DecoderConfig::default())
}

/// Feeds `wire` in one call, expecting all of it to be consumed.
fn decode_all(decoder: &mut Decoder, wire: &[u8]) -> Result<Vec<Frame>, ProtocolError> {
    let mut out = Vec::new();
    let used = decoder.decode(&mut wire.to_vec(), &mut out)?;
    assert_eq!(used, wire.len());
    Ok(out)
}

fn error_of(wire: &[u8]) -> ProtocolError {
    match decode_all(&mut server(), wire) {
        Err(e) => e,
        Ok(frames) => panic!("expected an error, got {frames:?}"),
    }
}

#[test]
fn rfc_single_frames() {
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode_all(&mut server(), &wire),
        Ok(vec![Frame::Text("Hello".into())])
    );
    // Unmasked frames, decoded as a client: a fragmented "Hel" + "lo", a ping.
    let wire = [
        0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f, 0x89, 0x00,
    ];
    let mut client = Decoder::new(DecoderConfig::new(Role::Client));
    let expected = vec![Frame::Text("Hello".into()), Frame::Ping(Bytes::new())];
    assert_eq!(decode_all(&mut client, &wire), Ok(expected));
}

#[test]
fn reserved_bits() {
    for rsv in 1..8 {
        assert_eq!(
            error_of(&raw(true, rsv, 1, b"x")),
            ProtocolError::RESERVED_BITS
        );
    }
    // RSV1 never on control or continuation frames, nor RSV2/RSV3, even with deflate on.
    for wire in [raw(true, 0b100, 9, b""), raw(true, 0b010, 2, b"")] {
        assert_eq!(
            decode_all(&mut deflating(true), &wire),
            Err(ProtocolError::RESERVED_BITS)
        );
    }
    let first = compressed(b"ab", true);
    let wire = [
        raw(false, 0b100, 2, &first[..1]),
        raw(true, 0b100, 0, &first[1..]),
    ]
    .concat();
    assert_eq!(
        decode_all(&mut deflating(true), &wire),
        Err(ProtocolError::RESERVED_BITS)
    );
}

/// A server decoder with permessage-deflate negotiated.
fn deflating(no_context_takeover: bool) -> Decoder {
    let config = crate::DeflateConfig {
        client_no_context_takeover: no_context_takeover,
        ..crate::DeflateConfig::default()
    };
    let params = DeflateParams::negotiate(["permessage-deflate"], &config).expect("accepted");
    let mut decoder = server();
    decoder.enable_deflate(&params);
    decoder
}

fn compressed(payload: &[u8], no_context_takeover: bool) -> Vec<u8> {
    let mut out = Vec::new();
    crate::Deflater::new(15, 6, no_context_takeover).compress(payload, &mut out);
    out
}

#[test]
fn compressed_messages_whole_and_fragmented() {
    let text = "compressed text, compressed text, é中𝄞".repeat(20);
    let body = compressed(text.as_bytes(), true);
    let mut d = deflating(true);
    let whole = raw(true, 0b100, 1, &body);
    let (a, b) = body.split_at(body.len() / 3);
    let fragmented = [raw(false, 0b100, 1, a), raw(true, 0, 0, b)].concat();
    let binary = raw(true, 0b100, 2, &body);
    let plain = raw(true, 0, 1, b"not compressed");
    let wire = [whole, fragmented, binary, plain].concat();
    assert_eq!(
        decode_all(&mut d, &wire),
        Ok(vec![
            Frame::Text(text.clone()),
            Frame::Text(text.clone()),
            Frame::Binary(text.into()),
            Frame::Text("not compressed".into()),
        ])
    );
    // Split at every byte: the partial path gives the same.
    let wire = [raw(false, 0b100, 1, a), raw(true, 0, 0, b)].concat();
    let mut d = deflating(true);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for byte in wire {
        pending.push(byte);
        let used = d.decode(&mut pending, &mut out).expect("valid");
        pending.drain(..used);
    }
    assert_eq!(out.len(), 1);
}

#[test]
fn context_takeover_spans_messages() {
    let mut deflater = crate::Deflater::new(15, 6, false);
    let mut d = deflating(false);
    for _ in 0..3 {
        let mut body = Vec::new();
        deflater.compress(b"the same message again", &mut body);
        assert_eq!(
            decode_all(&mut d, &raw(true, 0b100, 1, &body)),
            Ok(vec![Frame::Text("the same message again".into())])
        );
    }
}

#[test]
fn compressed_text_is_validated_after_inflating() {
    let bad = compressed(&[b'a', 0xff, b'b'], true);
    assert_eq!(
        decode_all(&mut deflating(true), &raw(true, 0b100, 1, &bad)),
        Err(ProtocolError::INVALID_UTF8)
    );
    let (a, b) = bad.split_at(1);
    let wire = [raw(false, 0b100, 1, a), raw(true, 0, 0, b)].concat();
    assert_eq!(
        decode_all(&mut deflating(true), &wire),
        Err(ProtocolError::INVALID_UTF8)
    );
    // The same bytes as binary are fine.
    assert_eq!(
        decode_all(&mut deflating(true), &raw(true, 0b100, 2, &bad)),
        Ok(vec![Frame::Binary(Bytes::from_static(&[b'a', 0xff, b'b']))])
    );
}

#[test]
fn compression_bomb_and_garbage() {
    // 8 MiB of zeros compress to a few KiB; the limit is on the inflated size.
    let bomb = compressed(&vec![0; 8 << 20], true);
    let config = DecoderConfig::default().with_max_message_size(1 << 20);
    let params = DeflateParams::negotiate(["permessage-deflate"], &crate::DeflateConfig::default());
    let mut d = Decoder::new(config);
    d.enable_deflate(&params.expect("accepted"));
    assert_eq!(
        decode_all(&mut d, &raw(true, 0b100, 2, &bomb)),
        Err(ProtocolError::MESSAGE_TOO_BIG)
    );
    assert_eq!(
        decode_all(&mut deflating(true), &raw(true, 0b100, 2, &[0xff; 8])),
        Err(ProtocolError::INVALID_COMPRESSED_DATA)
    );
}

#[test]
fn reserved_opcodes() {
    for op in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        assert_eq!(
            error_of(&raw(true, 0, op, b"")),
            ProtocolError::RESERVED_OPCODE
        );
    }
}

#[test]
fn control_frame_rules() {
    assert_eq!(
        error_of(&raw(false, 0, 9, b"")),
        ProtocolError::CONTROL_FRAGMENTED
    );
    assert_eq!(
        error_of(&frame(OpCode::Ping, &[0; 126])),
        ProtocolError::CONTROL_TOO_LONG
    );
    let ok = decode_all(&mut server(), &frame(OpCode::Pong, &[1; 125]));
    assert_eq!(ok, Ok(vec![Frame::Pong(vec![1; 125].into())]));
}

#[test]
fn masking_by_role() {
    let mut unmasked = Vec::new();
    encode_frame(&mut unmasked, OpCode::Text, b"hi", None);
    assert_eq!(error_of(&unmasked), ProtocolError::UNMASKED_CLIENT_FRAME);
    let mut client = Decoder::new(DecoderConfig::new(Role::Client));
    let err = decode_all(&mut client, &frame(OpCode::Text, b"hi"));
    assert_eq!(err, Err(ProtocolError::MASKED_SERVER_FRAME));
}

#[test]
fn continuation_rules() {
    let cont = raw(true, 0, 0, b"x");
    assert_eq!(error_of(&cont), ProtocolError::UNEXPECTED_CONTINUATION);
    let wire = [raw(false, 0, 1, b"a"), frame(OpCode::Text, b"b")].concat();
    assert_eq!(error_of(&wire), ProtocolError::EXPECTED_CONTINUATION);
    let wire = [raw(false, 0, 2, b"a"), raw(false, 0, 2, b"b")].concat();
    assert_eq!(error_of(&wire), ProtocolError::EXPECTED_CONTINUATION);
}

#[test]
fn size_limits() {
    // Payload bytes only here; the per-fragment floor has its own test.
    let config = DecoderConfig::default()
        .with_max_frame_size(10)
        .with_max_message_size(15)
        .with_fragment_cost(0);
    let mut d = Decoder::new(config.clone());
    assert_eq!(
        decode_all(&mut d, &frame(OpCode::Binary, &[0; 11])),
        Err(ProtocolError::FRAME_TOO_BIG)
    );
    let wire = [raw(false, 0, 2, &[0; 10]), raw(true, 0, 0, &[0; 6])].concat();
    let mut d = Decoder::new(config.clone());
    assert_eq!(
        decode_all(&mut d, &wire),
        Err(ProtocolError::MESSAGE_TOO_BIG)
    );
    let wire = [raw(false, 0, 2, &[0; 10]), raw(true, 0, 0, &[0; 5])].concat();
    let mut d = Decoder::new(config);
    assert_eq!(
        decode_all(&mut d, &wire),
        Ok(vec![Frame::Binary(vec![0; 15].into())])
    );
}

/// `count` masked fragments of `size` bytes each, as one binary message.
fn fragments(count: usize, size: usize) -> Vec<u8> {
    let payload = vec![0x61; size];
    let mut wire = Vec::new();
    for i in 0..count {
        let opcode = if i == 0 { 2 } else { 0 };
        wire.extend(raw(i + 1 == count, 0, opcode, &payload));
    }
    wire
}

#[test]
fn each_fragment_costs_at_least_fragment_cost() {
    // Autobahn 9.3.1/9.4.1: 4 MiB in 65,536 fragments of 64 bytes fits a 4 MiB limit.
    let config = DecoderConfig::default().with_max_message_size(4 << 20);
    let frames = decode_all(&mut Decoder::new(config.clone()), &fragments(65_536, 64));
    assert_eq!(frames.map(|f| f.len()), Ok(1));
    // 100,000 one-byte fragments (100 KB of payload) cost 6.4 MB: refused.
    let mut d = Decoder::new(config.clone());
    assert_eq!(
        decode_all(&mut d, &fragments(100_000, 1)),
        Err(ProtocolError::MESSAGE_TOO_BIG)
    );
    // Empty fragments are not free either: refused after max / 64 of them.
    let config = config.with_max_message_size(64 * 1000);
    let mut d = Decoder::new(config.clone());
    assert_eq!(
        decode_all(&mut d, &fragments(1000, 0)),
        Ok(vec![Frame::Binary(Bytes::new())])
    );
    let mut d = Decoder::new(config);
    assert_eq!(
        decode_all(&mut d, &fragments(1001, 0)),
        Err(ProtocolError::MESSAGE_TOO_BIG)
    );
    // The cost resets with each message; an unfragmented message costs its length.
    let config = DecoderConfig::default().with_max_message_size(200);
    let mut d = Decoder::new(config);
    let wire = [
        fragments(3, 10),
        fragments(3, 10),
        frame(OpCode::Binary, &[1; 5]),
    ]
    .concat();
    assert_eq!(decode_all(&mut d, &wire).map(|f| f.len()), Ok(3));
}

#[test]
fn oversized_message_refused_from_header_alone() {
    let mut d = Decoder::new(DecoderConfig::default().with_max_message_size(1000));
    let mut header = Vec::new();
    encode_header(&mut header, true, OpCode::Binary, Some(KEY), 1001);
    assert_eq!(
        decode_all(&mut d, &header),
        Err(ProtocolError::MESSAGE_TOO_BIG)
    );
    assert!(d.data.capacity() == 0);
}

#[test]
fn declared_length_is_not_trusted_for_allocation() {
    let mut d = server();
    let mut wire = Vec::new();
    encode_header(&mut wire, true, OpCode::Binary, Some(KEY), 16 << 20);
    wire.push(0);
    assert_eq!(decode_all(&mut d, &wire), Ok(vec![]));
    assert!(d.in_progress());
    assert!(d.data.capacity() <= RESERVE_AHEAD);
}

#[test]
fn invalid_utf8() {
    assert_eq!(
        error_of(&frame(OpCode::Text, b"a\xffb")),
        ProtocolError::INVALID_UTF8
    );
    // A code point cut by the end of the message.
    let wire = [raw(false, 0, 1, b"a"), raw(true, 0, 0, b"\xe2\x82")].concat();
    assert_eq!(error_of(&wire), ProtocolError::INVALID_UTF8);
    // Split across fragments is fine.
    let wire = [
        raw(false, 0, 1, b"\xe2"),
        raw(false, 0, 0, b"\x82"),
        raw(true, 0, 0, b"\xac"),
    ]
    .concat();
    assert_eq!(
        decode_all(&mut server(), &wire),
        Ok(vec![Frame::Text("€".into())])
    );
}

/// Text messages of `SIMD_UTF8_FROM` bytes and more take the SIMD check: the same verdicts
/// as below it, at every size around the threshold, whole or fragmented, valid (multi-byte
/// code points across the SIMD blocks) or not (a bad byte at the end, a code point cut at
/// the end).
#[test]
fn large_text_is_checked_as_small_text_is() {
    for len in [
        SIMD_UTF8_FROM - 1,
        SIMD_UTF8_FROM,
        SIMD_UTF8_FROM + 1,
        4096,
        70_000,
    ] {
        let text: String = "a€ü𝄞".chars().cycle().take(len).collect();
        assert_eq!(
            decode_all(&mut server(), &frame(OpCode::Text, text.as_bytes())),
            Ok(vec![Frame::Text(text.clone())]),
            "{len} chars"
        );
        // The same in two fragments, split inside a code point (the last byte of a "𝄞").
        let split = text.find('𝄞').map_or(1, |at| at + 3);
        let (head, tail) = text.as_bytes().split_at(split);
        let wire = [raw(false, 0, 1, head), raw(true, 0, 0, tail)].concat();
        assert_eq!(
            decode_all(&mut server(), &wire),
            Ok(vec![Frame::Text(text.clone())]),
            "{len} chars in two fragments"
        );
        let mut bad = text.clone().into_bytes();
        bad.push(0xff);
        assert_eq!(
            error_of(&frame(OpCode::Text, &bad)),
            ProtocolError::INVALID_UTF8
        );
        let mut cut = text.into_bytes();
        cut.extend_from_slice(b"\xe2\x82");
        assert_eq!(
            error_of(&frame(OpCode::Text, &cut)),
            ProtocolError::INVALID_UTF8
        );
    }
}

#[test]
fn invalid_utf8_fails_fast_mid_frame() {
    let mut wire = frame(
        OpCode::Text,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80 and more",
    );
    let mut d = server();
    let mut out = Vec::new();
    // Header (6 bytes) plus the payload up to and including \xed: fine.
    assert_eq!(d.decode(&mut wire[..6 + 12], &mut out), Ok(18));
    // The next byte (\xa0) makes it a surrogate: error before the frame ends.
    assert_eq!(
        d.decode(&mut wire[18..19], &mut out),
        Err(ProtocolError::INVALID_UTF8)
    );
    assert!(out.is_empty());
}

#[test]
fn close_frames() {
    let mut wire = Vec::new();
    encode_close(&mut wire, 1000, "bye", Some(KEY));
    wire.extend(frame(OpCode::Close, b""));
    let expected = vec![Frame::Close(Some((1000, "bye".into()))), Frame::Close(None)];
    assert_eq!(decode_all(&mut server(), &wire), Ok(expected));
    assert_eq!(
        error_of(&frame(OpCode::Close, b"\x03")),
        ProtocolError::CLOSE_PAYLOAD_TOO_SHORT
    );
    assert_eq!(
        error_of(&frame(OpCode::Close, b"\x03\xed")),
        ProtocolError::INVALID_CLOSE_CODE
    );
    assert_eq!(
        error_of(&frame(OpCode::Close, b"\x03\xe8\xff")),
        ProtocolError::INVALID_CLOSE_REASON
    );
}

#[test]
fn control_frames_interleave_with_fragments() {
    let wire = [
        raw(false, 0, 1, b"fr"),
        frame(OpCode::Ping, b"p1"),
        raw(false, 0, 0, b"ag"),
        frame(OpCode::Pong, b"p2"),
        raw(true, 0, 0, b"ment"),
    ]
    .concat();
    let expected = vec![
        Frame::Ping("p1".into()),
        Frame::Pong("p2".into()),
        Frame::Text("fragment".into()),
    ];
    // Whole, and one byte at a time.
    assert_eq!(decode_all(&mut server(), &wire), Ok(expected.clone()));
    let mut d = server();
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for &b in &wire {
        pending.push(b);
        let used = d.decode(&mut pending, &mut out).expect("valid");
        pending.drain(..used);
    }
    assert!(pending.is_empty() && !d.in_progress());
    assert_eq!(out, expected);
}

#[test]
fn incomplete_header_is_left_unconsumed() {
    let mut wire = [
        frame(OpCode::Binary, b"abc"),
        frame(OpCode::Binary, &[7; 300]),
    ]
    .concat();
    let mut d = server();
    let mut out = Vec::new();
    // The first frame (9 bytes) plus 3 bytes of the second's 8-byte header.
    assert_eq!(d.decode(&mut wire[..12], &mut out), Ok(9));
    assert_eq!(d.decode(&mut wire[9..], &mut out), Ok(wire.len() - 9));
    assert_eq!(
        out,
        [
            Frame::Binary("abc".into()),
            Frame::Binary(vec![7; 300].into())
        ]
    );
}

#[test]
fn poisoned_after_error() {
    let mut d = server();
    let mut out = Vec::new();
    let err = d.decode(&mut raw(true, 0, 3, b""), &mut out);
    assert_eq!(err, Err(ProtocolError::RESERVED_OPCODE));
    assert_eq!(d.decode(&mut frame(OpCode::Text, b"ok"), &mut out), err);
    assert!(out.is_empty());
}

#[test]
fn empty_frames_and_input() {
    let mut d = server();
    assert_eq!(decode_all(&mut d, &[]), Ok(vec![]));
    let wire = [
        raw(false, 0, 2, b""),
        raw(true, 0, 0, b""),
        frame(OpCode::Text, b""),
    ]
    .concat();
    let expected = vec![Frame::Binary(Bytes::new()), Frame::Text(String::new())];
    assert_eq!(decode_all(&mut d, &wire), Ok(expected));
}

#[test]
fn reserve_grows_geometrically_and_caps() {
    let mut buf = Vec::new();
    reserve(&mut buf, 10, 1 << 30, usize::MAX);
    assert_eq!(buf.capacity(), RESERVE_AHEAD);
    buf.resize(RESERVE_AHEAD, 0);
    reserve(&mut buf, 10, 1 << 30, usize::MAX);
    assert!(buf.capacity() >= 2 * RESERVE_AHEAD);
    let mut buf = Vec::new();
    reserve(&mut buf, 3, 5, 5);
    assert_eq!(buf.capacity(), 5);
}
