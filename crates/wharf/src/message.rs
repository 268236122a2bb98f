//! Messages exchanged with a client.

use bytes::Bytes;

use crate::write_queue::Payload;

/// A complete WebSocket message, as a handler receives it and as a [`Sender`](crate::Sender) pushes it.
///
/// Fragmented messages arrive whole; text is already validated as UTF-8.
///
/// ```
/// use wharf::Message;
/// let m = Message::text("hello");
/// assert_eq!(m.as_text(), Some("hello"));
/// assert_eq!(Message::binary(vec![1, 2]).len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A ping; handlers only see it on routes with [`PingPolicy::Deliver`](crate::PingPolicy::Deliver).
    Ping(Bytes),
    /// A pong; handlers only see it on routes with [`PingPolicy::Deliver`](crate::PingPolicy::Deliver).
    Pong(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Message {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Message {
        Message::Binary(data.into())
    }

    /// The text, when this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The payload bytes, whatever the kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => data,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a text or binary (data) message.
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }

    /// The payload, without a copy (a text message's buffer stays a buffer of its own).
    pub(crate) fn into_payload(self) -> Payload {
        match self {
            Message::Text(text) => Payload::Owned(text.into_bytes()),
            Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => {
                Payload::Shared(data)
            }
        }
    }

    pub(crate) fn opcode(&self) -> wharf_proto::OpCode {
        use wharf_proto::OpCode;
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
            Message::Ping(_) => OpCode::Ping,
            Message::Pong(_) => OpCode::Pong,
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_owned())
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Message::Binary(data)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Message::Binary(data.into())
    }
}
