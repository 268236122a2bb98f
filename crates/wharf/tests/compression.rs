//! permessage-deflate (RFC 7692) over real sockets: negotiation in the 101, compressed
//! messages both ways (whole, fragmented, with and without context takeover), fan-out to
//! compressing and plain members, and hostile input: a compression bomb (1009, the server
//! unharmed), bad DEFLATE data (1007), RSV1 without the extension (1002).

mod common;

use common::*;
use wharf::{Compression, Echo, Router, Scope, ServerConfig};
use wharf_proto::{DeflateParams, Deflater, Inflater, OpCode, encode_compressed_frame};

both_doors! {
    the_101_carries_the_agreed_parameters,
    compressed_echo_both_ways,
    context_takeover_when_configured,
    fanout_reaches_compressing_and_plain_members,
    a_compression_bomb_is_closed_with_1009_and_harms_no_one,
    bad_deflate_data_is_1007_and_rsv1_without_the_extension_is_1002,
}

/// What Chromium and Firefox offer.
const BROWSER_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn compressing(compression: Compression) -> ServerConfig {
    ws_server().with_compression(compression)
}

/// Connects with `extra` headers and returns the socket and the negotiated parameters.
async fn connect_deflate(
    addr: std::net::SocketAddr,
    extra: &str,
) -> (RawWs, Option<DeflateParams>) {
    let ws = RawWs::connect_with(addr, upgrade_request("/echo", extra).as_bytes()).await;
    let params = ws.response.header("sec-websocket-extensions").map(|value| {
        DeflateParams::from_response(value).expect("a valid permessage-deflate response")
    });
    (ws, params)
}

/// A client-side compressed frame (masked, RSV1).
fn compressed_frame(deflater: &mut Deflater, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    deflater.compress(payload, &mut body);
    let mut out = Vec::new();
    encode_compressed_frame(&mut out, opcode, &body, Some(MASK));
    out
}

/// Reads one whole message, inflating it when RSV1 is set; returns (compressed on the wire, bytes).
async fn read_message(ws: &mut RawWs, inflater: &mut Inflater) -> (bool, Vec<u8>) {
    let frame = ws.read_frame().await;
    assert!(frame.fin, "wharf sends whole messages: {frame:?}");
    if frame.rsv1 {
        (
            true,
            inflater
                .inflate(&frame.payload, 64 << 20)
                .expect("valid DEFLATE from the server"),
        )
    } else {
        (false, frame.payload)
    }
}

async fn the_101_carries_the_agreed_parameters() {
    let server = start_ws_with(
        compressing(Compression::on()),
        Router::new().route("/echo", Echo),
    )
    .await;
    let (_, params) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    let params = params.expect("negotiated");
    assert!(params.server_no_context_takeover && params.client_no_context_takeover);

    // An offer with an unknown parameter is declined: the connection opens uncompressed.
    let bad = "Sec-WebSocket-Extensions: permessage-deflate; hello=1\r\n";
    let (_, params) = connect_deflate(server.addr(), bad).await;
    assert_eq!(params, None);
    // The second of two offers is taken when the first is bad; a window is honoured.
    let two = "Sec-WebSocket-Extensions: permessage-deflate; x, permessage-deflate; server_max_window_bits=10\r\n";
    let (_, params) = connect_deflate(server.addr(), two).await;
    assert_eq!(params.map(|p| p.server_max_window_bits), Some(10));

    // Compression off (the default): the offer is ignored.
    let plain = start_ws_with(ws_server(), Router::new().route("/echo", Echo)).await;
    let (_, params) = connect_deflate(plain.addr(), BROWSER_OFFER).await;
    assert_eq!(params, None);
}

async fn compressed_echo_both_ways() {
    let server = start_ws_with(
        compressing(Compression::on()),
        Router::new().route("/echo", Echo),
    )
    .await;
    let (mut ws, params) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    let params = params.expect("negotiated");
    let mut deflater = Deflater::new(15, 6, params.client_no_context_takeover);
    let mut inflater = Inflater::new(params.server_no_context_takeover);

    let text = "permessage-deflate round trip, é中𝄞 ".repeat(40);
    ws.write(&compressed_frame(
        &mut deflater,
        OpCode::Text,
        text.as_bytes(),
    ))
    .await;
    let (on_wire, echoed) = read_message(&mut ws, &mut inflater).await;
    assert!(on_wire, "a long message comes back compressed");
    assert_eq!(echoed, text.as_bytes());

    // Fragmented: RSV1 on the first frame only.
    let mut body = Vec::new();
    deflater.compress(text.as_bytes(), &mut body);
    let (a, b) = body.split_at(body.len() / 2);
    let mut first = masked_frame(false, OpCode::Binary, a);
    first[0] |= 0x40;
    ws.write(&[first, masked_frame(true, OpCode::Continuation, b)].concat())
        .await;
    let frame = ws.read_frame().await;
    assert_eq!((frame.rsv1, frame.opcode), (true, 0x2));
    assert_eq!(
        inflater.inflate(&frame.payload, 1 << 20).expect("inflates"),
        text.as_bytes()
    );

    // Under the threshold (128 bytes), and uncompressed input: plain frames both ways.
    ws.send(OpCode::Text, b"short").await;
    assert_eq!(
        read_message(&mut ws, &mut inflater).await,
        (false, b"short".to_vec())
    );
    ws.write(&compressed_frame(&mut deflater, OpCode::Text, b"tiny"))
        .await;
    assert_eq!(
        read_message(&mut ws, &mut inflater).await,
        (false, b"tiny".to_vec())
    );
    ws.send_close(1000, "").await;
    assert_eq!(ws.read_close_no_reply().await.0, 1000);
}

async fn context_takeover_when_configured() {
    let mut compression = Compression::on();
    compression.server_no_context_takeover = false;
    compression.client_no_context_takeover = false;
    let server = start_ws_with(compressing(compression), Router::new().route("/echo", Echo)).await;
    let (mut ws, params) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    let params = params.expect("negotiated");
    assert!(!params.server_no_context_takeover && !params.client_no_context_takeover);
    let mut deflater = Deflater::new(15, 6, false);
    let mut inflater = Inflater::new(false);
    let text = r#"{"type":"tick","symbol":"WHRF","price":101.25,"venue":"loopback"}"#.repeat(3);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        ws.write(&compressed_frame(
            &mut deflater,
            OpCode::Text,
            text.as_bytes(),
        ))
        .await;
        let frame = ws.read_frame().await;
        assert!(frame.rsv1);
        sizes.push(frame.payload.len());
        assert_eq!(
            inflater.inflate(&frame.payload, 1 << 20).expect("inflates"),
            text.as_bytes()
        );
    }
    // The server's compressor remembers: the repeats cost a fraction of the first.
    assert!(
        sizes[1] * 3 < sizes[0] && sizes[2] * 3 < sizes[0],
        "{sizes:?}"
    );
}

async fn fanout_reaches_compressing_and_plain_members() {
    let server = start_ws_with(
        compressing(Compression::on()),
        Router::new().route("/echo", Echo),
    )
    .await;
    let (mut deflating, params) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    assert!(params.is_some());
    let (mut plain, params) = connect_deflate(server.addr(), "").await;
    assert_eq!(params, None);
    let text = "to every member of the server, ".repeat(20);
    eventually("both connections registered", || server.sender.count() == 2).await;
    assert_eq!(server.sender.broadcast(text.clone(), Scope::All), 2);
    let mut inflater = Inflater::new(true);
    assert_eq!(
        read_message(&mut deflating, &mut inflater).await,
        (true, text.clone().into_bytes())
    );
    assert_eq!(
        read_message(&mut plain, &mut inflater).await,
        (false, text.clone().into_bytes())
    );

    // With context takeover each member's own compressor takes the fan-out message in turn.
    let mut takeover = Compression::on();
    takeover.server_no_context_takeover = false;
    let server = start_ws_with(compressing(takeover), Router::new().route("/echo", Echo)).await;
    let (mut ws, params) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    assert_eq!(params.map(|p| p.server_no_context_takeover), Some(false));
    eventually("the connection registered", || server.sender.count() == 1).await;
    let mut inflater = Inflater::new(false);
    let mut sizes = Vec::new();
    for _ in 0..2 {
        assert_eq!(server.sender.broadcast(text.clone(), Scope::All), 1);
        let frame = ws.read_frame().await;
        sizes.push(frame.payload.len());
        assert_eq!(
            inflater.inflate(&frame.payload, 1 << 20).expect("inflates"),
            text.as_bytes()
        );
    }
    assert!(sizes[1] * 2 < sizes[0], "{sizes:?}");
}

async fn a_compression_bomb_is_closed_with_1009_and_harms_no_one() {
    let mut config = compressing(Compression::on());
    config.limits.max_message_size = 1 << 20;
    let server = start_ws_with(config, Router::new().route("/echo", Echo)).await;
    let (mut bystander, _) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    let (mut ws, _) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    // 64 MiB of zeros deflate to about 64 KiB: well under the limit on the wire.
    let mut deflater = Deflater::new(15, 9, true);
    let bomb = compressed_frame(&mut deflater, OpCode::Binary, &vec![0u8; 64 << 20]);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    // Memory, not only the close code: the server runs in this process (nextest gives each
    // test a process of its own), so the peak resident set from here on is what inflating
    // the bomb cost. A decoder that inflated it whole, or in 16 MiB steps, before checking
    // the limit would take 16 to 64 MiB; the cap keeps it near the 1 MiB limit.
    let before = rss::reset_peak();
    ws.write(&bomb).await;
    assert_eq!(ws.read_close().await, (1009, "message too big".to_owned()));
    let grew = rss::peak().saturating_sub(before);
    assert!(
        grew < 6 << 20,
        "inflating a bomb against a 1 MiB limit raised the peak RSS by {grew} bytes"
    );

    // Exactly the limit inflated is fine.
    let (mut ok, _) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    ok.write(&compressed_frame(
        &mut deflater,
        OpCode::Binary,
        &vec![1u8; 1 << 20],
    ))
    .await;
    let (_, echoed) = read_message(&mut ok, &mut Inflater::new(true)).await;
    assert_eq!(echoed.len(), 1 << 20);

    bystander.send(OpCode::Text, b"still here").await;
    assert_eq!(bystander.read_frame().await.payload, b"still here");
}

async fn bad_deflate_data_is_1007_and_rsv1_without_the_extension_is_1002() {
    let server = start_ws_with(
        compressing(Compression::on()),
        Router::new().route("/echo", Echo),
    )
    .await;
    let (mut ws, _) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    let mut garbage = Vec::new();
    encode_compressed_frame(&mut garbage, OpCode::Text, &[0xff; 16], Some(MASK));
    ws.write(&garbage).await;
    assert_eq!(
        ws.read_close().await,
        (1007, "invalid compressed data".to_owned())
    );

    // Valid DEFLATE, but the extension was not negotiated on this connection.
    let (mut ws, params) = connect_deflate(server.addr(), "").await;
    assert_eq!(params, None);
    let mut deflater = Deflater::new(15, 6, true);
    ws.write(&compressed_frame(&mut deflater, OpCode::Text, b"hello"))
        .await;
    assert_eq!(ws.read_close().await.0, 1002);

    // Compressed text that inflates to invalid UTF-8.
    let (mut ws, _) = connect_deflate(server.addr(), BROWSER_OFFER).await;
    ws.write(&compressed_frame(
        &mut deflater,
        OpCode::Text,
        &[b'a', 0xc3, 0x28],
    ))
    .await;
    assert_eq!(ws.read_close().await.0, 1007);
}

/// This process's resident memory, from `/proc/self/status` (Linux).
mod rss {
    fn field(name: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"));
        kib * 1024
    }

    /// Resets the peak (`VmHWM`) to the current resident set and returns that, in bytes.
    pub(crate) fn reset_peak() -> u64 {
        std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
        field("VmRSS:")
    }

    /// The peak resident set since the last [`reset_peak`], in bytes.
    pub(crate) fn peak() -> u64 {
        field("VmHWM:")
    }
}
