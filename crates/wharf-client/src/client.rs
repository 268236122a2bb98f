//! [`Client`], its split halves, [`Message`] and [`Event`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use wharf_proto::{Decoder, DecoderConfig, Deflater, Frame, OpCode, Role};

use crate::handshake::Handshake;
use crate::transport::{ReadHalf, Stream, WriteHalf};
use crate::{ClientConfig, ClientError};

/// A text or binary message.
///
/// ```
/// use wharf_client::Message;
///
/// assert_eq!(Message::from("hi"), Message::Text("hi".into()));
/// assert_eq!(Message::from(vec![1u8, 2]).as_bytes(), &[1, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    fn opcode(&self) -> OpCode {
        match self {
            Self::Text(_) => OpCode::Text,
            Self::Binary(_) => OpCode::Binary,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(data) => data,
        }
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::Binary(data.into())
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Self::Binary(data)
    }
}

/// Something received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete text or binary message.
    Message(Message),
    /// A ping; the pong has already been sent.
    Ping(Bytes),
    /// A pong (usually the answer to [`Client::ping`]).
    Pong(Bytes),
    /// The server's close frame (code 1005 when it carried none). The reply has already
    /// been sent; the next `recv` returns `None`.
    Close {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// The writing side, shared by both halves (pongs and close replies come from the reader).
#[derive(Debug)]
struct Writer {
    io: WriteHalf,
    close_sent: bool,
    buf: Vec<u8>,
    masks: MaskKeys,
    /// permessage-deflate, when negotiated: compresses messages of `COMPRESS_FROM` bytes or more.
    deflater: Option<Deflater>,
    scratch: Vec<u8>,
}

/// Messages shorter than this are sent uncompressed, as by the server's default threshold.
const COMPRESS_FROM: usize = 128;

/// Masking keys: wyrand seeded from the OS once per connection, not one `getrandom` call per
/// frame (that is a syscall per message on many systems, and `wharf bench` sends hundreds of
/// thousands per second). The keys only need to be unpredictable to the page scripts of a
/// browser (RFC 6455 section 10.3), which cannot see this process's state.
#[derive(Debug)]
struct MaskKeys(u64);

impl MaskKeys {
    fn new() -> MaskKeys {
        MaskKeys(u64::from_le_bytes(crate::random()))
    }

    fn next(&mut self) -> [u8; 4] {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        let mixed = (t >> 64) as u64 ^ t as u64;
        (mixed as u32).to_le_bytes()
    }
}

impl Writer {
    async fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), ClientError> {
        if self.close_sent {
            return Err(ClientError::Closed);
        }
        self.buf.clear();
        self.encode(opcode, payload);
        self.flush().await
    }

    /// Appends one frame, compressed when negotiated and worth it.
    fn encode(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = Some(self.masks.next());
        let data = matches!(opcode, OpCode::Text | OpCode::Binary);
        match &mut self.deflater {
            Some(deflater) if data && payload.len() >= COMPRESS_FROM => {
                self.scratch.clear();
                deflater.compress(payload, &mut self.scratch);
                wharf_proto::encode_compressed_frame(&mut self.buf, opcode, &self.scratch, mask);
            }
            _ => wharf_proto::encode_frame(&mut self.buf, opcode, payload, mask),
        }
    }

    /// Encodes several messages and writes them with one `write` (usually one syscall).
    async fn messages(&mut self, messages: &[Message]) -> Result<(), ClientError> {
        if self.close_sent {
            return Err(ClientError::Closed);
        }
        self.buf.clear();
        for message in messages {
            self.encode(message.opcode(), message.as_bytes());
        }
        self.flush().await
    }

    /// Sends a close frame (empty when `code` is `None`); later sends fail with `Closed`.
    async fn close(&mut self, code: Option<u16>, reason: &str) -> Result<(), ClientError> {
        if self.close_sent {
            return Err(ClientError::Closed);
        }
        self.close_sent = true;
        self.buf.clear();
        match code {
            Some(code) => {
                wharf_proto::encode_close(&mut self.buf, code, reason, Some(self.masks.next()))
            }
            None => wharf_proto::encode_frame(
                &mut self.buf,
                OpCode::Close,
                b"",
                Some(self.masks.next()),
            ),
        }
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        self.io.write_all(&self.buf).await?;
        self.io.flush().await?;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// The sending half of a [`Client`]; cheap to clone, usable from any task.
///
/// Sends are not cancel-safe: dropping a pending `send` may leave a partial frame on the
/// wire, so do not race them in `select!`.
#[derive(Debug, Clone)]
pub struct ClientSender {
    writer: Arc<Mutex<Writer>>,
}

impl ClientSender {
    /// Sends a text or binary message. Fails with [`ClientError::Closed`] after a close frame
    /// was sent (by either half).
    pub async fn send(&self, message: Message) -> Result<(), ClientError> {
        self.writer
            .lock()
            .await
            .frame(message.opcode(), message.as_bytes())
            .await
    }

    /// Sends several messages, in order, with one write: one syscall instead of one per
    /// message (what a pipelining client wants). Fails like [`send`](Self::send).
    ///
    /// ```no_run
    /// use wharf_client::{ClientConfig, Message, connect};
    ///
    /// # async fn demo() -> Result<(), wharf_client::ClientError> {
    /// let client = connect("ws://127.0.0.1:9502/echo", &ClientConfig::default()).await?;
    /// let (sender, _receiver) = client.split();
    /// sender.send_batch(&[Message::from("one"), Message::from("two")]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_batch(&self, messages: &[Message]) -> Result<(), ClientError> {
        self.writer.lock().await.messages(messages).await
    }

    /// Sends a ping with up to 125 bytes of data; the pong arrives as [`Event::Pong`].
    pub async fn ping(&self, data: Vec<u8>) -> Result<(), ClientError> {
        if data.len() > 125 {
            return Err(ClientError::Protocol(
                "ping data longer than 125 bytes".into(),
            ));
        }
        self.writer.lock().await.frame(OpCode::Ping, &data).await
    }

    /// Sends a close frame with `code` (1000..=1003, 1007..=1014 or 3000..=4999) and
    /// `reason` (cut to 123 bytes). The server's reply arrives at the receiver as
    /// [`Event::Close`].
    pub async fn close(&self, code: u16, reason: &str) -> Result<(), ClientError> {
        if !wharf_proto::is_valid_close_code(code) {
            return Err(ClientError::Protocol(format!(
                "close code {code} may not be sent"
            )));
        }
        self.writer.lock().await.close(Some(code), reason).await
    }
}

/// The receiving half of a [`Client`]. It answers pings and the server's close frame through
/// the shared writer.
///
/// `recv` is cancel-safe: a dropped call loses no data (so it may be raced in `select!`),
/// except while it is writing an automatic pong or close reply.
#[derive(Debug)]
pub struct ClientReceiver {
    io: ReadHalf,
    writer: Arc<Mutex<Writer>>,
    decoder: Decoder,
    buf: Vec<u8>,
    frames: VecDeque<Frame>,
    close_received: Option<(u16, String)>,
    done: bool,
}

impl ClientReceiver {
    /// Waits for the next [`Event`]; `Ok(None)` once the connection is finished (after
    /// [`Event::Close`] or an error). The peer dropping TCP without a close frame is
    /// [`ClientError::Network`] (`UnexpectedEof`); a protocol violation by the server is
    /// answered with a close frame and returned as [`ClientError::Protocol`].
    pub async fn recv(&mut self) -> Result<Option<Event>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let frame = match self.next_frame().await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                self.done = true;
                return Err(ClientError::Network(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        Ok(Some(match frame {
            Frame::Text(text) => Event::Message(Message::Text(text)),
            Frame::Binary(data) => Event::Message(Message::Binary(data)),
            Frame::Ping(data) => {
                let mut writer = self.writer.lock().await;
                if !writer.close_sent {
                    writer.frame(OpCode::Pong, &data).await?;
                }
                Event::Ping(data)
            }
            Frame::Pong(data) => Event::Pong(data),
            Frame::Close(close) => {
                self.done = true;
                let mut writer = self.writer.lock().await;
                if !writer.close_sent {
                    // Echo the code (RFC 6455 section 5.5.1); ignore a peer that already left.
                    let _ = writer.close(close.as_ref().map(|(c, _)| *c), "").await;
                }
                let _ = writer.io.shutdown().await;
                let (code, reason) = close.unwrap_or((1005, String::new()));
                self.close_received = Some((code, reason.clone()));
                Event::Close { code, reason }
            }
        }))
    }

    /// The server's close code and reason, once received.
    pub fn close_frame(&self) -> Option<(u16, &str)> {
        self.close_received.as_ref().map(|(c, r)| (*c, r.as_str()))
    }

    async fn next_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Ok(Some(frame));
            }
            if !self.buf.is_empty() {
                let mut out = Vec::new();
                match self.decoder.decode(&mut self.buf, &mut out) {
                    Ok(used) => {
                        self.buf.drain(..used);
                    }
                    Err(e) => {
                        let _ = self
                            .writer
                            .lock()
                            .await
                            .close(Some(e.code()), e.reason())
                            .await;
                        return Err(ClientError::Protocol(e.reason().to_owned()));
                    }
                }
                if !out.is_empty() {
                    self.frames.extend(out);
                    continue;
                }
            }
            self.buf.reserve(64 * 1024);
            // Only a partial frame header can be left in `buf`: the decoder keeps payloads.
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// A connected WebSocket client; see [`connect`](crate::connect).
///
/// ```no_run
/// use wharf_client::{ClientConfig, Event, connect};
///
/// # async fn demo() -> Result<(), wharf_client::ClientError> {
/// let mut client = connect("ws://127.0.0.1:9502/echo", &ClientConfig::default()).await?;
/// client.ping(b"are you there".to_vec()).await?;
/// while let Some(event) = client.recv().await? {
///     if let Event::Pong(_) = event {
///         break;
///     }
/// }
/// assert_eq!(client.close(1000, "bye").await?, Some((1000, String::new())));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Client {
    sender: ClientSender,
    receiver: ClientReceiver,
    protocol: Option<String>,
    deflate: Option<wharf_proto::DeflateParams>,
    close_timeout: Duration,
}

impl Client {
    pub(crate) fn new(stream: Stream, handshake: Handshake, config: &ClientConfig) -> Client {
        let (read, write) = stream.into_split();
        let writer = Arc::new(Mutex::new(Writer {
            io: write,
            close_sent: false,
            buf: Vec::new(),
            masks: MaskKeys::new(),
            // A server may limit our window to 8 bits, which raw DEFLATE cannot produce:
            // then every message goes uncompressed (RFC 7692 allows that).
            deflater: handshake
                .deflate
                .filter(|p| p.client_max_window_bits >= 9)
                .map(|params| {
                    Deflater::new(
                        params.client_max_window_bits,
                        6,
                        params.client_no_context_takeover,
                    )
                }),
            scratch: Vec::new(),
        }));
        let mut decoder = Decoder::new(
            DecoderConfig::new(Role::Client)
                .with_max_message_size(config.max_message_size)
                .with_max_frame_size(config.max_message_size),
        );
        if let Some(params) = &handshake.deflate {
            decoder.enable_deflate(params);
        }
        Client {
            sender: ClientSender {
                writer: writer.clone(),
            },
            receiver: ClientReceiver {
                io: read,
                writer,
                decoder,
                buf: handshake.leftover,
                frames: VecDeque::new(),
                close_received: None,
                done: false,
            },
            protocol: handshake.protocol,
            deflate: handshake.deflate,
            close_timeout: config.close_timeout,
        }
    }

    /// The permessage-deflate parameters the server agreed to, when compression was
    /// offered ([`ClientConfig::compression`]) and accepted.
    pub fn deflate(&self) -> Option<&wharf_proto::DeflateParams> {
        self.deflate.as_ref()
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Sends a text or binary message; see [`ClientSender::send`].
    pub async fn send(&mut self, message: Message) -> Result<(), ClientError> {
        self.sender.send(message).await
    }

    /// Waits for the next event; see [`ClientReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<Event>, ClientError> {
        self.receiver.recv().await
    }

    /// Sends a ping; see [`ClientSender::ping`].
    pub async fn ping(&mut self, data: Vec<u8>) -> Result<(), ClientError> {
        self.sender.ping(data).await
    }

    /// Starts the closing handshake and waits (at most
    /// [`ClientConfig::close_timeout`]) for the server's close frame, discarding messages
    /// that arrive meanwhile. Returns the server's code and reason, or `None` if it did not
    /// answer in time or dropped the connection. If the server closed first, returns its
    /// close frame without sending anything.
    pub async fn close(
        &mut self,
        code: u16,
        reason: &str,
    ) -> Result<Option<(u16, String)>, ClientError> {
        if let Some(close) = &self.receiver.close_received {
            return Ok(Some(close.clone()));
        }
        match self.sender.close(code, reason).await {
            Ok(()) | Err(ClientError::Closed) => {}
            Err(e) => return Err(e),
        }
        let wait = async {
            loop {
                match self.receiver.recv().await {
                    Ok(Some(Event::Close { code, reason })) => return Some((code, reason)),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return None,
                }
            }
        };
        let reply = tokio::time::timeout(self.close_timeout, wait)
            .await
            .unwrap_or_default();
        self.receiver.done = true;
        let _ = self.sender.writer.lock().await.io.shutdown().await;
        Ok(reply)
    }

    /// The receiving half, for loops that only read (the bench's echo timing).
    pub(crate) fn receiver_mut(&mut self) -> &mut ClientReceiver {
        &mut self.receiver
    }

    /// Splits into a sender (clonable) and a receiver, to use from different tasks.
    ///
    /// ```no_run
    /// use wharf_client::{ClientConfig, Message, connect};
    ///
    /// # async fn demo() -> Result<(), wharf_client::ClientError> {
    /// let client = connect("ws://127.0.0.1:9502/echo", &ClientConfig::default()).await?;
    /// let (sender, mut receiver) = client.split();
    /// tokio::spawn(async move { sender.send(Message::from("hi")).await });
    /// let event = receiver.recv().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        (self.sender, self.receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keys_vary() {
        let mut keys = MaskKeys(0);
        let drawn: std::collections::HashSet<[u8; 4]> = (0..1000).map(|_| keys.next()).collect();
        assert_eq!(drawn.len(), 1000);
        let mut a = MaskKeys::new();
        let mut b = MaskKeys::new();
        assert_ne!((a.next(), a.next()), (b.next(), b.next()));
    }
}
