//! The successor's side of moved connections: a predecessor's open connections registered
//! again (same ids, users, rooms) and driven on from where it stopped.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;
use tracing::{info, warn};

use super::{ServerShared, ended_as};
use crate::conn::{Conn, ConnShared, UserId};
use crate::driver::Driver;
use crate::handover::Arrivals;

/// Registers every connection a predecessor handed over (same id, user and rooms) before
/// any of them runs, so that a message one of them sends to a room reaches all the others
/// that moved; then drives each on from where the predecessor stopped. A connection whose
/// server or route this process does not have is dropped.
pub(super) fn resume(services: &[(String, Arc<ServerShared>)], arrivals: Arrivals) -> usize {
    let mut ready = Vec::new();
    let mut pauses = Vec::new();
    let now = crate::handover::now_ms();
    for (moved, fd) in arrivals.0 {
        pauses.push(now.saturating_sub(moved.parked_at_ms));
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
        shared.sender.resumed(conn.clone());
        for room in &moved.rooms {
            shared.sender.rejoin(&conn, room);
        }
        ready.push((shared.clone(), route.clone(), conn, stream, moved.read));
    }
    let resumed = ready.len();
    pauses.sort_unstable();
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
    for (shared, route, conn, stream, read) in ready {
        let movable = route.handler.movable().then(|| shared.mover.enter());
        let driver = Driver::new(
            stream,
            conn,
            shared.settings.clone(),
            route.handler.clone(),
            route.ping,
            None,
        )
        .movable(movable);
        let guard = shared.tasks.enter();
        tokio::spawn(driver.run(read, None, move |conn, ended| {
            ended_as(&shared, conn, ended);
            drop(guard);
        }));
    }
    resumed
}
