//! `wharf client URL --room NAME…`: follows rooms with the rooms protocol from a terminal.
//!
//! stdout gets one line per publication, `ROOM POSITION TEXT` (a binary one as
//! `ROOM POSITION binary HEX`), or with `--json` one object `{"room", "position", "text" |
//! "binary_hex", "timestamp"}`; stderr gets the recovery notices and errors.

use std::io::Write as _;
use std::time::SystemTime;

use tokio::sync::mpsc;

use super::{ClientArgs, EXIT_ERROR, Printer, timestamp, to_hex};
use crate::ClientConfig;
use crate::rooms::{Notice, Payload, Publication, RoomEvent, Rooms, RoomsConfig};

/// Follows `args.rooms` until `--expect` publications arrived (bounded by `--timeout`),
/// or forever without it; returns the exit code.
pub(super) async fn follow(args: &ClientArgs, config: ClientConfig, out: &Printer) -> u8 {
    let url = &args.connection.url;
    let rooms = match Rooms::connect(url, RoomsConfig::default().with_client(config.clone())).await
    {
        Ok(rooms) => rooms,
        Err(e) => return out.failure(&e).into_code(),
    };
    let (events, mut incoming) = mpsc::unbounded_channel();
    for room in &args.rooms {
        let mut subscription = match rooms.subscribe(room).await {
            Ok(s) => s,
            Err(e) => {
                out.error(&format!("subscribe {room}: {e}"));
                rooms.close().await;
                return EXIT_ERROR;
            }
        };
        let events = events.clone();
        tokio::spawn(async move {
            loop {
                let event = subscription.recv().await;
                let end = event.is_err();
                if events.send(event).is_err() || end {
                    return;
                }
            }
        });
    }
    drop(events);
    if let Some(first) = args.rooms.first() {
        for text in &args.send {
            if let Err(e) = rooms.publish(first, text).await {
                out.error(&format!("publish to {first}: {e}"));
                rooms.close().await;
                return EXIT_ERROR;
            }
        }
    }
    let expect = args.expect.filter(|&n| n > 0);
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let mut seen = 0u64;
    let code = loop {
        let next = match expect {
            Some(_) => match tokio::time::timeout_at(deadline, incoming.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    let want = expect.unwrap_or_default();
                    out.error(&format!("timed out after {seen} of {want} publications"));
                    break EXIT_ERROR;
                }
            },
            None => incoming.recv().await,
        };
        match next {
            Some(Ok(RoomEvent::Publication(p))) => {
                print_publication(&p, out);
                seen += 1;
                if expect.is_some_and(|n| seen >= n) {
                    break 0;
                }
            }
            Some(Ok(RoomEvent::Notice(notice))) => print_notice(&notice),
            Some(Err(e)) => break out.failure(&e).into_code(),
            None => break 0,
        }
    };
    rooms.close().await;
    code
}

fn print_publication(p: &Publication, out: &Printer) {
    let line = if out.json {
        let mut v = serde_json::json!({
            "room": p.room,
            "position": p.position.to_string(),
            "timestamp": timestamp(SystemTime::now()),
        });
        match &p.payload {
            Payload::Text(text) => v["text"] = text.as_str().into(),
            Payload::Binary(data) => v["binary_hex"] = to_hex(data).into(),
        }
        v.to_string()
    } else {
        match &p.payload {
            Payload::Text(text) => format!("{} {} {text}", p.room, p.position),
            Payload::Binary(data) => format!("{} {} binary {}", p.room, p.position, to_hex(data)),
        }
    };
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn print_notice(notice: &Notice) {
    let line = match notice {
        Notice::Recovered { since, delivered } => {
            format!("recovered after {since}: {delivered} missed publications delivered")
        }
        Notice::Unrecovered { since, position } => {
            format!("unrecovered: publications after {since} are lost; live from {position} on")
        }
        Notice::EpochChanged { previous, position } => format!(
            "history lost: epoch changed from {previous} to {position}; publications may be missing"
        ),
    };
    let _ = writeln!(std::io::stderr().lock(), "notice: {line}");
}
