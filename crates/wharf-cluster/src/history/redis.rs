//! History in Redis Streams: one stream per room, offsets assigned by a Lua script in the
//! same atomic step as the `XADD`.
//!
//! # Keys
//!
//! - `<prefix>:history:<room>`: the stream. Entry IDs are `<offset>-0`, so reading after an
//!   offset is `XRANGE key <offset+1> +`. Fields: `t` (server time in ms), `k` (`t` text or
//!   `b` binary), `d` (the payload, byte for byte).
//! - `<prefix>:history-meta:<room>`: a hash `{epoch, top}`.
//! - `<prefix>:history-key:<room length>:<room>:<key>`: one per idempotency key, `SET … PX
//!   window`, holding `epoch:offset` (the length makes the name unambiguous whatever the
//!   room and key contain).
//!
//! # Why it is atomic
//!
//! Both scripts run inside Redis, which runs one script at a time: choosing the epoch,
//! checking the idempotency key, incrementing `top`, the `XADD` and the trims cannot
//! interleave with another publisher's. Offsets are contiguous because `top` is only ever
//! incremented next to the `XADD` that uses it.
//!
//! # Epochs, trimming, expiry
//!
//! - A new epoch is chosen (by the caller, passed in) when the meta hash is missing, or when
//!   it says messages were published but the stream is gone: evicted, deleted, flushed,
//!   expired, or a Redis restarted without persistence. The old stream is then deleted and
//!   offsets restart at 1.
//! - Size: `XADD … MAXLEN = size` (exact, so a room never holds more than `size`).
//! - Age: every entry carries its time; each append and read drops the entries older than
//!   `ttl` (`XTRIM … MINID`, exact since IDs are offsets). Time is Redis's `TIME`, one clock
//!   for every node.
//! - Idle rooms: every append sets the stream and meta to expire `ttl` after it, so a room
//!   idle for longer than `ttl` disappears entirely and its next publish starts a new epoch,
//!   as in the memory store.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use tokio::sync::Mutex;
use wharf::Message;
use wharf::cluster::{BackplaneError, BoxFuture};
use wharf::history::{
    Appended, HistoryError, HistoryPage, HistoryPolicy, HistoryStore, Position, Publication,
    completeness,
};

/// The longest a connect or a command may take; an unreachable Redis answers `Unavailable`
/// within it.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Lua shared by both scripts.
const COMMON: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function num(n) return string.format('%.0f', n) end
-- The room's epoch and top offset; a new history when it was lost.
local function open(stream, meta, fresh, ttl)
  local m = redis.call('HMGET', meta, 'epoch', 'top')
  local epoch, top = m[1], tonumber(m[2])
  if epoch and top and (top == 0 or redis.call('EXISTS', stream) == 1) then
    return epoch, top
  end
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', fresh, 'top', 0)
  redis.call('PEXPIRE', meta, ttl)
  return fresh, 0
end
-- Drops the entries older than ttl: entries are in time order, IDs are offsets.
local function trim_age(stream, now, ttl)
  local cutoff = now - ttl
  -- The common case, nothing expired, costs one entry.
  local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #head == 0 then return end
  local f = head[1][2]
  for i = 1, #f, 2 do
    if f[i] == 't' and tonumber(f[i + 1]) >= cutoff then return end
  end
  while true do
    local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    if #batch == 0 then return end
    for _, e in ipairs(batch) do
      local f, t = e[2], nil
      for i = 1, #f, 2 do if f[i] == 't' then t = tonumber(f[i + 1]) end end
      if t and t >= cutoff then
        redis.call('XTRIM', stream, 'MINID', e[1])
        return
      end
    end
    local last = tonumber(string.match(batch[#batch][1], '^(%d+)'))
    redis.call('XTRIM', stream, 'MINID', num(last + 1))
    if #batch < 64 then return end
  end
end
";

/// KEYS: stream, meta, idempotency key. ARGV: size, ttl ms, fresh epoch, has key (`1`/`0`),
/// window ms, kind, data. Returns `{epoch, offset, duplicate (1/0)}`.
const APPEND: &str = r"
local stream, meta, idem = KEYS[1], KEYS[2], KEYS[3]
local size, ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
local now = now_ms()
local epoch, top = open(stream, meta, ARGV[3], ttl)
if ARGV[4] == '1' then
  local seen = redis.call('GET', idem)
  if seen then
    local e, o = string.match(seen, '^(.*):(%d+)$')
    -- A key from a lost history does not count: memory forgets it with the room.
    if e == epoch then return {epoch, tonumber(o), 1} end
  end
end
trim_age(stream, now, ttl)
top = top + 1
redis.call('XADD', stream, 'MAXLEN', '=', size, num(top) .. '-0',
  't', num(now), 'k', ARGV[6], 'd', ARGV[7])
redis.call('HSET', meta, 'top', num(top))
redis.call('PEXPIRE', stream, ttl)
redis.call('PEXPIRE', meta, ttl)
if ARGV[4] == '1' then
  redis.call('SET', idem, epoch .. ':' .. num(top), 'PX', window)
end
return {epoch, top, 0}
";

/// KEYS: stream, meta. ARGV: ttl ms, fresh epoch, since epoch (empty: from the start),
/// since offset, limit, size. Returns `{epoch, top, oldest, entries}`.
const READ: &str = r"
local stream, meta = KEYS[1], KEYS[2]
local ttl, limit, after = tonumber(ARGV[1]), tonumber(ARGV[5]), tonumber(ARGV[4])
local epoch, top = open(stream, meta, ARGV[2], ttl)
trim_age(stream, now_ms(), ttl)
-- The size may be smaller than when the last message was added.
redis.call('XTRIM', stream, 'MAXLEN', '=', ARGV[6])
local oldest = top + 1
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if first[1] then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
local entries = {}
if limit > 0 and after < top and (ARGV[3] == '' or ARGV[3] == epoch) then
  entries = redis.call('XRANGE', stream, num(math.max(after + 1, oldest)), '+', 'COUNT', limit)
end
return {epoch, top, oldest, entries}
";

/// A [`HistoryStore`] in Redis Streams (`redis://host:port[/db]`). Connects at first use
/// and again after the connection is lost; while Redis is unreachable every call answers
/// [`HistoryError::Unavailable`] within about 2 s.
pub struct RedisHistory {
    client: Client,
    prefix: String,
    /// The connection and the scripts' SHA1s, made at first use and dropped when the
    /// connection fails. A tokio mutex, held across the connect, so that a burst of calls
    /// after an outage makes one connection, not one each.
    conn: Mutex<Option<Connected>>,
}

#[derive(Clone)]
struct Connected {
    conn: MultiplexedConnection,
    append_sha: Arc<str>,
    read_sha: Arc<str>,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisHistory {
    /// A store for the Redis at `url`, keys under `<prefix>:history…`. Nothing connects yet.
    pub fn new(url: &str, prefix: &str) -> Result<RedisHistory, BackplaneError> {
        let client = Client::open(url).map_err(|e| BackplaneError::new(format!("{url}: {e}")))?;
        Ok(RedisHistory {
            client,
            prefix: prefix.to_owned(),
            conn: Mutex::new(None),
        })
    }

    fn stream_key(&self, room: &str) -> String {
        format!("{}:history:{room}", self.prefix)
    }

    fn meta_key(&self, room: &str) -> String {
        format!("{}:history-meta:{room}", self.prefix)
    }

    fn idempotency_key(&self, room: &str, key: &str) -> String {
        format!("{}:history-key:{}:{room}:{key}", self.prefix, room.len())
    }

    /// The connection, made now if there is none. Bounded by [`TIMEOUT`] in all, waiting
    /// for another caller's connect included, so a burst of calls while Redis does not
    /// answer fails within it instead of queueing one connect timeout after another.
    async fn connected(&self) -> Result<Connected, HistoryError> {
        tokio::time::timeout(TIMEOUT, self.connect())
            .await
            .map_err(|_| HistoryError::Unavailable("redis: connect timed out".to_owned()))?
    }

    async fn connect(&self) -> Result<Connected, HistoryError> {
        let mut slot = self.conn.lock().await;
        if let Some(connected) = &*slot {
            return Ok(connected.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)?;
        let append_sha = load(&mut conn, APPEND).await?;
        let read_sha = load(&mut conn, READ).await?;
        let connected = Connected {
            conn,
            append_sha,
            read_sha,
        };
        *slot = Some(connected.clone());
        Ok(connected)
    }

    /// Runs a script by SHA1, loading it again if Redis lost it (restart, `SCRIPT FLUSH`);
    /// forgets the connection when it failed so that the next call reconnects.
    async fn run(
        &self,
        which: Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, HistoryError> {
        let mut connected = self.connected().await?;
        let (sha, body) = match which {
            Script::Append => (&*connected.append_sha, APPEND),
            Script::Read => (&*connected.read_sha, READ),
        };
        let mut call = redis::cmd("EVALSHA");
        call.arg(sha).arg(keys.len()).arg(keys).arg(args);
        let result = match call.query_async(&mut connected.conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                let mut call = redis::cmd("EVAL");
                call.arg(script(body)).arg(keys.len()).arg(keys).arg(args);
                call.query_async(&mut connected.conn).await
            }
            other => other,
        };
        result.map_err(|e| {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_unrecoverable_error()
            {
                // try_lock: a call already reconnecting holds the lock and replaces it.
                if let Ok(mut slot) = self.conn.try_lock() {
                    *slot = None;
                }
            }
            unavailable(e)
        })
    }
}

#[derive(Clone, Copy)]
enum Script {
    Append,
    Read,
}

/// The whole text of a script: the shared functions, then its body.
fn script(body: &str) -> String {
    format!("{COMMON}{body}")
}

async fn load(conn: &mut MultiplexedConnection, body: &str) -> Result<Arc<str>, HistoryError> {
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(script(body))
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(sha.into())
}

fn unavailable(e: RedisError) -> HistoryError {
    HistoryError::Unavailable(format!("redis: {e}"))
}

fn corrupt(what: &str) -> HistoryError {
    HistoryError::Unavailable(format!("redis: unexpected history data ({what})"))
}

fn millis(d: Duration) -> Vec<u8> {
    // At least 1 ms: PEXPIRE 0 and PX 0 would delete at once or be refused.
    d.as_millis()
        .clamp(1, u64::MAX as u128)
        .to_string()
        .into_bytes()
}

impl HistoryStore for RedisHistory {
    fn engine(&self) -> &'static str {
        "redis"
    }

    fn append<'a>(
        &'a self,
        room: &'a str,
        message: &'a Message,
        policy: &'a HistoryPolicy,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, HistoryError>> {
        Box::pin(async move {
            let (stream, meta) = (self.stream_key(room), self.meta_key(room));
            let idem = idempotency_key
                .map(|k| self.idempotency_key(room, k))
                .unwrap_or_else(|| meta.clone());
            let kind: &[u8] = match message {
                Message::Text(_) => b"t",
                _ => b"b",
            };
            let size = policy.size.to_string();
            let epoch = Position::new_epoch();
            let has_key: &[u8] = if idempotency_key.is_some() {
                b"1"
            } else {
                b"0"
            };
            let args: [&[u8]; 7] = [
                size.as_bytes(),
                &millis(policy.ttl),
                epoch.as_bytes(),
                has_key,
                &millis(policy.idempotency_window),
                kind,
                message.as_bytes(),
            ];
            let reply = self
                .run(Script::Append, &[&stream, &meta, &idem], &args)
                .await?;
            let Value::Array(items) = reply else {
                return Err(corrupt("append reply"));
            };
            match &items[..] {
                [epoch, offset, duplicate] => Ok(Appended::new(
                    Position::new(epoch_of(epoch)?, int(offset)?),
                    int(duplicate)? == 1,
                )),
                _ => Err(corrupt("append reply")),
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
            let (stream, meta) = (self.stream_key(room), self.meta_key(room));
            let fresh = Position::new_epoch();
            let (since_epoch, since_offset) = since.map_or(("", 0), |p| (&*p.epoch, p.offset));
            let (since_offset, limit) = (since_offset.to_string(), limit.to_string());
            let size = policy.size.to_string();
            let args: [&[u8]; 6] = [
                &millis(policy.ttl),
                fresh.as_bytes(),
                since_epoch.as_bytes(),
                since_offset.as_bytes(),
                limit.as_bytes(),
                size.as_bytes(),
            ];
            let reply = self.run(Script::Read, &[&stream, &meta], &args).await?;
            let Value::Array(items) = reply else {
                return Err(corrupt("read reply"));
            };
            let [epoch, top, oldest, entries] = &items[..] else {
                return Err(corrupt("read reply"));
            };
            let top = Position::new(epoch_of(epoch)?, int(top)?);
            let complete = completeness(since, &top, int(oldest)?)?;
            let publications = match entries {
                Value::Array(entries) => entries
                    .iter()
                    .map(|e| publication(&top.epoch, e))
                    .collect::<Result<Vec<_>, _>>()?,
                Value::Nil => Vec::new(),
                _ => return Err(corrupt("entries")),
            };
            Ok(HistoryPage::new(top, publications, complete))
        })
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int(value: &Value) -> Result<u64, HistoryError> {
    match value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| corrupt("negative number")),
        other => bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("number")),
    }
}

fn epoch_of(value: &Value) -> Result<String, HistoryError> {
    bytes(value)
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|e| Position::valid_epoch(e))
        .map(str::to_owned)
        .ok_or_else(|| corrupt("epoch"))
}

/// One stream entry: `[id, [field, value, …]]`.
fn publication(epoch: &str, entry: &Value) -> Result<Publication, HistoryError> {
    let Value::Array(parts) = entry else {
        return Err(corrupt("entry"));
    };
    let [id, Value::Array(fields)] = &parts[..] else {
        return Err(corrupt("entry"));
    };
    let offset = bytes(id)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|id| id.split_once('-'))
        .and_then(|(offset, _)| offset.parse().ok())
        .ok_or_else(|| corrupt("entry id"))?;
    let (mut kind, mut data) = (None, None);
    for pair in fields.chunks(2) {
        if let [name, value] = pair {
            match bytes(name) {
                Some(b"k") => kind = bytes(value),
                Some(b"d") => data = bytes(value),
                _ => {}
            }
        }
    }
    let data = data.ok_or_else(|| corrupt("entry without data"))?;
    let message = match kind {
        Some(b"t") => {
            Message::Text(String::from_utf8(data.to_vec()).map_err(|_| corrupt("text not UTF-8"))?)
        }
        Some(b"b") => Message::binary(data.to_vec()),
        _ => return Err(corrupt("entry kind")),
    };
    Ok(Publication::new(Position::new(epoch, offset), message))
}
