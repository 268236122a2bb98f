//! Reading a command frame: `{"id": N, "op": "…", …}` (docs/protocol.md, "Commands").
//!
//! A frame that is not a command at all is a [`Violation`] (the connection is closed); a
//! command whose fields are wrong is answered with an error and the connection stays open.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api::error::ApiError;

/// The largest id: 2^53 − 1, the largest integer a JavaScript number holds exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// A frame that is not a command: the connection is closed with 4400 and [`Violation::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Not JSON, or not a JSON object.
    NotObject,
    /// No `id`, or not an integer from 0 to [`MAX_ID`].
    MissingId,
    /// No `op`, or not one of the five commands.
    UnknownOp,
}

impl Violation {
    /// The close reason.
    pub fn reason(self) -> &'static str {
        match self {
            Violation::NotObject => "not a JSON object",
            Violation::MissingId => "missing id",
            Violation::UnknownOp => "unknown op",
        }
    }
}

/// One command, its fields checked for shape (not yet for meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `subscribe {room, since?}`.
    Subscribe(Subscribe),
    /// `unsubscribe {room}`.
    Unsubscribe(RoomOnly),
    /// `publish {room, text | binary_base64, idempotency_key?}`.
    Publish(Publish),
    /// `history {room, since?, limit?}`.
    History(History),
    /// `presence {room}`.
    Presence(RoomOnly),
}

/// `subscribe`'s fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// The room.
    pub room: String,
    /// The last position the client received, `EPOCH:OFFSET`.
    pub since: Option<String>,
}

/// The fields of `unsubscribe` and `presence`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomOnly {
    /// The room.
    pub room: String,
}

/// `publish`'s fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The room.
    pub room: String,
    /// A text publication.
    pub text: Option<String>,
    /// A binary publication, standard base64.
    pub binary_base64: Option<String>,
    /// A key naming this publish, for retries.
    pub idempotency_key: Option<String>,
}

/// `history`'s fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The room.
    pub room: String,
    /// Publications after this position (from the oldest kept without it).
    pub since: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// A parsed frame: the command, or its id and why its fields are wrong.
pub type Parsed = Result<(u64, Op), (u64, ApiError)>;

/// Reads one text frame.
pub fn parse(text: &str) -> Result<Parsed, Violation> {
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(text) else {
        return Err(Violation::NotObject);
    };
    let id = fields
        .remove("id")
        .and_then(|id| id.as_u64())
        .filter(|id| *id <= MAX_ID)
        .ok_or(Violation::MissingId)?;
    let op = match fields.remove("op") {
        Some(Value::String(op)) => op,
        _ => return Err(Violation::UnknownOp),
    };
    let op = match op.as_str() {
        "subscribe" => args(fields).map(Op::Subscribe),
        "unsubscribe" => args(fields).map(Op::Unsubscribe),
        "publish" => args(fields).map(Op::Publish),
        "history" => args(fields).map(Op::History),
        "presence" => args(fields).map(Op::Presence),
        _ => return Err(Violation::UnknownOp),
    };
    Ok(op.map(|op| (id, op)).map_err(|e| (id, e)))
}

/// The rest of the object as a command's fields, or 400 `bad_request` naming what is wrong.
fn args<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request("bad_request", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_that_are_not_commands_are_violations() {
        for (text, violation) in [
            ("not json", Violation::NotObject),
            ("[1,2]", Violation::NotObject),
            ("\"text\"", Violation::NotObject),
            (r#"{"op":"subscribe","room":"a"}"#, Violation::MissingId),
            (r#"{"id":-1,"op":"subscribe"}"#, Violation::MissingId),
            (r#"{"id":1.5,"op":"subscribe"}"#, Violation::MissingId),
            (r#"{"id":"7","op":"subscribe"}"#, Violation::MissingId),
            (
                r#"{"id":9007199254740992,"op":"subscribe"}"#,
                Violation::MissingId,
            ),
            (r#"{"id":1}"#, Violation::UnknownOp),
            (r#"{"id":1,"op":"join"}"#, Violation::UnknownOp),
            (r#"{"id":1,"op":7}"#, Violation::UnknownOp),
        ] {
            assert_eq!(parse(text).err(), Some(violation), "{text}");
        }
    }

    #[test]
    fn commands_are_read_with_their_fields() {
        let parsed = parse(r#"{"id":9007199254740991,"op":"subscribe","room":"a","since":"e:1"}"#);
        let expected = Op::Subscribe(Subscribe {
            room: "a".into(),
            since: Some("e:1".into()),
        });
        assert_eq!(parsed.ok().and_then(Result::ok), Some((MAX_ID, expected)));
        let parsed = parse(r#"{"op":"history","id":0,"room":"a","limit":5}"#);
        let Ok(Ok((0, Op::History(history)))) = parsed else {
            panic!("a history command: {parsed:?}");
        };
        assert_eq!((history.room.as_str(), history.limit), ("a", Some(5)));
    }

    #[test]
    fn wrong_fields_are_an_error_for_that_id() {
        for text in [
            r#"{"id":4,"op":"subscribe"}"#,
            r#"{"id":4,"op":"subscribe","room":5}"#,
            r#"{"id":4,"op":"presence","room":"a","extra":true}"#,
            r#"{"id":4,"op":"history","room":"a","limit":-1}"#,
        ] {
            let Ok(Err((4, error))) = parse(text) else {
                panic!("{text}: expected an error for id 4");
            };
            assert_eq!(error.error(), "bad_request", "{text}");
        }
    }
}
