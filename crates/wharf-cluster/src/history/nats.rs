//! History in NATS JetStream: one stream per prefix, one subject per room, spoken through
//! JetStream's request API (like presence), so it works with every server since 2.9.
//!
//! # Stream and subjects
//!
//! The stream `<prefix>_history` (memory storage, like presence: a NATS restart is a new
//! epoch, never stale data) holds the subjects `<prefix>.history.<room token>`; the token
//! is the room name with every byte other than `A-Z a-z 0-9 - _` written `~XX` (see
//! [`room_token`]), so `chat:*`, `a.b` or `café` are each one subject of their own. Each
//! message carries its place in headers: `Wharf-Epoch`, `Wharf-Offset` and `Wharf-Kind`
//! (`text` or `binary`); the payload is the message's bytes.
//!
//! # Why appends are atomic
//!
//! JetStream's sequence is global to the stream, so a room's offset cannot be it. The offset
//! is `last offset + 1`, and the publish says which message it follows:
//! `Nats-Expected-Last-Subject-Sequence` = the stream sequence of the room's last message (0
//! for none). JetStream refuses the publish (error 10071) if anything was stored in the
//! room meanwhile; the store reads the new last message and tries again. Two publishers can
//! therefore never store the same offset, and no offset is skipped. An append is two round
//! trips (read the last message, publish); appends to one room from one process take turns,
//! so only another node's publish can cost a retry. The last message is deliberately not
//! cached:
//! stream sequences restart at 1 when the stream is created again (JetStream 2.9 has no
//! `first_seq`), so a cached sequence from the old stream could match a new stream's and
//! continue an epoch that is gone.
//!
//! # Epochs
//!
//! A room's epoch is chosen by the publish that finds the room empty (a fresh stream, a
//! stream deleted and created again, a NATS restarted, every message expired) and is then
//! copied from message to message. Reading an empty room stores a marker (offset 0, no
//! payload) holding a new epoch, so that a reader's position is continued by the next
//! publish, as in the other stores.
//!
//! # Trimming and idempotency
//!
//! The stream's limits are the largest any policy asked for: `max_msgs_per_subject` = size
//! (at least 1: the last message is what carries the offset), `max_age` = ttl, and
//! `duplicate_window` = the idempotency window (at most ttl, as JetStream requires). Reads
//! apply each policy's own size exactly. An idempotency key is sent as `Nats-Msg-Id`
//! (`<room token>.<key token>`); JetStream answers a duplicate with the first message's
//! sequence, whose offset header is the answer.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use wharf::Message;
use wharf::cluster::{BoxFuture, room_token};
use wharf::history::{
    Appended, HistoryError, HistoryPage, HistoryPolicy, HistoryStore, Position, Publication,
    completeness,
};

/// The longest a connect or a request may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How many locks the rooms' appends are spread over.
const STRIPES: usize = 64;
/// How many times an append retries after losing the race for the next offset.
const ATTEMPTS: usize = 200;

const STREAM_EXISTS: u64 = 10058;
/// What JetStream may answer instead of [`STREAM_EXISTS`] while another node creates the
/// same stream.
const SUBJECTS_OVERLAP: u64 = 10065;
const STREAM_NOT_FOUND: u64 = 10059;
const NO_MESSAGE: u64 = 10037;
const WRONG_LAST_SEQUENCE: u64 = 10071;

/// A [`HistoryStore`] in NATS JetStream (`nats://host:port`, JetStream enabled). Connects at
/// first use; the client reconnects by itself after NATS restarts, and the stream is
/// created again when it is missing. While NATS is unreachable every call answers
/// [`HistoryError::Unavailable`] within about 2 s.
pub struct NatsHistory {
    url: String,
    stream: String,
    /// `<prefix>.history`: one subject per room below it.
    subjects: String,
    client: Mutex<Option<Client>>,
    /// Appends to rooms hashed to the same stripe take turns (see `append_once`).
    stripes: Box<[Mutex<()>]>,
    hasher: std::hash::RandomState,
    /// The stream's limits as last set or read; `None` until the stream is known to exist.
    limits: std::sync::Mutex<Option<Limits>>,
}

impl std::fmt::Debug for NatsHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsHistory")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// A stream's limits, in JetStream's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    per_subject: i64,
    max_age: u64,
    duplicates: u64,
}

impl Limits {
    fn of(policy: &HistoryPolicy) -> Limits {
        let max_age = nanos(policy.ttl).max(1_000_000);
        Limits {
            per_subject: i64::try_from(policy.size.max(1)).unwrap_or(i64::MAX),
            max_age,
            duplicates: nanos(policy.idempotency_window).clamp(1_000_000, max_age),
        }
    }

    /// Whether these limits keep at least what `need` asks (0 or less is "unlimited").
    fn covers(&self, need: &Limits) -> bool {
        (self.per_subject <= 0 || self.per_subject >= need.per_subject)
            && (self.max_age == 0 || self.max_age >= need.max_age)
            && self.duplicates >= need.duplicates
    }

    fn merge(&self, need: &Limits) -> Limits {
        let per_subject = if self.per_subject <= 0 {
            self.per_subject
        } else {
            self.per_subject.max(need.per_subject)
        };
        let max_age = if self.max_age == 0 {
            0
        } else {
            self.max_age.max(need.max_age)
        };
        let mut duplicates = self.duplicates.max(need.duplicates);
        if max_age != 0 {
            duplicates = duplicates.min(max_age);
        }
        Limits {
            per_subject,
            max_age,
            duplicates,
        }
    }

    fn from_config(config: &Value) -> Limits {
        Limits {
            per_subject: config["max_msgs_per_subject"].as_i64().unwrap_or(-1),
            max_age: config["max_age"].as_u64().unwrap_or(0),
            duplicates: config["duplicate_window"].as_u64().unwrap_or(0),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Why a request failed.
#[derive(Debug)]
enum Fail {
    /// The stream does not exist (deleted, or NATS restarted): create it and retry.
    StreamGone,
    /// No message matched a get.
    NoMessage,
    /// Someone else stored in the room since the last message we read.
    WrongLast,
    /// A stream create found the stream there already (10058), or its subjects taken
    /// (10065, what JetStream may answer while another node creates the same stream).
    /// Carries the answer, for when no stream of ours turns out to be there.
    StreamExists(String),
    /// Anything else: unavailable.
    Other(String),
    /// The read itself is refused (a position ahead of the top).
    Refused(HistoryError),
}

impl From<Fail> for HistoryError {
    fn from(fail: Fail) -> HistoryError {
        HistoryError::Unavailable(match fail {
            Fail::Refused(refused) => return refused,
            Fail::StreamGone => "nats: the history stream is missing".to_owned(),
            Fail::NoMessage => "nats: a history message is missing".to_owned(),
            Fail::WrongLast => "nats: too many concurrent publishes to one room".to_owned(),
            Fail::Other(e) | Fail::StreamExists(e) => format!("nats: {e}"),
        })
    }
}

/// A JetStream answer: the JSON, or its error as a [`Fail`].
fn answer(payload: &[u8], what: &str) -> Result<Value, Fail> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| Fail::Other(format!("JetStream {what}: {e}")))?;
    let Some(problem) = value.get("error") else {
        return Ok(value);
    };
    let code = problem["err_code"].as_u64().unwrap_or_default();
    let message = || {
        format!(
            "JetStream {what}: {} [{code}]",
            problem["description"].as_str().unwrap_or("error")
        )
    };
    Err(match code {
        STREAM_NOT_FOUND => Fail::StreamGone,
        NO_MESSAGE => Fail::NoMessage,
        WRONG_LAST_SEQUENCE => Fail::WrongLast,
        STREAM_EXISTS | SUBJECTS_OVERLAP => Fail::StreamExists(message()),
        _ => Fail::Other(message()),
    })
}

fn request_fail(e: async_nats::RequestError, what: &str) -> Fail {
    match e.kind() {
        // Nothing listens on a history subject: its stream is gone.
        RequestErrorKind::NoResponders => Fail::StreamGone,
        _ => Fail::Other(format!("{what}: {e}")),
    }
}

/// A message of a room as stored: its stream sequence and its place.
#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    epoch: String,
    offset: u64,
}

/// A message read back.
struct Got {
    stored: Stored,
    message: Option<Message>,
}

/// Headers of a stored message, from the base64 `hdrs` of a `STREAM.MSG.GET` answer
/// (`NATS/1.0\r\nName: value\r\n…`).
fn parse_headers(block: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(block)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

impl NatsHistory {
    /// A store for the NATS server at `url`, in the stream `<prefix>_history` under the
    /// subjects `<prefix>.history.>`. Nothing connects yet.
    pub fn new(url: &str, prefix: &str) -> NatsHistory {
        NatsHistory {
            url: url.to_owned(),
            stream: format!("{}_history", crate::nats::stream_token(prefix)),
            subjects: format!("{prefix}.history"),
            client: Mutex::new(None),
            limits: std::sync::Mutex::new(None),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The stream's name (for tests and operators).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn stripe(&self, subject: &str) -> &Mutex<()> {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, subject);
        &self.stripes[(hash % STRIPES as u64) as usize]
    }

    fn subject(&self, room: &str) -> String {
        format!("{}.{}", self.subjects, room_token(room))
    }

    /// The client, connected now if there is none. Bounded by [`TIMEOUT`] in all, waiting
    /// for another caller's connect included.
    async fn client(&self) -> Result<Client, Fail> {
        tokio::time::timeout(TIMEOUT, self.connect())
            .await
            .map_err(|_| Fail::Other(format!("{}: connect timed out", self.url)))?
    }

    async fn connect(&self) -> Result<Client, Fail> {
        let mut slot = self.client.lock().await;
        if let Some(client) = &*slot {
            return Ok(client.clone());
        }
        // The client reconnects by itself after this (quickly: at most 1 s apart), and
        // requests made while it is away time out after TIMEOUT.
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(TIMEOUT)
            .request_timeout(Some(TIMEOUT))
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis(50u64 << attempt.min(5)).min(Duration::from_secs(1))
            })
            .connect(self.url.as_str())
            .await
            .map_err(|e| Fail::Other(format!("{}: {e}", self.url)))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// One JetStream API request about the history stream.
    async fn api(&self, what: &str, body: Value) -> Result<Value, Fail> {
        let client = self.client().await?;
        let reply = client
            .request(
                format!("$JS.API.{what}.{}", self.stream),
                body.to_string().into(),
            )
            .await
            .map_err(|e| request_fail(e, &format!("JetStream {what} (is JetStream enabled?)")))?;
        answer(&reply.payload, what)
    }

    /// Creates the stream or raises its limits to cover `policy`.
    async fn ensure_stream(&self, policy: &HistoryPolicy) -> Result<(), Fail> {
        let need = Limits::of(policy);
        if self
            .limits
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|l| l.covers(&need))
        {
            return Ok(());
        }
        let config = json!({
            "name": self.stream,
            "subjects": [format!("{}.>", self.subjects)],
            "retention": "limits",
            "storage": "memory",
            "num_replicas": 1,
            "discard": "old",
            "max_msgs_per_subject": need.per_subject,
            "max_age": need.max_age,
            "duplicate_window": need.duplicates,
        });
        let limits = match self.api("STREAM.CREATE", config).await {
            Ok(created) => Limits::from_config(&created["config"]),
            Err(Fail::StreamExists(e)) => {
                // Created meanwhile (another node's first append raced this one); an overlap
                // with a stream of another name stays the error it is.
                let info = match self.api("STREAM.INFO", json!({})).await {
                    Ok(info) => info,
                    Err(Fail::StreamGone) => return Err(Fail::Other(e)),
                    Err(other) => return Err(other),
                };
                let mut config = info["config"].clone();
                let have = Limits::from_config(&config);
                if have.covers(&need) {
                    have
                } else {
                    let merged = have.merge(&need);
                    config["max_msgs_per_subject"] = json!(merged.per_subject);
                    config["max_age"] = json!(merged.max_age);
                    config["duplicate_window"] = json!(merged.duplicates);
                    let updated = self.api("STREAM.UPDATE", config).await?;
                    Limits::from_config(&updated["config"])
                }
            }
            Err(e) => return Err(e),
        };
        if let Ok(mut slot) = self.limits.lock() {
            *slot = Some(limits);
        }
        Ok(())
    }

    /// Forgets what is known of the stream (it was found missing).
    fn forget(&self) {
        if let Ok(mut slot) = self.limits.lock() {
            *slot = None;
        }
    }

    /// `STREAM.MSG.GET`; `None` when no message matches.
    async fn get(&self, request: Value) -> Result<Option<Got>, Fail> {
        let found = match self.api("STREAM.MSG.GET", request).await {
            Ok(found) => found,
            Err(Fail::NoMessage) => return Ok(None),
            Err(e) => return Err(e),
        };
        let message = &found["message"];
        let corrupt = |what: &str| Fail::Other(format!("unexpected history message ({what})"));
        let seq = message["seq"].as_u64().ok_or_else(|| corrupt("seq"))?;
        let headers = message["hdrs"]
            .as_str()
            .and_then(|h| STANDARD.decode(h).ok())
            .map(|h| parse_headers(&h))
            .unwrap_or_default();
        let epoch = headers
            .get("Wharf-Epoch")
            .filter(|e| Position::valid_epoch(e))
            .ok_or_else(|| corrupt("epoch"))?
            .clone();
        let offset = headers
            .get("Wharf-Offset")
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| corrupt("offset"))?;
        let data = match message["data"].as_str() {
            Some(data) => STANDARD.decode(data).map_err(|_| corrupt("data"))?,
            None => Vec::new(),
        };
        let message = match headers.get("Wharf-Kind").map(String::as_str) {
            Some("text") => Some(Message::Text(
                String::from_utf8(data).map_err(|_| corrupt("text not UTF-8"))?,
            )),
            Some("binary") => Some(Message::binary(data)),
            // The marker of an empty room.
            _ => None,
        };
        Ok(Some(Got {
            stored: Stored { seq, epoch, offset },
            message,
        }))
    }

    async fn last_of(&self, subject: &str) -> Result<Option<Stored>, Fail> {
        let last = self.get(json!({ "last_by_subj": subject })).await?;
        Ok(last.map(|g| g.stored))
    }

    /// The room's first message at or after stream sequence `seq`.
    async fn next_of(&self, subject: &str, seq: u64) -> Result<Option<Got>, Fail> {
        self.get(json!({ "seq": seq, "next_by_subj": subject }))
            .await
    }

    /// Publishes after `last` (None: into an empty room). `Ok(Err(seq))` is a duplicate of
    /// the message at `seq`.
    async fn publish(
        &self,
        subject: &str,
        last: Option<&Stored>,
        stored: &Stored,
        message: Option<&Message>,
        msg_id: Option<&str>,
    ) -> Result<Result<u64, u64>, Fail> {
        let mut headers = HeaderMap::new();
        let expected = last.map_or(0, |l| l.seq);
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expected.to_string().as_str(),
        );
        headers.insert("Wharf-Epoch", stored.epoch.as_str());
        headers.insert("Wharf-Offset", stored.offset.to_string().as_str());
        let (kind, payload) = match message {
            Some(Message::Text(text)) => ("text", Bytes::copy_from_slice(text.as_bytes())),
            Some(other) => ("binary", Bytes::copy_from_slice(other.as_bytes())),
            None => ("marker", Bytes::new()),
        };
        headers.insert("Wharf-Kind", kind);
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        let client = self.client().await?;
        let reply = client
            .request_with_headers(subject.to_owned(), headers, payload)
            .await
            .map_err(|e| request_fail(e, "publish"))?;
        let ack = answer(&reply.payload, "publish")?;
        let seq = ack["seq"]
            .as_u64()
            .ok_or_else(|| Fail::Other("publish: an ack without seq".to_owned()))?;
        if ack["duplicate"].as_bool() == Some(true) {
            Ok(Err(seq))
        } else {
            Ok(Ok(seq))
        }
    }

    async fn append_once(
        &self,
        room: &str,
        message: &Message,
        policy: &HistoryPolicy,
        key: Option<&str>,
    ) -> Result<Appended, Fail> {
        self.ensure_stream(policy).await?;
        let subject = self.subject(room);
        let msg_id = key.map(|k| format!("{}.{}", room_token(room), room_token(k)));
        // Appends to one room from this process take turns, so that only other nodes'
        // publishes can make one lose the race (each lost race costs two round trips).
        // Bounded, so that a queue of appends behind a NATS that does not answer fails in
        // time instead of waiting for each one before it.
        let _turn = tokio::time::timeout(TIMEOUT, self.stripe(&subject).lock())
            .await
            .map_err(|_| Fail::Other("too many appends waiting for one room".to_owned()))?;
        for _ in 0..ATTEMPTS {
            let last = self.last_of(&subject).await?;
            let next = match &last {
                Some(l) => Stored {
                    seq: 0,
                    epoch: l.epoch.clone(),
                    offset: l.offset + 1,
                },
                None => Stored {
                    seq: 0,
                    epoch: Position::new_epoch(),
                    offset: 1,
                },
            };
            match self
                .publish(
                    &subject,
                    last.as_ref(),
                    &next,
                    Some(message),
                    msg_id.as_deref(),
                )
                .await
            {
                Ok(Ok(_)) => {
                    let position = Position::new(next.epoch, next.offset);
                    return Ok(Appended::new(position, false));
                }
                Ok(Err(seq)) => return self.duplicate(&subject, seq, last.as_ref()).await,
                // Someone stored in the room first: read the new last message.
                Err(Fail::WrongLast) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Fail::WrongLast)
    }

    /// The position of the message a duplicate publish points at.
    async fn duplicate(
        &self,
        subject: &str,
        seq: u64,
        last: Option<&Stored>,
    ) -> Result<Appended, Fail> {
        let first = self.get(json!({ "seq": seq })).await?;
        let stored = match first {
            Some(got) => got.stored,
            // The first publish was trimmed already (more than `size` messages since): the
            // room's latest position is the best answer, and it is no earlier than it.
            None => match last {
                Some(last) => last.clone(),
                None => self.last_of(subject).await?.ok_or(Fail::NoMessage)?,
            },
        };
        Ok(Appended::new(
            Position::new(stored.epoch, stored.offset),
            true,
        ))
    }

    /// The room's last message, storing the marker of a new epoch when it is empty.
    async fn top(&self, subject: &str) -> Result<Stored, Fail> {
        for _ in 0..ATTEMPTS {
            if let Some(last) = self.last_of(subject).await? {
                return Ok(last);
            }
            let marker = Stored {
                seq: 0,
                epoch: Position::new_epoch(),
                offset: 0,
            };
            match self.publish(subject, None, &marker, None, None).await {
                Ok(Ok(seq)) => return Ok(Stored { seq, ..marker }),
                // Someone stored first: read theirs.
                Ok(Err(_)) | Err(Fail::WrongLast) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Fail::WrongLast)
    }

    async fn read_once(
        &self,
        room: &str,
        since: Option<&Position>,
        limit: usize,
        policy: &HistoryPolicy,
    ) -> Result<HistoryPage, Fail> {
        self.ensure_stream(policy).await?;
        let subject = self.subject(room);
        let last = self.top(&subject).await?;
        let top = Position::new(last.epoch.clone(), last.offset);
        let first = self.next_of(&subject, 0).await?;
        let by_size = (top.offset + 1).saturating_sub(policy.size as u64);
        let oldest = match &first {
            Some(first) if first.stored.epoch == top.epoch => first.stored.offset.max(1),
            _ => top.offset + 1,
        }
        .max(by_size);
        let complete = completeness(since, &top, oldest).map_err(Fail::Refused)?;
        let after = match since {
            Some(since) if since.epoch != top.epoch => {
                return Ok(page(top, Vec::new(), false));
            }
            Some(since) => since.offset,
            None => 0,
        };
        let start = (after + 1).max(oldest);
        let Some(first) = first else {
            return Ok(page(top, Vec::new(), complete));
        };
        if limit == 0 || start > top.offset {
            return Ok(page(top, Vec::new(), complete));
        }
        let mut at = self.seek(&subject, first, &last, start).await?;
        let mut publications = Vec::new();
        loop {
            if let Some(message) = at.message.take() {
                publications.push(Publication::new(
                    Position::new(top.epoch.clone(), at.stored.offset),
                    message,
                ));
            }
            if publications.len() >= limit || at.stored.offset >= top.offset {
                break;
            }
            match self.next_of(&subject, at.stored.seq + 1).await? {
                Some(next) if next.stored.epoch == top.epoch => at = next,
                _ => break,
            }
        }
        Ok(page(top, publications, complete))
    }

    /// The room's first message with an offset of at least `start`, by bisecting the stream
    /// sequences between the room's first and last messages (offsets grow with sequences).
    async fn seek(
        &self,
        subject: &str,
        first: Got,
        last: &Stored,
        start: u64,
    ) -> Result<Got, Fail> {
        if first.stored.offset >= start {
            return Ok(first);
        }
        let mut best: Option<Got> = None;
        let mut best_seq = last.seq;
        let (mut low, mut high) = (first.stored.seq + 1, last.seq.saturating_sub(1));
        while low <= high {
            let mid = low + (high - low) / 2;
            let Some(found) = self.next_of(subject, mid).await? else {
                break;
            };
            if found.stored.seq >= best_seq {
                // Nothing of this room between mid and the best so far.
                high = mid.saturating_sub(1);
                if mid == 0 {
                    break;
                }
            } else if found.stored.offset >= start {
                best_seq = found.stored.seq;
                high = mid.saturating_sub(1);
                best = Some(found);
                if mid == 0 {
                    break;
                }
            } else {
                low = found.stored.seq + 1;
            }
        }
        match best {
            Some(best) => Ok(best),
            None => self
                .get(json!({ "seq": last.seq }))
                .await?
                .ok_or(Fail::NoMessage),
        }
    }
}

fn page(top: Position, publications: Vec<Publication>, complete: bool) -> HistoryPage {
    HistoryPage::new(top, publications, complete)
}

impl HistoryStore for NatsHistory {
    fn engine(&self) -> &'static str {
        "nats"
    }

    fn append<'a>(
        &'a self,
        room: &'a str,
        message: &'a Message,
        policy: &'a HistoryPolicy,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, HistoryError>> {
        Box::pin(async move {
            match self
                .append_once(room, message, policy, idempotency_key)
                .await
            {
                Err(Fail::StreamGone) => {
                    self.forget();
                    Ok(self
                        .append_once(room, message, policy, idempotency_key)
                        .await?)
                }
                other => Ok(other?),
            }
        })
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a Position>,
        limit: usize,
        policy: &'a HistoryPolicy,
    ) -> BoxFuture<'a, Result<HistoryPage, HistoryError>> {
        Box::pin(async move {
            match self.read_once(room, since, limit, policy).await {
                Err(Fail::StreamGone) => {
                    self.forget();
                    Ok(self.read_once(room, since, limit, policy).await?)
                }
                other => Ok(other?),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed() {
        let h = parse_headers(b"NATS/1.0\r\nWharf-Epoch: abc\r\nWharf-Offset: 12\r\n\r\n");
        assert_eq!(h.get("Wharf-Epoch").map(String::as_str), Some("abc"));
        assert_eq!(h.get("Wharf-Offset").map(String::as_str), Some("12"));
        assert!(parse_headers(b"").is_empty());
    }

    #[test]
    fn limits_only_grow_and_keep_the_window_within_the_age() {
        let small = Limits::of(&HistoryPolicy::new(10, Duration::from_secs(60)));
        assert_eq!(small.duplicates, small.max_age, "window capped by the ttl");
        let big = Limits::of(&HistoryPolicy::new(100, Duration::from_secs(600)));
        assert!(!small.covers(&big));
        let merged = small.merge(&big);
        assert!(merged.covers(&big) && merged.covers(&small));
        assert_eq!(
            Limits::of(&HistoryPolicy::new(0, Duration::ZERO)).per_subject,
            1
        );
    }
}
