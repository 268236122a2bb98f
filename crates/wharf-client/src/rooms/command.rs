//! The wire format of `wharf.rooms.v1`, without IO: commands encoded to JSON text, and
//! server frames decoded into replies, error replies and pushes. The replies the
//! application sees ([`Published`], [`History`], [`Presence`]) are defined here too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Payload, Position, Publication};
use crate::ClientError;

/// A command, before it gets its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Subscribe {
        room: String,
        since: Option<Position>,
    },
    Unsubscribe {
        room: String,
    },
    Publish {
        room: String,
        payload: Payload,
        idempotency_key: Option<String>,
    },
    History {
        room: String,
        since: Option<Position>,
        limit: Option<u32>,
    },
    Presence {
        room: String,
    },
}

impl Command {
    /// The JSON text sent for this command with `id`.
    pub(crate) fn encode(&self, id: u64) -> String {
        let mut v = match self {
            Command::Subscribe { room, since } => {
                let mut v = json!({"op": "subscribe", "room": room});
                if let Some(since) = since {
                    v["since"] = since.to_string().into();
                }
                v
            }
            Command::Unsubscribe { room } => json!({"op": "unsubscribe", "room": room}),
            Command::Publish {
                room,
                payload,
                idempotency_key,
            } => {
                let mut v = json!({"op": "publish", "room": room});
                match payload {
                    Payload::Text(text) => v["text"] = text.as_str().into(),
                    Payload::Binary(data) => v["binary_base64"] = BASE64.encode(data).into(),
                }
                if let Some(key) = idempotency_key {
                    v["idempotency_key"] = key.as_str().into();
                }
                v
            }
            Command::History { room, since, limit } => {
                let mut v = json!({"op": "history", "room": room});
                if let Some(since) = since {
                    v["since"] = since.to_string().into();
                }
                if let Some(limit) = limit {
                    v["limit"] = (*limit).into();
                }
                v
            }
            Command::Presence { room } => json!({"op": "presence", "room": room}),
        };
        v["id"] = id.into();
        v.to_string()
    }
}

/// One frame from the server.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A publication pushed for a subscribed room (no `id`).
    Push(Publication),
    /// The successful reply to command `id`: the whole object.
    Reply { id: u64, body: Map<String, Value> },
    /// The error reply to command `id`, as [`ClientError::Command`].
    Error { id: u64, error: ClientError },
}

impl Incoming {
    /// Decodes one text frame. A frame that is not one of the three shapes is
    /// [`ClientError::Protocol`] (the session then reconnects).
    pub(crate) fn decode(text: &str) -> Result<Incoming, ClientError> {
        let Ok(Value::Object(body)) = serde_json::from_str::<Value>(text) else {
            return Err(ClientError::Protocol(format!(
                "rooms: frame is not a JSON object: {}",
                clip(text)
            )));
        };
        let Some(id) = body.get("id") else {
            return Ok(Incoming::Push(publication(&body, None)?));
        };
        let id = id
            .as_u64()
            .ok_or_else(|| ClientError::Protocol(format!("rooms: bad id in {}", clip(text))))?;
        if let Some(error) = body.get("error") {
            let code = body.get("code").and_then(Value::as_u64).unwrap_or(0);
            let error = ClientError::Command {
                code: u16::try_from(code).unwrap_or(0),
                error: error.as_str().unwrap_or_default().to_owned(),
                msg: str_field(&body, "msg").unwrap_or_default().to_owned(),
            };
            return Ok(Incoming::Error { id, error });
        }
        Ok(Incoming::Reply { id, body })
    }
}

/// The reply to `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscribed {
    pub(crate) position: Position,
    pub(crate) recovered: bool,
}

impl Subscribed {
    pub(crate) fn decode(body: &Map<String, Value>) -> Result<Subscribed, ClientError> {
        Ok(Subscribed {
            position: position_field(body, "position")?,
            recovered: body
                .get("recovered")
                .and_then(Value::as_bool)
                .ok_or_else(|| missing("recovered"))?,
        })
    }
}

/// The reply to a publish: where the publication was stored.
///
/// ```no_run
/// use wharf_client::rooms::{Payload, Rooms};
///
/// # async fn demo(rooms: Rooms) -> Result<(), wharf_client::ClientError> {
/// let first = rooms.publish_with("demo:news", Payload::from("hi"), Some("msg-1")).await?;
/// let retry = rooms.publish_with("demo:news", Payload::from("hi"), Some("msg-1")).await?;
/// assert!(retry.duplicate && retry.position == first.position);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The publication's position.
    pub position: Position,
    /// True when the idempotency key was seen already: nothing was published again and
    /// `position` is the first publication's.
    pub duplicate: bool,
}

impl Published {
    pub(crate) fn decode(body: &Map<String, Value>) -> Result<Published, ClientError> {
        Ok(Published {
            position: position_field(body, "position")?,
            duplicate: body
                .get("duplicate")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// The reply to a history read: the publications after `since` the room still keeps.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct History {
    /// The room's current top (the last position, or `EPOCH:0`).
    pub top: Position,
    /// Whether nothing after `since` is missing (false: `since` is of another epoch, or
    /// older than what the room keeps, or `limit` cut the list).
    pub complete: bool,
    /// The publications, oldest first.
    pub publications: Vec<Publication>,
}

impl History {
    pub(crate) fn decode(room: &str, body: &Map<String, Value>) -> Result<History, ClientError> {
        let list = body
            .get("publications")
            .and_then(Value::as_array)
            .ok_or_else(|| missing("publications"))?;
        let publications = list
            .iter()
            .map(|p| match p {
                Value::Object(p) => publication(p, Some(room)),
                _ => Err(missing("publications[]")),
            })
            .collect::<Result<_, _>>()?;
        Ok(History {
            top: position_field(body, "top")?,
            complete: body
                .get("complete")
                .and_then(Value::as_bool)
                .ok_or_else(|| missing("complete"))?,
            publications,
        })
    }
}

/// The reply to a presence read: who is subscribed to the room, on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Presence {
    /// How many connections follow the room.
    pub count: u64,
    /// The connections, as the server lists them.
    pub members: Vec<Member>,
}

/// One connection in a [`Presence`] reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The connection's id, as the server prints it.
    pub conn: String,
    /// The user id of its token (`None` without authentication).
    pub user: Option<String>,
}

impl Presence {
    pub(crate) fn decode(body: &Map<String, Value>) -> Result<Presence, ClientError> {
        let members = body
            .get("members")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|m| Member {
                        conn: m.get("conn").map(scalar).unwrap_or_default(),
                        user: m.get("user").filter(|u| !u.is_null()).map(scalar),
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let count = body
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or(members.len() as u64);
        Ok(Presence { count, members })
    }
}

/// A publication object: `room` (or the room of the request), `position`, and `text` or
/// `binary_base64`.
fn publication(body: &Map<String, Value>, room: Option<&str>) -> Result<Publication, ClientError> {
    let room = match str_field(body, "room") {
        Some(room) => room.to_owned(),
        None => room.ok_or_else(|| missing("room"))?.to_owned(),
    };
    let payload = match (str_field(body, "text"), str_field(body, "binary_base64")) {
        (Some(text), None) => Payload::Text(text.to_owned()),
        (None, Some(b64)) => {
            Payload::Binary(Bytes::from(BASE64.decode(b64).map_err(|e| {
                ClientError::Protocol(format!("rooms: bad binary_base64: {e}"))
            })?))
        }
        _ => return Err(missing("text or binary_base64")),
    };
    Ok(Publication {
        room,
        position: position_field(body, "position")?,
        payload,
    })
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn position_field(body: &Map<String, Value>, name: &str) -> Result<Position, ClientError> {
    str_field(body, name).ok_or_else(|| missing(name))?.parse()
}

fn missing(field: &str) -> ClientError {
    ClientError::Protocol(format!("rooms: reply without a valid `{field}`"))
}

/// A string or a number as text (connection and user ids may be either).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most 200 bytes of a frame, for error messages.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn encodes_every_command() {
        let since = Some(Position::new("k3", 5));
        let cases = [
            (
                Command::Subscribe {
                    room: "a".into(),
                    since: None,
                },
                json!({"id": 1, "op": "subscribe", "room": "a"}),
            ),
            (
                Command::Subscribe {
                    room: "a".into(),
                    since: since.clone(),
                },
                json!({"id": 1, "op": "subscribe", "room": "a", "since": "k3:5"}),
            ),
            (
                Command::Unsubscribe { room: "a".into() },
                json!({"id": 1, "op": "unsubscribe", "room": "a"}),
            ),
            (
                Command::Publish {
                    room: "a".into(),
                    payload: Payload::from("hé \"x\""),
                    idempotency_key: None,
                },
                json!({"id": 1, "op": "publish", "room": "a", "text": "hé \"x\""}),
            ),
            (
                Command::Publish {
                    room: "a".into(),
                    payload: Payload::from(vec![0u8, 255, 7]),
                    idempotency_key: Some("k".into()),
                },
                json!({"id": 1, "op": "publish", "room": "a", "binary_base64": "AP8H", "idempotency_key": "k"}),
            ),
            (
                Command::History {
                    room: "a".into(),
                    since,
                    limit: Some(10),
                },
                json!({"id": 1, "op": "history", "room": "a", "since": "k3:5", "limit": 10}),
            ),
            (
                Command::Presence { room: "a".into() },
                json!({"id": 1, "op": "presence", "room": "a"}),
            ),
        ];
        for (command, want) in cases {
            assert_eq!(parse(&command.encode(1)), want, "{command:?}");
        }
        let big = Command::Presence { room: "a".into() }.encode((1 << 53) - 1);
        assert_eq!(parse(&big)["id"], json!(9_007_199_254_740_991u64));
    }

    #[test]
    fn decodes_pushes_replies_and_errors() -> Result<(), ClientError> {
        let push =
            Incoming::decode(r#"{"room":"chat:lobby","position":"k3v9x2:18","text":"hello"}"#)?;
        let Incoming::Push(push) = push else {
            panic!("{push:?}")
        };
        assert_eq!(
            push,
            Publication {
                room: "chat:lobby".into(),
                position: Position::new("k3v9x2", 18),
                payload: Payload::from("hello"),
            }
        );
        let push = Incoming::decode(r#"{"room":"r","position":"e:1","binary_base64":"AP8H"}"#)?;
        let Incoming::Push(p) = push else {
            panic!("{push:?}")
        };
        assert_eq!(p.payload, Payload::from(vec![0u8, 255, 7]));

        let reply = Incoming::decode(
            r#"{"id":1,"room":"demo:news","position":"k3v9x2:4","recovered":true,"delivered":0}"#,
        )?;
        let Incoming::Reply { id: 1, body } = reply else {
            panic!("{reply:?}")
        };
        let s = Subscribed::decode(&body)?;
        assert_eq!(
            s,
            Subscribed {
                position: Position::new("k3v9x2", 4),
                recovered: true
            }
        );

        let error = Incoming::decode(
            r#"{"id": 7, "code": 403, "error": "forbidden", "msg": "this token may not subscribe to `news`"}"#,
        )?;
        let Incoming::Error { id: 7, error } = error else {
            panic!("{error:?}")
        };
        assert_eq!(error.error_code(), Some("forbidden"));
        assert!(matches!(error, ClientError::Command { code: 403, .. }));
        Ok(())
    }

    #[test]
    fn decodes_history_and_presence() -> Result<(), ClientError> {
        let Incoming::Reply { body, .. } = Incoming::decode(
            r#"{"id":3,"room":"r","top":"e:9","complete":false,"publications":[{"position":"e:8","text":"a"},{"position":"e:9","binary_base64":""}]}"#,
        )?
        else {
            panic!("not a reply")
        };
        let h = History::decode("r", &body)?;
        assert_eq!(h.top, Position::new("e", 9));
        assert!(!h.complete);
        assert_eq!(h.publications.len(), 2);
        assert_eq!(h.publications[0].room, "r");
        assert_eq!(h.publications[1].payload, Payload::Binary(Bytes::new()));

        let Incoming::Reply { body, .. } = Incoming::decode(
            r#"{"id":4,"room":"r","count":2,"members":[{"conn":"n1-7","user":"42"},{"conn":9,"user":null}]}"#,
        )?
        else {
            panic!("not a reply")
        };
        let p = Presence::decode(&body)?;
        assert_eq!(p.count, 2);
        assert_eq!(
            p.members[0],
            Member {
                conn: "n1-7".into(),
                user: Some("42".into())
            }
        );
        assert_eq!(
            p.members[1],
            Member {
                conn: "9".into(),
                user: None
            }
        );
        Ok(())
    }

    #[test]
    fn rejects_malformed_frames() {
        for bad in [
            "",
            "[]",
            "nope",
            r#"{"id":-1}"#,
            r#"{"id":"1"}"#,
            r#"{"room":"r","position":"e:1"}"#,
            r#"{"room":"r","position":"e1","text":"x"}"#,
            r#"{"room":"r","position":"e:1","text":"x","binary_base64":"AA=="}"#,
            r#"{"room":"r","position":"e:1","binary_base64":"!!"}"#,
            r#"{"position":"e:1","text":"x"}"#,
        ] {
            assert!(Incoming::decode(bad).is_err(), "{bad}");
        }
        let Ok(Incoming::Reply { body, .. }) = Incoming::decode(r#"{"id":1,"position":"e:1"}"#)
        else {
            panic!("a reply")
        };
        assert!(Subscribed::decode(&body).is_err());
    }
}
