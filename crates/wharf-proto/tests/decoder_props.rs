//! Property tests of the decoder: round trips from any split of the stream,
//! no panics on arbitrary bytes, and fail-fast UTF-8 validation.

use proptest::prelude::*;
use wharf_proto::{
    Decoder, DecoderConfig, DeflateConfig, DeflateParams, Frame, MAX_HEADER_LEN, OpCode,
    ProtocolError, Role, encode_frame, encode_header, mask_copy,
};

/// A message as the test generates it.
#[derive(Debug, Clone)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

impl Msg {
    fn expected(&self) -> Frame {
        match self {
            Msg::Text(s) => Frame::Text(s.clone()),
            Msg::Binary(b) => Frame::Binary(b.clone().into()),
            Msg::Ping(b) => Frame::Ping(b.clone().into()),
            Msg::Pong(b) => Frame::Pong(b.clone().into()),
        }
    }
}

fn msg() -> impl Strategy<Value = Msg> {
    let chars = prop::sample::select(vec!['a', 'z', ' ', 'é', 'ß', '€', '中', '𝄞', '😀']);
    prop_oneof![
        prop::collection::vec(chars, 0..200).prop_map(|c| Msg::Text(c.into_iter().collect())),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Msg::Binary),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Msg::Ping),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Msg::Pong),
    ]
}

/// Appends one masked frame with an explicit FIN bit.
fn push_frame(wire: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    encode_header(wire, fin, opcode, Some(mask), payload.len());
    mask_copy(wire, payload, mask, 0);
}

/// Encodes a message masked, data messages cut in fragments of `frag` bytes
/// (0 = unfragmented), possibly in the middle of a UTF-8 sequence.
fn encode(wire: &mut Vec<u8>, msg: &Msg, frag: usize, mask: [u8; 4]) {
    let (opcode, payload) = match msg {
        Msg::Text(s) => (OpCode::Text, s.as_bytes()),
        Msg::Binary(b) => (OpCode::Binary, b.as_slice()),
        Msg::Ping(b) => return encode_frame(wire, OpCode::Ping, b, Some(mask)),
        Msg::Pong(b) => return encode_frame(wire, OpCode::Pong, b, Some(mask)),
    };
    if frag == 0 || payload.len() <= frag {
        return encode_frame(wire, opcode, payload, Some(mask));
    }
    let pieces: Vec<&[u8]> = payload.chunks(frag).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        push_frame(wire, i + 1 == pieces.len(), op, piece, mask);
    }
}

/// Feeds `wire` in chunks of the given sizes (then the rest), keeping the
/// unconsumed bytes as a caller must; returns the frames and how many bytes
/// were left unconsumed at the end.
fn feed_raw(
    decoder: &mut Decoder,
    wire: &[u8],
    sizes: &[usize],
) -> Result<(Vec<Frame>, usize), ProtocolError> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut rest = wire;
    let mut sizes = sizes.iter().copied();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        pending.extend_from_slice(chunk);
        let used = decoder.decode(&mut pending, &mut out)?;
        pending.drain(..used);
        assert!(
            pending.len() < MAX_HEADER_LEN,
            "kept {} bytes",
            pending.len()
        );
    }
    Ok((out, pending.len()))
}

/// [`feed_raw`] of a stream of whole frames: nothing may be left over.
fn feed(decoder: &mut Decoder, wire: &[u8], sizes: &[usize]) -> Result<Vec<Frame>, ProtocolError> {
    let (out, left) = feed_raw(decoder, wire, sizes)?;
    assert_eq!(left, 0, "a whole stream leaves no header behind");
    Ok(out)
}

fn server() -> Decoder {
    Decoder::new(DecoderConfig::new(Role::Server))
}

/// The length of the shortest prefix of `bytes` that is definitely not UTF-8.
fn detectable_at(bytes: &[u8]) -> Option<usize> {
    (1..=bytes.len())
        .find(|&k| std::str::from_utf8(&bytes[..k]).is_err_and(|e| e.error_len().is_some()))
}

const BAD: &[&[u8]] = &[
    b"\xff",
    b"\x80",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82\x28",
    b"\xf0\x28",
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn messages_survive_any_split(
        msgs in prop::collection::vec((msg(), 0usize..40, any::<[u8; 4]>()), 0..8),
        sizes in prop::collection::vec(1usize..40, 0..60),
    ) {
        let mut wire = Vec::new();
        for (m, frag, mask) in &msgs {
            encode(&mut wire, m, *frag, *mask);
        }
        let expected: Vec<Frame> = msgs.iter().map(|(m, _, _)| m.expected()).collect();
        let mut decoder = server();
        prop_assert_eq!(feed(&mut decoder, &wire, &sizes), Ok(expected));
        prop_assert!(!decoder.in_progress());
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        sizes in prop::collection::vec(1usize..50, 0..20),
        client in any::<bool>(),
        small in any::<bool>(),
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let mut config = DecoderConfig::new(role);
        if small {
            config = config.with_max_frame_size(64).with_max_message_size(100);
        }
        let mut decoder = Decoder::new(config);
        if small {
            // With permessage-deflate on, RSV1 frames are inflated: garbage must fail cleanly.
            let params = DeflateParams::negotiate(["permessage-deflate"], &DeflateConfig::default());
            decoder.enable_deflate(&params.expect("accepted"));
        }
        let _ = feed_raw(&mut decoder, &bytes, &sizes);
    }

    #[test]
    fn mutated_streams_never_panic(
        msgs in prop::collection::vec((msg(), 0usize..20, any::<[u8; 4]>()), 1..5),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        sizes in prop::collection::vec(1usize..30, 0..20),
    ) {
        let mut wire = Vec::new();
        for (m, frag, mask) in &msgs {
            encode(&mut wire, m, *frag, *mask);
        }
        for (at, xor) in &flips {
            let i = at.index(wire.len());
            wire[i] ^= xor;
        }
        let _ = feed_raw(&mut server(), &wire, &sizes);
    }

    #[test]
    fn text_split_in_code_points_decodes(
        text in "[a€𝄞é中]{1,60}",
        frag in 1usize..7,
        sizes in prop::collection::vec(1usize..9, 0..80),
        mask in any::<[u8; 4]>(),
    ) {
        let mut wire = Vec::new();
        encode(&mut wire, &Msg::Text(text.clone()), frag, mask);
        let got = feed(&mut server(), &wire, &sizes);
        prop_assert_eq!(got, Ok(vec![Frame::Text(text)]));
    }

    #[test]
    fn invalid_utf8_fails_when_the_bad_byte_arrives(
        prefix in "[a€𝄞é]{0,20}",
        bad in prop::sample::select(BAD),
        first_fragment in any::<bool>(),
        sizes in prop::collection::vec(1usize..9, 0..40),
        mask in any::<[u8; 4]>(),
    ) {
        let mut payload = prefix.into_bytes();
        payload.extend_from_slice(bad);
        let bad_at = detectable_at(&payload).expect("payload is invalid");
        payload.extend_from_slice(b"... the rest, never sent");
        let mut wire = Vec::new();
        if first_fragment {
            push_frame(&mut wire, false, OpCode::Text, "ok €".as_bytes(), mask);
            push_frame(&mut wire, true, OpCode::Continuation, &payload, mask);
        } else {
            push_frame(&mut wire, true, OpCode::Text, &payload, mask);
        }
        let cut = wire.len() - payload.len() + bad_at;
        let mut decoder = server();
        // Everything before the bad byte decodes without error...
        prop_assert_eq!(feed(&mut decoder, &wire[..cut - 1], &sizes), Ok(vec![]));
        // ...and the bad byte itself fails, though the frame is incomplete.
        let mut out = Vec::new();
        prop_assert_eq!(decoder.decode(&mut wire[cut - 1..cut], &mut out), Err(ProtocolError::INVALID_UTF8));
    }
}
