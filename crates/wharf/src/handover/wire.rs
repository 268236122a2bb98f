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
//! old → new  Connections { conns }                   + one fd per connection (repeated)
//! old → new  Done                                    (the successor may serve)
//! ```
//!
//! Either side may send `Refused { reason }` instead of its next message and hang up.

use serde::{Deserialize, Serialize};

/// The first bytes of every frame.
pub(crate) const MAGIC: [u8; 8] = *b"WHARF-HO";
/// The format this build speaks. Bump it when a message changes incompatibly.
pub(crate) const VERSION: u16 = 2;
/// Magic, version and length.
pub(crate) const HEAD_LEN: usize = 14;
/// The largest JSON body accepted: far above any real message, far below a memory problem.
pub(crate) const MAX_BODY: usize = 1 << 20;

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
    /// The old process has committed: it stops accepting, the successor serves.
    Go,
    /// Open connections handed over after `Go`; the fds travel with this frame, in order.
    Connections {
        /// Each connection's state.
        conns: Vec<MovedConn>,
    },
    /// No more connections: the successor serves from now on.
    Done,
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
    pub(crate) rooms: Vec<String>,
    /// The bytes of a frame header read but not yet complete.
    pub(crate) read: Vec<u8>,
    /// The bytes queued or partly written to the client, to write first.
    pub(crate) write: Vec<u8>,
    /// When the old process stopped serving it (milliseconds since the Unix epoch): the
    /// successor reports the pause each connection saw.
    pub(crate) parked_at_ms: u64,
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
                .contains("v1, this process v2"),
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
}
