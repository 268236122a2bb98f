//! The sender: push to and close any connection, from anywhere in the application.

use std::sync::Arc;

use crate::conn::{Conn, ConnId, ConnInfo};
use crate::registry::Registry;
use crate::{CloseCode, Message, SendError};

/// Pushes messages to connections and closes them, by id, from any task: a handler, an HTTP
/// handler, a background job. Cheap to clone.
///
/// ```no_run
/// # async fn demo(sender: wharf::Sender, id: wharf::ConnId) {
/// sender.push(id, "hello").ok();
/// sender.close(id, wharf::CloseCode::NORMAL, "bye");
/// # }
/// ```
#[derive(Clone)]
pub struct Sender {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("open", &self.count())
            .finish()
    }
}

impl Sender {
    pub(crate) fn new(registry: Arc<Registry>) -> Sender {
        Sender { registry }
    }

    /// Queues a text or binary message to connection `id`.
    pub fn push(&self, id: ConnId, message: impl Into<Message>) -> Result<(), SendError> {
        self.conn(id).ok_or(SendError::NotFound(id))?.send(message)
    }

    /// Closes connection `id` with a close handshake, after what is already queued.
    /// The reason is cut to 123 bytes on a character boundary. Returns
    /// [`SendError::NotFound`] when no such connection is open.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let conn = self.conn(id).ok_or(SendError::NotFound(id))?;
        if conn.close(code, reason) {
            Ok(())
        } else {
            Err(SendError::Closed(id))
        }
    }

    /// Whether connection `id` is open.
    pub fn exists(&self, id: ConnId) -> bool {
        self.registry.get(id).is_some()
    }

    /// The handle of connection `id`, if open.
    pub fn conn(&self, id: ConnId) -> Option<Conn> {
        self.registry.get(id)
    }

    /// How many connections are open on this node.
    pub fn count(&self) -> usize {
        self.registry.count()
    }

    /// Every open connection on this node, oldest first.
    pub fn list(&self) -> Vec<ConnInfo> {
        let mut all: Vec<ConnInfo> = self
            .registry
            .snapshot(|_| true)
            .iter()
            .map(Conn::info)
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// Sends `message` to every connection `filter` accepts, encoding the frame once.
    /// Returns how many connections queued it.
    pub fn broadcast(
        &self,
        message: impl Into<Message>,
        filter: impl FnMut(&Conn) -> bool,
    ) -> usize {
        let message = message.into();
        let mut frame = Vec::with_capacity(message.len() + 10);
        wharf_proto::encode_frame(&mut frame, message.opcode(), message.as_bytes(), None);
        self.registry
            .snapshot(filter)
            .iter()
            .filter(|conn| conn.0.outbox.push_encoded(&frame).is_ok())
            .count()
    }
}
