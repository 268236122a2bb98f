//! The rooms protocol's frame reader (`wharf_app::rooms::command::parse`) on arbitrary text.
//!
//! Invariants: no panic; whatever is answered for a command (done or refused) carries the
//! frame's own `id`, an integer of at most 2^53 − 1; a violation is reported only for a frame
//! that is not an object, has no such id, or has no known `op`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wharf_app::rooms::command::{MAX_ID, Violation, parse};

const OPS: [&str; 5] = ["subscribe", "unsubscribe", "publish", "history", "presence"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let value: Option<Value> = serde_json::from_str(text).ok();
    let object = value.as_ref().and_then(Value::as_object);
    let id = object
        .and_then(|o| o.get("id"))
        .and_then(Value::as_u64)
        .filter(|id| *id <= MAX_ID);
    let known_op = object
        .and_then(|o| o.get("op"))
        .and_then(Value::as_str)
        .is_some_and(|op| OPS.contains(&op));
    match parse(text) {
        Ok(Ok((got, _))) | Ok(Err((got, _))) => {
            assert_eq!(Some(got), id, "the answer's id is the frame's");
            assert!(known_op, "a command needs a known op");
        }
        Err(Violation::NotObject) => assert!(object.is_none(), "an object is not NotObject"),
        Err(Violation::MissingId) => assert!(object.is_some() && id.is_none()),
        Err(Violation::UnknownOp) => assert!(id.is_some() && !known_op),
    }
});
