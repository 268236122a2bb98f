//! [`Position`]: where a publication sits in its room, `"EPOCH:OFFSET"`.

use std::fmt;
use std::str::FromStr;

use crate::ClientError;

/// The position of a publication in its room: the room's history *epoch* and the
/// publication's *offset* (1, 2, 3, … without gaps; 0 is the top of an empty room).
///
/// On the wire it is the string `"EPOCH:OFFSET"`. Offsets are only comparable within one
/// epoch: a new epoch means the room's history was lost.
///
/// ```
/// use wharf_client::rooms::Position;
///
/// let p: Position = "k3v9x2:17".parse()?;
/// assert_eq!(p.epoch(), "k3v9x2");
/// assert_eq!(p.offset(), 17);
/// assert_eq!(p.to_string(), "k3v9x2:17");
/// assert!(p.is_before(&"k3v9x2:18".parse()?));
/// assert!(!p.is_before(&"other:18".parse()?));
/// assert!("k3v9x2".parse::<Position>().is_err());
/// # Ok::<(), wharf_client::ClientError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    epoch: String,
    offset: u64,
}

impl Position {
    /// A position from its parts.
    pub fn new(epoch: impl Into<String>, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    /// The room's history epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The offset within the epoch.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether `other` is later in the same epoch (`false` across epochs: they do not
    /// compare).
    pub fn is_before(&self, other: &Position) -> bool {
        self.epoch == other.epoch && self.offset < other.offset
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

impl FromStr for Position {
    type Err = ClientError;

    /// Parses `"EPOCH:OFFSET"`; the epoch is whatever precedes the last `:` (non-empty),
    /// the offset a decimal integer. Anything else is [`ClientError::Protocol`].
    fn from_str(s: &str) -> Result<Position, ClientError> {
        let bad = || ClientError::Protocol(format!("bad position {s:?}"));
        let (epoch, offset) = s.rsplit_once(':').ok_or_else(bad)?;
        if epoch.is_empty() || offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
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
    fn parses_and_prints() -> Result<(), ClientError> {
        for s in ["e:0", "k3v9x2:17", "a:b:9", "x:18446744073709551615"] {
            assert_eq!(s.parse::<Position>()?.to_string(), s);
        }
        for s in [
            "",
            ":",
            "e:",
            ":3",
            "e:-1",
            "e:+1",
            "e:1.0",
            "e: 1",
            "noepoch",
            "e:18446744073709551616",
        ] {
            assert!(s.parse::<Position>().is_err(), "{s:?}");
        }
        Ok(())
    }

    #[test]
    fn order_is_per_epoch() {
        let a = Position::new("e", 3);
        assert!(a.is_before(&Position::new("e", 4)));
        assert!(!a.is_before(&Position::new("e", 3)));
        assert!(!a.is_before(&Position::new("e", 2)));
        assert!(!a.is_before(&Position::new("f", 9)));
    }
}
