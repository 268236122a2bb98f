//! Which rooms a connection may use: room names, and the token's `rooms` and `publish`
//! claims (docs/protocol.md, "Permissions").

use crate::api::error::ApiError;
use crate::tokens::Claims;
use wharf::http::StatusCode;

/// The longest room name, in bytes.
pub const MAX_ROOM: usize = 64;

/// What a command does with a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `subscribe`, `history`, `presence`: the `rooms` claim.
    Follow,
    /// `publish`: the `publish` claim.
    Publish,
}

/// 400 `bad_room` unless `room` is 1 to [`MAX_ROOM`] bytes of ASCII letters, digits and
/// `_ - . : @ / =`.
pub fn check_name(room: &str) -> Result<(), ApiError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_-.:@/=".contains(&b);
    if room.is_empty() || room.len() > MAX_ROOM || !room.bytes().all(allowed) {
        return Err(ApiError::bad_request(
            "bad_room",
            format!("a room name is 1 to {MAX_ROOM} bytes of A-Z a-z 0-9 _ - . : @ / ="),
        ));
    }
    Ok(())
}

/// 403 `forbidden` unless `claims` allow `access` to `room`. No claims (auth off): allowed;
/// an admin token: allowed; else one of the claim's patterns must match, with `{uid}`
/// standing for the token's user id.
pub fn check(claims: Option<&Claims>, access: Access, room: &str) -> Result<(), ApiError> {
    let Some(claims) = claims else {
        return Ok(());
    };
    let patterns = match access {
        Access::Follow => &claims.rooms,
        Access::Publish => &claims.publish,
    };
    if claims.admin || patterns.iter().any(|p| allows(p, claims.uid, room)) {
        return Ok(());
    }
    let verb = match access {
        Access::Follow => "subscribe to",
        Access::Publish => "publish to",
    };
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this token may not {verb} `{room}`"),
    ))
}

/// Whether `pattern` (with `{uid}` replaced by `uid`) matches `room`.
fn allows(pattern: &str, uid: i64, room: &str) -> bool {
    if pattern.contains("{uid}") {
        wharf::pattern::matches(&pattern.replace("{uid}", &uid.to_string()), room)
    } else {
        wharf::pattern::matches(pattern, room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(rooms: &[&str], publish: &[&str], admin: bool) -> Claims {
        let mut claims = Claims::new((42, "alice", admin), 0, 1);
        claims.rooms = rooms.iter().map(|r| r.to_string()).collect();
        claims.publish = publish.iter().map(|r| r.to_string()).collect();
        claims
    }

    #[test]
    fn patterns_with_globs_and_the_uid() {
        let alice = claims(&["news", "chat:*", "user:{uid}"], &["chat:*"], false);
        for (room, follow, publish) in [
            ("news", true, false),
            ("newsy", false, false),
            ("chat:lobby", true, true),
            ("user:42", true, false),
            ("user:43", false, false),
            ("user:4", false, false),
        ] {
            assert_eq!(
                check(Some(&alice), Access::Follow, room).is_ok(),
                follow,
                "{room}"
            );
            assert_eq!(
                check(Some(&alice), Access::Publish, room).is_ok(),
                publish,
                "{room}"
            );
        }
        let error = check(Some(&alice), Access::Publish, "news").err();
        assert_eq!(error.map(|e| e.error()), Some("forbidden"));
    }

    #[test]
    fn nothing_by_default_everything_for_admins_and_without_auth() {
        let nobody = claims(&[], &[], false);
        assert!(check(Some(&nobody), Access::Follow, "news").is_err());
        let admin = claims(&[], &[], true);
        assert!(check(Some(&admin), Access::Publish, "anything").is_ok());
        assert!(check(None, Access::Publish, "anything").is_ok());
    }

    #[test]
    fn names_are_bounded_and_plain() {
        for good in [
            "a",
            "chat:lobby",
            "user:42",
            "a/b=c@d.e-f_g",
            &"x".repeat(64),
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", &"x".repeat(65), "with space", "ünï", "a*b", "a\"b"] {
            assert_eq!(
                check_name(bad).err().map(|e| e.error()),
                Some("bad_room"),
                "{bad}"
            );
        }
    }
}
