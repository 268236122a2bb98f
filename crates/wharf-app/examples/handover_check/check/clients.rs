//! The three kinds of client, each a plain WebSocket that reports what it saw (never the
//! server's counters):
//!
//! - an **echo** client on `/echo` sends `1`, `2`, … at its own pace and waits for exactly
//!   each one back;
//! - a **subscriber** on `/wss/rooms` (the rooms protocol, `docs/protocol.md`) follows one
//!   history room and keeps every pushed publication's number, for the verdict;
//! - a **TLS** client on the `tls` server's `/echo` expects to be closed at each upgrade
//!   (TLS cannot move) and connects again, noting each close's code, reason and moment.
//!
//! None of them reconnects a plain connection: a close there is a failure to report.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::Error;

/// A plain connection.
pub type Plain = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a reply (an echo, a subscribe) may take before it counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a plain connection to `path` of `addr`, offering `protocol` if any.
pub async fn open(addr: SocketAddr, path: &str, protocol: Option<&str>) -> Result<Plain, Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocol)?);
    }
    let connecting = tokio_tungstenite::connect_async(request);
    let (ws, _) = tokio::time::timeout(REPLY_TIMEOUT, connecting)
        .await
        .map_err(|_| format!("no handshake with {path} within {REPLY_TIMEOUT:?}"))??;
    Ok(ws)
}

/// What ended a connection, as a client sees it: the close frame's code and reason, or the
/// transport's error.
fn ending(message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> String {
    match message {
        Some(Ok(Message::Close(Some(frame)))) => {
            format!("{} {}", u16::from(frame.code), frame.reason)
        }
        Some(Ok(Message::Close(None))) => "close without a code".into(),
        Some(Err(e)) => format!("error: {e}"),
        None => "end of stream without a close frame".into(),
        Some(Ok(other)) => format!("unexpected {other:?}"),
    }
}

/// What one echo client saw.
#[derive(Debug, Clone, Default)]
pub struct EchoRecord {
    /// Round trips completed.
    pub trips: u64,
    /// Messages whose echo never came (within the reply timeout).
    pub lost: u64,
    /// Echoes of a message that had come back already.
    pub duplicated: u64,
    /// Echoes that came after a later message's (or of a message not sent yet).
    pub out_of_order: u64,
    /// How the connection ended before the check stopped it, if it did.
    pub closed: Option<String>,
    /// The slowest round trip.
    pub slowest: Duration,
}

/// Sends `1`, `2`, … every `interval` (the first after `phase`) and waits for exactly each
/// one back, until `stop`.
pub async fn echo(
    mut ws: Plain,
    interval: Duration,
    phase: Duration,
    mut stop: watch::Receiver<bool>,
) -> EchoRecord {
    let mut record = EchoRecord::default();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Numbers whose echo timed out: one arriving later is late, not a duplicate.
    let mut overdue = Vec::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        n += 1;
        let sent = Instant::now();
        if let Err(e) = ws.send(Message::text(n.to_string())).await {
            record.closed = Some(format!("error: {e}"));
            return record;
        }
        let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            let reply = match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(reply) => reply,
                Err(_) => {
                    record.lost += 1;
                    overdue.push(n);
                    break;
                }
            };
            let text = match reply {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => {
                    record.closed = Some(ending(other));
                    return record;
                }
            };
            match text.as_str().parse::<u64>() {
                Ok(m) if m == n => {
                    record.trips += 1;
                    record.slowest = record.slowest.max(sent.elapsed());
                    break;
                }
                Ok(m) if m < n && !overdue.contains(&m) => record.duplicated += 1,
                Ok(m) => {
                    overdue.retain(|&o| o != m);
                    record.out_of_order += 1;
                }
                Err(_) => record.out_of_order += 1,
            }
        }
    }
    let _ = ws.close(None).await;
    record
}

/// A push or a reply of the rooms protocol, the fields the check reads.
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    position: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
}

/// Opens `/wss/rooms` and subscribes to `room` (from now on); returns once the reply came.
pub async fn subscribe(addr: SocketAddr, room: &str) -> Result<Plain, Error> {
    let mut ws = open(addr, "/wss/rooms", Some("wharf.rooms.v1")).await?;
    let command = serde_json::json!({"id": 1, "op": "subscribe", "room": room}).to_string();
    ws.send(Message::text(command)).await?;
    tokio::time::timeout(REPLY_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
                    match (frame.id, frame.error) {
                        (Some(1), None) => return Ok(()),
                        (Some(_), Some(error)) => {
                            return Err(format!("subscribe to {room}: {error}").into());
                        }
                        // Nothing is published before every subscriber is in.
                        _ => continue,
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return Err(format!("subscribe to {room}: {}", ending(other)).into()),
            }
        }
    })
    .await
    .map_err(|_| format!("no reply to subscribe {room} within {REPLY_TIMEOUT:?}"))?
    .map(|()| ws)
}

/// What one subscriber saw.
#[derive(Debug, Clone, Default)]
pub struct SubscriberRecord {
    /// The room's index.
    pub room: usize,
    /// The number of every publication pushed, in arrival order.
    pub seqs: Vec<u32>,
    /// Pushes that were not a publication of a number (counted as out of order).
    pub garbled: u64,
    /// How many times the position's epoch changed (a successor without the room's
    /// history starts a new one; the numbers tell loss, not the epoch).
    pub epoch_changes: u32,
    /// How the connection ended before the check stopped it, if it did.
    pub closed: Option<String>,
    /// The largest gap between two consecutive pushes.
    pub largest_gap: Duration,
    /// The latest push, from the publication's due time to its arrival.
    pub latest: Duration,
}

/// Records every push of the subscribed room until `stop`; `count` follows how many.
/// `origin` is the publisher's (see [`super::publisher`]).
pub async fn follow(
    origin: Instant,
    mut ws: Plain,
    room: usize,
    count: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
) -> SubscriberRecord {
    let mut record = SubscriberRecord {
        room,
        ..SubscriberRecord::default()
    };
    let mut last: Option<Instant> = None;
    let mut epoch = String::new();
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            _ = stop.changed() => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => {
                record.closed = Some(ending(other));
                return record;
            }
        };
        let now = Instant::now();
        if let Some(last) = last {
            record.largest_gap = record.largest_gap.max(now - last);
        }
        last = Some(now);
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else {
            record.garbled += 1;
            continue;
        };
        let Some((position, seq, due)) = frame.position.zip(frame.text).and_then(|(p, t)| {
            let (seq, due) = t.split_once(' ')?;
            Some((p, seq.parse().ok()?, due.parse().ok()?))
        }) else {
            record.garbled += 1;
            continue;
        };
        let due = Duration::from_micros(due);
        record.latest = record
            .latest
            .max(now.duration_since(origin).saturating_sub(due));
        let this_epoch = position.split(':').next().unwrap_or_default();
        if this_epoch != epoch {
            if !epoch.is_empty() {
                record.epoch_changes += 1;
            }
            this_epoch.clone_into(&mut epoch);
        }
        record.seqs.push(seq);
        count.fetch_add(1, Ordering::Relaxed);
    }
    let _ = ws.close(None).await;
    record
}

/// One close a TLS client got.
#[derive(Debug, Clone)]
pub struct TlsClose {
    /// Its code (0: none, the connection just ended).
    pub code: u16,
    /// Its reason.
    pub reason: String,
    /// When it came.
    pub at: Instant,
}

/// What one TLS client saw.
#[derive(Debug, Clone, Default)]
pub struct TlsRecord {
    /// Each close, in order.
    pub closes: Vec<TlsClose>,
    /// Connections or first echoes that failed (with why).
    pub failures: Vec<String>,
}

/// A TLS connector trusting only the CA at `ca_pem`.
pub fn tls_connector(ca_pem: &std::path::Path) -> Result<tokio_rustls::TlsConnector, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

type Tls = WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A `wss://localhost:PORT/echo` connection that has echoed once.
async fn open_tls(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Result<Tls, Error> {
    let opening = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let stream = connector.connect(name, tcp).await?;
        let request = format!("wss://localhost:{}/echo", addr.port()).into_client_request()?;
        let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await?;
        ws.send(Message::text("tls")).await?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "tls" => Ok::<_, Error>(ws),
            other => Err(format!("no echo over TLS: {}", ending(other)).into()),
        }
    };
    tokio::time::timeout(REPLY_TIMEOUT, opening)
        .await
        .map_err(|_| "no TLS connection within 10 s")?
}

/// Opens a TLS connection (counting it in `opened` once it echoed), waits for the server
/// to close it, notes the close and connects again, until `stop`.
pub async fn tls(
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
    opened: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
) -> TlsRecord {
    let mut record = TlsRecord::default();
    while !*stop.borrow() {
        let mut ws = match open_tls(&connector, addr).await {
            Ok(ws) => {
                opened.fetch_add(1, Ordering::Relaxed);
                ws
            }
            Err(e) => {
                record.failures.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                _ = stop.changed() => {
                    let _ = ws.close(None).await;
                    return record;
                }
            };
            match message {
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((0, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    record.closes.push(TlsClose {
                        code,
                        reason,
                        at: Instant::now(),
                    });
                    // Answer the close as a client does, then connect again.
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
                    break;
                }
                Some(Ok(_)) => continue,
                other => {
                    record.closes.push(TlsClose {
                        code: 0,
                        reason: ending(other),
                        at: Instant::now(),
                    });
                    break;
                }
            }
        }
    }
    record
}
