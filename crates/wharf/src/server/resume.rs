//! The successor's side of moved connections: a predecessor's open connections registered
//! again (same ids, users, rooms) and driven on from where it stopped.
//!
//! Order: the predecessor's in-memory history is taken first (positions continue it); each
//! connection's handler rebuilds its state ([`Handler::resume`](crate::Handler::resume));
//! every connection is registered and rejoins its rooms (history rooms marked recovering, so
//! live publications wait for it); then each task sends what its connection missed in its
//! history rooms since the position it had reached, and only then drives it on.
//!
//! The same path takes connections back in the old process when its successor failed
//! before taking them ([`BoundServer::serve_until`](crate::BoundServer::serve_until)).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;
use tracing::{info, warn};

use super::{ServerShared, ended_as};
use crate::CloseCode;
use crate::conn::{Conn, ConnShared, UserId};
use crate::handler::ResumeEvent;
use crate::handover::MovedConn;
use crate::launch::Launch;

/// Takes the predecessor's in-memory history (before the connections: their positions
/// continue it).
pub(super) fn restore_history(
    services: &[(String, Arc<ServerShared>)],
    history: Vec<crate::history::RoomSnapshot>,
) {
    if let (false, Some((_, shared))) = (history.is_empty(), services.first()) {
        let parts = history.len();
        match shared.sender.history_state().restore_memory(history) {
            Some(publications) => info!(
                parts,
                publications, "took over the predecessor's in-memory history"
            ),
            None => warn!(
                parts,
                "this process was given a history store: the predecessor's in-memory history is dropped"
            ),
        }
    }
}

/// Registers every moved connection (same id, user and rooms) before any of them runs, so
/// that a message one of them sends to a room reaches all the others that moved; they are
/// driven by [`start`]. A connection whose server or route this process does not have is
/// dropped.
pub(super) fn prepare(
    services: &[(String, Arc<ServerShared>)],
    arrivals: Vec<(MovedConn, OwnedFd)>,
) -> Vec<Ready> {
    let mut ready = Vec::new();
    for (moved, fd) in arrivals {
        let id = crate::ConnId::from_u64(moved.id);
        let Some((_, shared)) = services.iter().find(|(name, _)| *name == moved.server) else {
            warn!(conn = %id, server = moved.server, "no such server here: connection dropped");
            continue;
        };
        let Some((route, params)) = shared.router.find(&moved.path) else {
            warn!(conn = %id, path = moved.path, "no route for it here: connection dropped");
            continue;
        };
        if *route.pattern != *moved.route {
            warn!(conn = %id, path = moved.path, "its route changed: connection dropped");
            continue;
        }
        let stream = std::net::TcpStream::from(fd);
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(e) => {
                warn!(conn = %id, error = %e, "connection dropped");
                continue;
            }
        };
        let mut data = http::Extensions::new();
        if let Some(user) = &moved.user {
            data.insert(UserId::new(user.clone()));
        }
        let mut event = ResumeEvent {
            id,
            path: moved.path.clone(),
            user: moved.user.clone(),
            protocol: moved.protocol.clone(),
            peer: moved.peer,
            carried: moved.state,
            data,
        };
        let rebuilt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            route.handler.resume(&mut event)
        }));
        let failed = match rebuilt {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("could not resume: {e}")),
            Err(_) => Some("could not resume: the handler panicked".to_owned()),
        };
        if let Some(reason) = &failed {
            warn!(conn = %id, reason, "Handler::resume failed: closing with 1012");
        }
        let data = event.data;
        let outbox = crate::outbox::Outbox::new(shared.settings.limits.max_queue_size, None);
        outbox.push_raw(&moved.write);
        let opened_at = SystemTime::UNIX_EPOCH + Duration::from_millis(moved.opened_at_ms);
        let conn = Conn(Arc::new(ConnShared {
            id,
            server: shared.name.clone(),
            route: route.pattern.clone(),
            path: moved.path.into(),
            params: params
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
            peer: crate::PeerAddr(moved.peer),
            protocol: moved.protocol.map(Into::into),
            opened_at,
            opened: Instant::now(),
            data,
            user: moved.user.map(Into::into),
            rooms: std::sync::Mutex::new(Some(Vec::new())),
            outbox,
            sender: shared.sender.clone(),
            counters: route.counters.clone(),
        }));
        // Counted against `max_connections` and `max_connections_per_ip` as the
        // predecessor counted them (never refused: they were admitted there).
        let slot = super::accept::Slot::moved(shared);
        let trusted = shared.proxy.trusts(moved.peer.ip());
        let admission = shared
            .peers
            .admit_moved(moved.peer, &shared.settings.limits, trusted);
        shared.sender.resumed(conn.clone());
        let mut recover = Vec::new();
        if let Some(reason) = failed {
            conn.close(CloseCode::SERVICE_RESTART, &reason);
        } else {
            let history = shared.sender.history_state();
            for room in moved.rooms {
                match room.position {
                    Some(position) if history.covers(&room.name) => {
                        if shared.sender.rejoin_recovering(&conn, &room.name) {
                            recover.push((room.name, position));
                        }
                    }
                    _ => shared.sender.rejoin(&conn, &room.name),
                }
            }
        }
        ready.push(Ready {
            shared: shared.clone(),
            route: route.clone(),
            conn,
            stream,
            read: moved.read,
            recover,
            held: (slot, admission),
            parked_at_ms: moved.parked_at_ms,
        });
    }
    ready
}

/// Drives the connections a predecessor handed over (see [`start`]), and reports the pause
/// they saw. Returns how many.
pub(super) fn start_moved(services: &[(String, Arc<ServerShared>)], ready: Vec<Ready>) -> usize {
    let resumed = ready.len();
    let pauses = pauses(&ready);
    if let (Some(max), Some((_, shared))) = (pauses.last(), services.first()) {
        let p50 = pauses[pauses.len() / 2];
        let p99 = pauses[(pauses.len() * 99 / 100).min(pauses.len() - 1)];
        info!(
            resumed,
            pause_p50_ms = p50,
            pause_p99_ms = p99,
            pause_max_ms = *max,
            "the pause the moved connections saw"
        );
        shared.sender.counters().handover_resumed(resumed, *max);
    }
    start(ready);
    resumed
}

/// How long each connection has been parked (ms, by the wall clock: across processes),
/// shortest first.
pub(super) fn pauses(ready: &[Ready]) -> Vec<u64> {
    let now = crate::handover::now_ms();
    let mut pauses: Vec<u64> = ready
        .iter()
        .map(|r| now.saturating_sub(r.parked_at_ms))
        .collect();
    pauses.sort_unstable();
    pauses
}

/// Drives registered connections on from where they stopped: each first gets what it
/// missed in its history rooms.
pub(super) fn start(ready: Vec<Ready>) {
    for Ready {
        shared,
        route,
        conn,
        stream,
        read,
        recover,
        held,
        ..
    } in ready
    {
        let handle = conn.clone();
        let driver = shared.driver(&route, conn, stream, None, true);
        let guard = shared.tasks.enter();
        let launch = Launch {
            handler: route.handler.clone(),
            driver,
            leftover: read,
            request: None,
            ended: Box::new(move |conn: &Conn, ended| {
                ended_as(&shared, conn, ended);
                drop(guard);
                drop(held);
            }),
        };
        if recover.is_empty() {
            launch.spawn();
        } else {
            let conn = handle;
            // Its driver starts (in a task of its own) once it has what it missed.
            tokio::spawn(async move {
                recover_rooms(&conn, recover).await;
                launch.spawn();
            });
        }
    }
}

/// A moved connection registered and about to be driven.
pub(super) struct Ready {
    shared: Arc<ServerShared>,
    route: Arc<crate::routing::CompiledRoute>,
    conn: Conn,
    stream: TcpStream,
    /// A partial frame header read by the predecessor.
    read: Vec<u8>,
    /// Its history rooms and the position it had reached in each.
    recover: Vec<(String, crate::history::Position)>,
    /// Its places under `max_connections` and `max_connections_per_ip`, given back when it
    /// ends.
    held: (super::accept::Slot, super::peers::Admission),
    /// When the predecessor stopped serving it (ms since the Unix epoch).
    parked_at_ms: u64,
}

/// Sends a moved connection what it missed in each history room since the position its
/// predecessor had reached, and makes it live there. A room whose history since then is
/// gone (trimmed, or another epoch) closes it with 4010 (resync), as a live member's gap
/// would; a store that cannot be read closes it with 1012: its client reconnects and
/// recovers from its own positions. After a close the other rooms are left as they are (the
/// connection leaves them all when it ends).
async fn recover_rooms(conn: &Conn, rooms: Vec<(String, crate::history::Position)>) {
    let hub = conn.sender().history_hub();
    for (room, since) in rooms {
        match hub.resume_member(conn, &room, &since).await {
            Ok(recovery) if recovery.recovered => {}
            Ok(recovery) => {
                warn!(conn = %conn.id(), room, %since, position = %recovery.position, "a moved connection's history is gone: resync");
                conn.close(
                    CloseCode::RESYNC,
                    "history gap: rejoin from your last position",
                );
                return;
            }
            Err(e) => {
                warn!(conn = %conn.id(), room, error = %e, "a moved connection could not rejoin its room");
                conn.close(
                    CloseCode::SERVICE_RESTART,
                    &format!("could not restore room `{room}`"),
                );
                return;
            }
        }
    }
}
