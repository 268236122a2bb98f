//! A client for WebSocket over HTTP/2 (RFC 8441): one h2 connection (the `h2` crate, client
//! side) over a real TCP or TLS stream, on which each WebSocket is an extended CONNECT
//! stream (`:protocol websocket`), spoken by tokio-tungstenite as an ordinary RFC 6455
//! client: the frames inside the stream are the frames of HTTP/1.1, masked as ever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Method, Request};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::common::{RawResponse, within};

/// A WebSocket carried by one h2 stream.
pub(crate) type H2Ws = WebSocketStream<H2Stream>;

/// One HTTP/2 connection to a server.
pub(crate) struct H2Client {
    send: SendRequest<Bytes>,
    /// `http://127.0.0.1:port` or `https://localhost:port`.
    origin: String,
    /// The task driving the connection; it ends when the connection does.
    connection: JoinHandle<Result<(), h2::Error>>,
}

impl H2Client {
    /// Runs the h2 handshake on `io` (prior knowledge: the preface at once) and waits for
    /// the server's SETTINGS to allow extended CONNECT, failing the test if they do not.
    pub(crate) async fn handshake<T>(io: T, origin: String) -> H2Client
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = within("h2 handshake", h2::client::handshake(io))
            .await
            .expect("h2 handshake");
        let connection = tokio::spawn(connection);
        let send = within("h2 ready", send.ready()).await.expect("h2 ready");
        within("SETTINGS_ENABLE_CONNECT_PROTOCOL from the server", async {
            while !send.is_extended_connect_protocol_enabled() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        H2Client {
            send,
            origin,
            connection,
        }
    }

    /// Opens a WebSocket on `path`, asserting the RFC 8441 answer: 200, no
    /// `Sec-WebSocket-Accept`.
    pub(crate) async fn open(&mut self, path: &str) -> H2Ws {
        match self
            .connect(path, "websocket", &[("sec-websocket-version", "13")])
            .await
        {
            Ok((response, ws)) => {
                assert_eq!(response.header("sec-websocket-accept"), None);
                ws
            }
            Err(refused) => panic!("extended CONNECT to {path} refused: {refused:?}"),
        }
    }

    /// Sends an extended CONNECT for `path` with `:protocol` `protocol` and `headers`: the
    /// 200's head and the WebSocket, or the refusal with its whole body.
    pub(crate) async fn connect(
        &mut self,
        path: &str,
        protocol: &'static str,
        headers: &[(&str, &str)],
    ) -> Result<(RawResponse, H2Ws), RawResponse> {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("{}{path}", self.origin));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).expect("a valid request");
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static(protocol));
        let (head, send, recv) = self.send(request, false).await;
        if head.status != 200 {
            return Err(read_body(head, recv).await);
        }
        let stream = H2Stream {
            send,
            recv,
            buf: Bytes::new(),
        };
        let ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
        Ok((head, ws))
    }

    /// A plain request with no body (a GET, say) and its whole response.
    pub(crate) async fn get(&mut self, path: &str) -> RawResponse {
        let request = Request::get(format!("{}{path}", self.origin))
            .body(())
            .expect("a valid request");
        let (head, _send, recv) = self.send(request, true).await;
        read_body(head, recv).await
    }

    /// Sends `request` (`end`: with END_STREAM, no body) and reads the response's head.
    async fn send(
        &mut self,
        request: Request<()>,
        end: bool,
    ) -> (RawResponse, SendStream<Bytes>, RecvStream) {
        let mut send = within("h2 ready", self.send.clone().ready())
            .await
            .expect("h2 ready for a new stream");
        let (response, stream) = send.send_request(request, end).expect("send request");
        let response = within("h2 response", response).await.expect("h2 response");
        let (parts, recv) = response.into_parts();
        let head = RawResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body: String::new(),
        };
        (head, stream, recv)
    }

    /// Waits for the server to end the connection (after a shutdown, say).
    pub(crate) async fn closed(self) {
        let ended = within("the server to end the h2 connection", self.connection).await;
        assert!(ended.is_ok(), "the connection task panicked");
    }
}

async fn read_body(mut head: RawResponse, mut recv: RecvStream) -> RawResponse {
    let mut body = Vec::new();
    while let Some(chunk) = within("h2 response body", recv.data()).await {
        let chunk = chunk.expect("a body chunk");
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    head.body = String::from_utf8(body).expect("a UTF-8 body");
    head
}

/// An h2 stream as a byte stream for tungstenite: DATA frames in, DATA frames out, END_STREAM
/// as end of file.
pub(crate) struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// What was received and not read yet.
    buf: Bytes,
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.buf.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    // Read at once, so the window opens again at once.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.buf = data;
                }
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // h2 buffers what the peer's window does not take yet: fine for test-sized messages.
        self.get_mut()
            .send
            .send_data(Bytes::copy_from_slice(buf), false)
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // END_STREAM; the stream may already be closed by the server, which is no error here.
        let _ = self.get_mut().send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
