//! The session task: it owns the connection, sends the handles' commands with ids,
//! routes replies and pushes, and reconnects and resubscribes when the connection drops.
//!
//! One task does everything, so the per-room cursors and the table of pending ids need no
//! lock: handles talk to it through an unbounded channel, each request carrying a oneshot
//! for its answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::command::{Command, Incoming, Subscribed};
use super::cursor::Cursor;
use super::{PROTOCOL, Position, RoomEvent, RoomsConfig, Shared};
use crate::{Client, ClientConfig, ClientError, ClientSender, Event, Message, backoff, connect};

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;
type Events = mpsc::UnboundedSender<Result<RoomEvent, ClientError>>;

/// What a handle asks of the session.
#[derive(Debug)]
pub(crate) enum Request {
    Subscribe {
        room: String,
        since: Option<Position>,
        key: u64,
        events: Events,
        reply: Reply<Position>,
    },
    /// `key`: only that subscription (not a newer one of the same room).
    Unsubscribe {
        room: String,
        key: Option<u64>,
        reply: Reply<()>,
    },
    Command {
        command: Command,
        reply: Reply<Map<String, Value>>,
    },
    /// A [`Subscription`](super::Subscription) was dropped.
    Dropped {
        room: String,
        key: u64,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Connects and checks that the server speaks the rooms protocol.
pub(crate) async fn open(url: &str, config: &ClientConfig) -> Result<Client, ClientError> {
    let client = connect(url, config).await?;
    if client.protocol() != Some(PROTOCOL) {
        return Err(ClientError::Protocol(format!(
            "the server did not select {PROTOCOL} (it chose {:?})",
            client.protocol()
        )));
    }
    Ok(client)
}

/// A followed room.
#[derive(Debug)]
struct Sub {
    key: u64,
    events: Events,
    cursor: Cursor,
    /// The caller of `subscribe`, until the first successful reply.
    waiting: Option<Reply<Position>>,
    /// Whether a subscribe for it is on the current connection, unanswered.
    in_flight: bool,
    /// Consecutive 503 (`backplane_unavailable`) answers, for the retry backoff.
    unavailable: u32,
}

/// What an id on the wire is waiting for.
#[derive(Debug)]
enum Pending {
    Subscribe {
        room: String,
        key: u64,
        since: Option<Position>,
    },
    Unsubscribe(Option<Reply<()>>),
    Command(Reply<Map<String, Value>>),
}

/// How a connection ended.
enum End {
    /// Reconnect.
    Lost,
    /// The handles are gone or asked to close.
    Closed,
}

pub(crate) struct Session {
    urls: Vec<String>,
    current: usize,
    config: ClientConfig,
    base: Duration,
    cap: Duration,
    max_attempts: Option<u32>,
    requests: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Shared>,
    subs: HashMap<String, Sub>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    /// Commands that came while disconnected, sent after the resubscribes.
    queue: VecDeque<(Command, Reply<Map<String, Value>>)>,
    /// Subscribes to send again (answered 503), by due time.
    retries: Vec<(Instant, String)>,
}

impl Session {
    pub(crate) fn new(
        urls: Vec<String>,
        config: ClientConfig,
        options: &RoomsConfig,
        requests: mpsc::UnboundedReceiver<Request>,
        shared: Arc<Shared>,
    ) -> Session {
        Session {
            urls,
            current: 0,
            config,
            base: options.backoff_base,
            cap: options.backoff_cap,
            max_attempts: options.max_attempts,
            requests,
            shared,
            subs: HashMap::new(),
            pending: HashMap::new(),
            next_id: 1,
            queue: VecDeque::new(),
            retries: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self, first: Client) {
        let mut client = Some(first);
        loop {
            let connected = match client.take() {
                Some(c) => c,
                None => match self.reconnect().await {
                    Ok(Some(c)) => c,
                    Ok(None) => return,
                    Err(e) => return self.fail_all(&e),
                },
            };
            match self.serve(connected).await {
                End::Closed => return,
                End::Lost => self.lost(),
            }
        }
    }

    /// Runs one connection until it drops or the session closes.
    async fn serve(&mut self, client: Client) -> End {
        let (sender, mut receiver) = client.split();
        let rooms: Vec<String> = self.subs.keys().cloned().collect();
        for room in rooms {
            if self.send_subscribe(&sender, &room).await.is_err() {
                return End::Lost;
            }
        }
        while let Some((command, reply)) = self.queue.pop_front() {
            if self.send_command(&sender, command, reply).await.is_err() {
                return End::Lost;
            }
        }
        loop {
            let retry_at = self.retries.iter().map(|(at, _)| *at).min();
            // `ClientReceiver::recv` and `mpsc::recv` are cancel-safe: whichever branch
            // loses the race loses nothing.
            tokio::select! {
                event = receiver.recv() => match event {
                    Ok(Some(Event::Message(Message::Text(text)))) => {
                        if self.frame(&sender, &text).await.is_err() {
                            let _ = sender.close(4400, "bad frame").await;
                            return End::Lost;
                        }
                    }
                    Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
                    Ok(Some(Event::Message(Message::Binary(_)))) => {
                        let _ = sender.close(1003, "binary frames are not pushes").await;
                        return End::Lost;
                    }
                    Ok(Some(Event::Close { .. }) | None) | Err(_) => return End::Lost,
                },
                request = self.requests.recv() => match request {
                    None | Some(Request::Close { .. }) => {
                        let _ = sender.close(1000, "").await;
                        if let Some(Request::Close { reply }) = request {
                            let _ = reply.send(());
                        }
                        return End::Closed;
                    }
                    Some(request) => {
                        if self.request(Some(&sender), request).await.is_err() {
                            return End::Lost;
                        }
                    }
                },
                () = sleep_until(retry_at), if retry_at.is_some() => {
                    let now = Instant::now();
                    let (due, later) = std::mem::take(&mut self.retries)
                        .into_iter()
                        .partition(|(at, _)| *at <= now);
                    self.retries = later;
                    for (_, room) in due {
                        let idle = self.subs.get(&room).is_some_and(|s| !s.in_flight);
                        if idle && self.send_subscribe(&sender, &room).await.is_err() {
                            return End::Lost;
                        }
                    }
                }
            }
        }
    }

    /// Handles a request; `sender` is `None` while disconnected. Errors are send failures
    /// (the connection is gone).
    async fn request(
        &mut self,
        sender: Option<&ClientSender>,
        request: Request,
    ) -> Result<(), ClientError> {
        match request {
            Request::Subscribe {
                room,
                since,
                key,
                events,
                reply,
            } => {
                if self.subs.contains_key(&room) {
                    let _ = reply.send(Err(ClientError::Command {
                        code: 409,
                        error: "already_subscribed".into(),
                        msg: format!("this session already follows `{room}`"),
                    }));
                    return Ok(());
                }
                let sub = Sub {
                    key,
                    events,
                    cursor: Cursor::new(since),
                    waiting: Some(reply),
                    in_flight: false,
                    unavailable: 0,
                };
                self.subs.insert(room.clone(), sub);
                match sender {
                    Some(sender) => self.send_subscribe(sender, &room).await,
                    None => Ok(()),
                }
            }
            Request::Unsubscribe { room, key, reply } => {
                self.unsubscribe(sender, room, key, Some(reply)).await
            }
            Request::Dropped { room, key } => self.unsubscribe(sender, room, Some(key), None).await,
            Request::Command { command, reply } => match sender {
                Some(sender) => self.send_command(sender, command, reply).await,
                None => {
                    self.queue.push_back((command, reply));
                    Ok(())
                }
            },
            Request::Close { reply } => {
                // Only reached while disconnected; `serve` handles it when connected.
                let _ = reply.send(());
                Ok(())
            }
        }
    }

    async fn unsubscribe(
        &mut self,
        sender: Option<&ClientSender>,
        room: String,
        key: Option<u64>,
        reply: Option<Reply<()>>,
    ) -> Result<(), ClientError> {
        let ours = self
            .subs
            .get(&room)
            .is_some_and(|s| key.is_none_or(|k| k == s.key));
        if key.is_some() && !ours {
            // A dropped or unsubscribed subscription that is already gone.
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
            return Ok(());
        }
        // Removing it drops its event sender: the `Subscription` ends with `Closed`.
        self.subs.remove(&room);
        match sender {
            Some(sender) => {
                let id = self.id();
                self.pending.insert(id, Pending::Unsubscribe(reply));
                let unsubscribe = Command::Unsubscribe { room };
                sender.send(Message::Text(unsubscribe.encode(id))).await
            }
            None => {
                if let Some(reply) = reply {
                    let _ = reply.send(if ours {
                        Ok(())
                    } else {
                        Err(ClientError::Command {
                            code: 404,
                            error: "not_subscribed".into(),
                            msg: format!("this session does not follow `{room}`"),
                        })
                    });
                }
                Ok(())
            }
        }
    }

    async fn send_subscribe(
        &mut self,
        sender: &ClientSender,
        room: &str,
    ) -> Result<(), ClientError> {
        let id = self.id();
        let Some(sub) = self.subs.get_mut(room) else {
            return Ok(());
        };
        sub.cursor.subscribing();
        sub.in_flight = true;
        let since = sub.cursor.since().cloned();
        let command = Command::Subscribe {
            room: room.to_owned(),
            since: since.clone(),
        };
        self.pending.insert(
            id,
            Pending::Subscribe {
                room: room.to_owned(),
                key: sub.key,
                since,
            },
        );
        sender.send(Message::Text(command.encode(id))).await
    }

    async fn send_command(
        &mut self,
        sender: &ClientSender,
        command: Command,
        reply: Reply<Map<String, Value>>,
    ) -> Result<(), ClientError> {
        let id = self.id();
        let text = command.encode(id);
        self.pending.insert(id, Pending::Command(reply));
        sender.send(Message::Text(text)).await
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// One frame from the server. An error is a protocol violation: reconnect.
    async fn frame(&mut self, sender: &ClientSender, text: &str) -> Result<(), ClientError> {
        match Incoming::decode(text)? {
            Incoming::Push(publication) => {
                let room = publication.room.clone();
                let Some(sub) = self.subs.get_mut(&room) else {
                    // Unsubscribed meanwhile.
                    return Ok(());
                };
                let mut gone = false;
                for event in sub.cursor.push(publication) {
                    gone |= sub.events.send(Ok(event)).is_err();
                }
                if gone {
                    let key = sub.key;
                    self.unsubscribe(Some(sender), room, Some(key), None)
                        .await?;
                }
                Ok(())
            }
            Incoming::Reply { id, body } => self.answer(id, Ok(body)),
            Incoming::Error { id, error } => self.answer(id, Err(error)),
        }
    }

    fn answer(
        &mut self,
        id: u64,
        result: Result<Map<String, Value>, ClientError>,
    ) -> Result<(), ClientError> {
        match self.pending.remove(&id) {
            // A reply to nothing we sent: ignore it rather than drop a working connection.
            None => Ok(()),
            Some(Pending::Command(reply)) => {
                let _ = reply.send(result);
                Ok(())
            }
            Some(Pending::Unsubscribe(reply)) => {
                if let Some(reply) = reply {
                    let _ = reply.send(result.map(drop));
                }
                Ok(())
            }
            Some(Pending::Subscribe { room, key, since }) => {
                self.subscribed(room, key, since, result)
            }
        }
    }

    fn subscribed(
        &mut self,
        room: String,
        key: u64,
        since: Option<Position>,
        result: Result<Map<String, Value>, ClientError>,
    ) -> Result<(), ClientError> {
        let Some(sub) = self.subs.get_mut(&room).filter(|s| s.key == key) else {
            return Ok(());
        };
        sub.in_flight = false;
        match result {
            Ok(body) => {
                let reply = Subscribed::decode(&body)?;
                let delivered = body.get("delivered").and_then(Value::as_u64).unwrap_or(0);
                sub.unavailable = 0;
                if let Some(notice) = sub.cursor.subscribed(since.as_ref(), &reply, delivered) {
                    let _ = sub.events.send(Ok(RoomEvent::Notice(notice)));
                }
                if let Some(waiting) = sub.waiting.take() {
                    let _ = waiting.send(Ok(reply.position));
                }
            }
            Err(ClientError::Command { code: 503, .. }) => {
                // The history store is down (Redis or NATS restarting): try again.
                let delay = backoff(sub.unavailable, self.base, self.cap, jitter());
                sub.unavailable = sub.unavailable.saturating_add(1);
                self.retries.push((Instant::now() + delay, room));
            }
            Err(e) => {
                if let Some(sub) = self.subs.remove(&room) {
                    match sub.waiting {
                        Some(waiting) => drop(waiting.send(Err(e))),
                        None => drop(sub.events.send(Err(e))),
                    }
                }
            }
        }
        Ok(())
    }

    /// The connection dropped: answer what was waiting on it.
    fn lost(&mut self) {
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Subscribe { room, .. } => {
                    if let Some(sub) = self.subs.get_mut(&room) {
                        sub.in_flight = false;
                    }
                }
                // Nothing is subscribed on a new connection.
                Pending::Unsubscribe(reply) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
                Pending::Command(reply) => {
                    let _ = reply.send(Err(ClientError::ConnectionLost));
                }
            }
        }
        // Every room is subscribed again on the next connection.
        self.retries.clear();
    }

    /// Connects again, with backoff, serving requests meanwhile. `Ok(None)`: the session
    /// was closed; `Err`: it gives up.
    async fn reconnect(&mut self) -> Result<Option<Client>, ClientError> {
        let mut attempt = 0u32;
        loop {
            let deadline = Instant::now() + backoff(attempt, self.base, self.cap, jitter());
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    request = self.requests.recv() => match request {
                        None => return Ok(None),
                        Some(Request::Close { reply }) => {
                            let _ = reply.send(());
                            return Ok(None);
                        }
                        Some(request) => {
                            let _ = self.request(None, request).await;
                        }
                    },
                }
            }
            let url = &self.urls[self.current % self.urls.len()];
            match open(url, &self.config).await {
                Ok(client) => {
                    self.shared.connects.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(client));
                }
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    self.current = (self.current + 1) % self.urls.len();
                    if self.max_attempts.is_some_and(|max| attempt >= max) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The session gives up: every waiter and subscription gets the error.
    fn fail_all(&mut self, error: &ClientError) {
        for (_, sub) in self.subs.drain() {
            match sub.waiting {
                Some(waiting) => drop(waiting.send(Err(error.replicate()))),
                None => drop(sub.events.send(Err(error.replicate()))),
            }
        }
        for (_, reply) in self.queue.drain(..) {
            let _ = reply.send(Err(error.replicate()));
        }
    }
}

/// Errors a reconnect cannot fix.
fn is_fatal(error: &ClientError) -> bool {
    match error {
        ClientError::Refused { status, .. } => matches!(status, 400 | 401 | 403),
        ClientError::InvalidUrl(_) | ClientError::Certificate(_) | ClientError::Tls(_) => true,
        _ => false,
    }
}

/// A uniform sample in `0..1` for the backoff's jitter.
fn jitter() -> f64 {
    f64::from(u32::from_le_bytes(crate::random())) / 4_294_967_296.0
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
