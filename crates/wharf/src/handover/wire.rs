//! The handover format: what the old and the new process say to each other over the
//! handover socket, and how each message is framed.
//!
//! Every frame starts with the magic and the format version, so a peer that is not a wharf
//! process, or a wharf of another handover format, is refused on its first frame, before any
//! socket moves:
//!
//! ```text
//! "WHARF-HO" (8 bytes) | version (u16, big-endian) | length (u32, big-endian) | JSON (length bytes)
//! ```
//!
//! The conversation, one message each way at a time:
//!
//! ```text
//! new → old  Hello { pid }
//! old → new  Sockets { node, next_seq, sockets }      + one fd per socket (SCM_RIGHTS)
//! new → old  Ready                                   (config loaded, servers bound, healthy)
//! old → new  Go                                      (the old one stops accepting)
//! old → new  History { rooms }                       (the in-memory history, repeated; v3)
//! old → new  Connections { conns }                   + one fd per connection (repeated)
//! old → new  Done                                    (no more connections)
//! new → old  Resumed { count }                        (all registered, none driven yet; v4)
//! old → new  Released                                (committed: the successor serves; v4)
//! ```
//!
//! Until `Released` the old process owns every connection it sent: it keeps their sockets
//! and states, and the successor touches none of them. A successor that exits, hangs up,
//! refuses or stays silent past the timeout before `Resumed` arrives is killed, and the old
//! process drives the connections on itself.
//!
//! Byte strings (a partial frame header, queued bytes, binary publications) travel as
//! lowercase hex strings, half the size of JSON arrays of numbers.
//!
//! Either side may send `Refused { reason }` instead of its next message and hang up.

use serde::{Deserialize, Serialize};

/// The first bytes of every frame.
pub(crate) const MAGIC: [u8; 8] = *b"WHARF-HO";
/// The format this build speaks. Bump it when a message changes incompatibly.
///
/// - v2: listening sockets and open connections.
/// - v3: a connection's history positions per room and its handler's carried state
///   ([`Handler::carry`](crate::Handler::carry)), the in-memory history (`History`), bytes
///   as hex.
/// - v4: `Resumed` and `Released`: the old process keeps the connections until the successor
///   has registered them all, and takes them back if it fails before.
pub(crate) const VERSION: u16 = 4;
/// Magic, version and length.
pub(crate) const HEAD_LEN: usize = 14;
/// The largest JSON body accepted: above one publication or one connection's queue at the
/// largest limits (16 MiB, as hex), far below a memory problem. Senders batch below
/// [`BATCH_BYTES`].
pub(crate) const MAX_BODY: usize = 64 << 20;
/// What a sender puts in one frame of connections or history before starting the next.
pub(crate) const BATCH_BYTES: usize = 4 << 20;

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Message {
    /// The successor introduces itself.
    Hello {
        /// Its process id (checked against the socket's peer credentials).
        pid: u32,
    },
    /// The old process's listening sockets; the fds travel with this frame, in this order.
    Sockets {
        /// The cluster node id the successor must keep.
        node: u16,
        /// The first connection sequence number the successor may hand out.
        next_seq: u64,
        /// What each fd is.
        sockets: Vec<SocketEntry>,
    },
    /// The successor has everything it needs and is healthy.
    Ready,
    /// The successor is healthy: the old process stops accepting and sends its connections
    /// (it commits only at `Released`).
    Go,
    /// Open connections handed over after `Go`; the fds travel with this frame, in order.
    Connections {
        /// Each connection's state.
        conns: Vec<MovedConn>,
    },
    /// Rooms of the old process's in-memory history store (repeated as needed; a room may
    /// come in several parts, in order), sent before the connections: the successor's
    /// positions continue them.
    History {
        /// Each room's epoch, top and kept publications.
        rooms: Vec<crate::history::RoomSnapshot>,
    },
    /// No more connections: the successor registers them, then says `Resumed`.
    Done,
    /// The successor has registered every connection it received and drives none of them
    /// yet: it waits for `Released`.
    Resumed {
        /// How many it registered.
        count: usize,
    },
    /// The old process has committed: the connections are the successor's, which drives them
    /// and serves from now on. The old process closes what could not move and exits.
    Released,
    /// The sender will not go on, and why.
    Refused {
        /// Said in the other side's log.
        reason: String,
    },
}

/// An open connection handed over: all the successor needs to go on with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MovedConn {
    /// Its id (`ConnId::as_u64`), kept.
    pub(crate) id: u64,
    /// The server it came in on.
    pub(crate) server: String,
    /// The route pattern it matched (the successor checks its router agrees).
    pub(crate) route: String,
    /// The request path (the path parameters are found again from it).
    pub(crate) path: String,
    /// The client's address.
    pub(crate) peer: std::net::SocketAddr,
    /// The subprotocol agreed.
    pub(crate) protocol: Option<String>,
    /// When it opened, in milliseconds since the Unix epoch.
    pub(crate) opened_at_ms: u64,
    /// Its user, when the handshake set one.
    pub(crate) user: Option<String>,
    /// The rooms it is in, in the order it joined them.
    pub(crate) rooms: Vec<MovedRoom>,
    /// What its handler carried ([`Handler::carry`](crate::Handler::carry)), for
    /// [`Handler::resume`](crate::Handler::resume).
    pub(crate) state: serde_json::Value,
    /// The bytes of a frame header read but not yet complete.
    #[serde(with = "hex")]
    pub(crate) read: Vec<u8>,
    /// The bytes queued or partly written to the client, to write first.
    #[serde(with = "hex")]
    pub(crate) write: Vec<u8>,
    /// When the old process stopped serving it (milliseconds since the Unix epoch): the
    /// successor reports the pause each connection saw.
    pub(crate) parked_at_ms: u64,
}

impl MovedConn {
    /// About how many bytes it takes in a frame (for batching).
    pub(crate) fn weight(&self) -> usize {
        512 + 2 * (self.read.len() + self.write.len())
            + self.rooms.iter().map(|r| r.name.len() + 48).sum::<usize>()
            + self.state.to_string().len()
    }
}

/// A room a moved connection is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MovedRoom {
    /// The room's name.
    pub(crate) name: String,
    /// In a history room, the position of the last publication queued to it (everything
    /// up to it is in `write` or was written; nothing after it is): the successor recovers
    /// it from there. `None`: a room without history, or one whose position was unknown
    /// (joined live from the top again).
    pub(crate) position: Option<crate::history::Position>,
}

/// Byte strings as lowercase hex.
pub(crate) mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    /// `bytes` as hex.
    pub(crate) fn encode(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            text.push(DIGITS[usize::from(b >> 4)] as char);
            text.push(DIGITS[usize::from(b & 15)] as char);
        }
        text
    }

    /// Hex as bytes; `None` when it is not an even number of hex digits.
    pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let text = text.as_bytes();
        if text.len() % 2 != 0 {
            return None;
        }
        text.chunks_exact(2)
            .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
            .collect()
    }

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        decode(&text).ok_or_else(|| serde::de::Error::custom("not a hex byte string"))
    }
}

/// One listening socket handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SocketEntry {
    /// The server's name (`ws`, `http`), or the application's name for its own socket.
    pub(crate) name: String,
    /// What kind of socket the fd is.
    pub(crate) kind: SocketKind,
}

/// The kind of a socket handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SocketKind {
    /// A listening TCP socket.
    Tcp,
    /// A listening Unix stream socket.
    Unix,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The peer is not a wharf handover peer at all.
    #[error("the peer does not speak the wharf handover protocol (bad magic)")]
    Magic,
    /// The peer is a wharf of another handover format.
    #[error("the peer speaks handover format v{0}, this process v{VERSION}")]
    Version(u16),
    /// The body is too long or not a message.
    #[error("bad handover message: {0}")]
    Body(String),
}

/// The frame of `message`.
pub(crate) fn encode(message: &Message) -> Vec<u8> {
    // A message of strings and numbers always serialises.
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut frame = Vec::with_capacity(HEAD_LEN + body.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&VERSION.to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Checks a frame's head and returns the length of its body.
pub(crate) fn decode_head(head: &[u8; HEAD_LEN]) -> Result<usize, FrameError> {
    if head[..8] != MAGIC {
        return Err(FrameError::Magic);
    }
    let version = u16::from_be_bytes([head[8], head[9]]);
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let len = u32::from_be_bytes([head[10], head[11], head[12], head[13]]) as usize;
    if len > MAX_BODY {
        return Err(FrameError::Body(format!("{len} bytes is too long")));
    }
    Ok(len)
}

/// Parses a frame's body.
pub(crate) fn decode_body(body: &[u8]) -> Result<Message, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Body(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(frame: &[u8]) -> [u8; HEAD_LEN] {
        let mut head = [0; HEAD_LEN];
        head.copy_from_slice(&frame[..HEAD_LEN]);
        head
    }

    #[test]
    fn a_frame_round_trips() {
        let message = Message::Sockets {
            node: 7,
            next_seq: 42,
            sockets: vec![SocketEntry {
                name: "ws".into(),
                kind: SocketKind::Tcp,
            }],
        };
        let frame = encode(&message);
        let len = decode_head(&head(&frame)).expect("head");
        assert_eq!(len, frame.len() - HEAD_LEN);
        assert_eq!(decode_body(&frame[HEAD_LEN..]), Ok(message));
    }

    #[test]
    fn another_format_or_a_stranger_is_refused_on_the_head() {
        let mut frame = encode(&Message::Ready);
        frame[9] = 1;
        assert_eq!(decode_head(&head(&frame)), Err(FrameError::Version(1)));
        assert!(
            FrameError::Version(1)
                .to_string()
                .contains("v1, this process v4"),
            "{}",
            FrameError::Version(1)
        );
        frame[0] = b'X';
        assert_eq!(decode_head(&head(&frame)), Err(FrameError::Magic));
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        let mut frame = encode(&Message::Go);
        frame[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_head(&head(&frame)),
            Err(FrameError::Body(_))
        ));
        assert!(decode_body(b"{\"type\":\"launch\"}").is_err());
        assert!(decode_body(b"\xff\xfe").is_err());
        assert!(decode_body(b"{\"type\":\"hello\",\"pid\":1,\"extra\":2}").is_err());
    }

    #[test]
    fn a_moved_connection_round_trips_with_its_positions_state_and_bytes() {
        let moved = MovedConn {
            id: 7,
            server: "ws".into(),
            route: "/rooms".into(),
            path: "/rooms".into(),
            peer: "127.0.0.1:9".parse().expect("addr"),
            protocol: Some("wharf.rooms.v1".into()),
            opened_at_ms: 1,
            user: Some("42".into()),
            rooms: vec![
                MovedRoom {
                    name: "news".into(),
                    position: Some(crate::history::Position::new("e1", 17)),
                },
                MovedRoom {
                    name: "plain".into(),
                    position: None,
                },
            ],
            state: serde_json::json!({"tokens": 2.5}),
            read: vec![0x81],
            write: vec![0, 1, 0xfe, 0xff],
            parked_at_ms: 2,
        };
        let message = Message::Connections {
            conns: vec![moved.clone()],
        };
        let frame = encode(&message);
        let body = String::from_utf8_lossy(&frame[HEAD_LEN..]).into_owned();
        assert!(body.contains("\"write\":\"0001feff\""), "{body}");
        assert_eq!(decode_body(&frame[HEAD_LEN..]), Ok(message));
        assert!(moved.weight() > 512);
        assert_eq!(hex::decode("0g"), None);
        assert_eq!(hex::decode("abc"), None);
        assert_eq!(hex::decode(""), Some(Vec::new()));
    }
}
