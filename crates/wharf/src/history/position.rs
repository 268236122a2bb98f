//! A publication's place in its room's history: `{epoch, offset}`, written `EPOCH:OFFSET`.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The longest epoch a position may carry, in bytes.
const MAX_EPOCH_LEN: usize = 32;

/// Where a publication stands in its room's history.
///
/// Offsets count from 1 within an epoch; offset 0 is "before the first publication". The
/// epoch is a short token (ASCII letters, digits, `-` and `_`, at most 32 bytes) that changes
/// whenever the room's history was lost. Written and parsed as `EPOCH:OFFSET`:
///
/// ```
/// use wharf::history::Position;
/// let p: Position = "k3xq9a:42".parse().unwrap();
/// assert_eq!(p, Position::new("k3xq9a", 42));
/// assert_eq!(p.to_string(), "k3xq9a:42");
/// assert!("k3xq9a".parse::<Position>().is_err());
/// assert!("k3xq9a:-1".parse::<Position>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The history this offset belongs to.
    pub epoch: String,
    /// The publication's number in that history, from 1.
    pub offset: u64,
}

impl Position {
    /// A position.
    pub fn new(epoch: impl Into<String>, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    /// A fresh epoch: 12 characters from the clock and the process's random hasher keys,
    /// different on every call with overwhelming likelihood. Stores call it when they start
    /// a history.
    pub fn new_epoch() -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // A fresh RandomState has fresh keys (seeded per process, bumped per instance).
        let mixed = RandomState::new().hash_one(nanos);
        const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
        (0..12)
            .map(|i| ALPHABET[((mixed >> (i * 5)) & 31) as usize] as char)
            .collect()
    }

    /// Whether `epoch` is a well-formed epoch token.
    pub fn valid_epoch(epoch: &str) -> bool {
        !epoch.is_empty()
            && epoch.len() <= MAX_EPOCH_LEN
            && epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// A string that is not `EPOCH:OFFSET`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a position: expected EPOCH:OFFSET (EPOCH of 1 to 32 letters, digits, - or _; OFFSET a whole number)"
)]
pub struct ParsePositionError(String);

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Position, ParsePositionError> {
        let bad = || ParsePositionError(s.chars().take(80).collect());
        let (epoch, offset) = s.rsplit_once(':').ok_or_else(bad)?;
        if !Position::valid_epoch(epoch) || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let offset = offset.parse().map_err(|_| bad())?;
        Ok(Position::new(epoch, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_valid_and_differ() {
        let a = Position::new_epoch();
        let b = Position::new_epoch();
        assert!(Position::valid_epoch(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_positions_are_refused() {
        for s in [
            "",
            ":",
            "e:",
            ":1",
            "e:1x",
            "e:+1",
            "e f:1",
            "e:99999999999999999999999",
            "0123456789012345678901234567890123:1",
        ] {
            assert!(s.parse::<Position>().is_err(), "{s:?} parsed");
        }
        assert_eq!("a-b_c:0".parse(), Ok(Position::new("a-b_c", 0)));
    }
}
