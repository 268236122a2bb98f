//! How a connection's driver reads and writes its stream: [`SocketIo`].
//!
//! Through `AsyncRead` and `AsyncWrite` by default. A plain TCP stream instead makes its
//! `recvfrom`, `sendto` and `sendmsg` calls directly (through `rustix`), not through libc's
//! `recv`, `send` and `writev`: those are thread-cancellation points, and in a process with
//! more than one thread libc brackets each of them with two atomic updates of the calling
//! thread's cancellation state, a cost every message paid twice (docs/decisions.md, "One
//! thread, and system calls without libc's cancellation points").
//!
//! Readiness is kept as tokio keeps it for its own `TcpStream`: a read that returns less
//! than its buffer, or a write that takes less than it was given, means the socket is
//! drained (or full), so the readiness it was called on is cleared and the next poll waits
//! for the reactor instead of making a system call that would return `EAGAIN`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::launch::{AnyLaunch, Launch};

/// A stream a driver reads and writes. The provided methods go through `AsyncRead` and
/// `AsyncWrite`; plain TCP overrides them.
pub(crate) trait SocketIo: AsyncRead + AsyncWrite + Unpin {
    /// `launch` as the variant of [`AnyLaunch`] for this stream.
    fn erase(launch: Launch<Self>) -> AnyLaunch
    where
        Self: Sized;

    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        ready!(Pin::new(self).poll_read(cx, &mut read))?;
        Poll::Ready(Ok(read.filled().len()))
    }

    /// Writes some of `buf`; returns how much.
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write(cx, buf)
    }

    /// Writes some of `bufs`, in order; returns how much.
    fn poll_send_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write_vectored(cx, bufs)
    }
}

impl SocketIo for TcpStream {
    fn erase(launch: Launch<Self>) -> AnyLaunch {
        AnyLaunch::Tcp(launch)
    }

    #[inline]
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        poll_syscall(self, cx, Interest::READABLE, len, |stream| {
            rustix::net::recv(stream, &mut *buf, RecvFlags::empty()).map(|(n, _)| n)
        })
    }

    #[inline]
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        poll_syscall(self, cx, Interest::WRITABLE, buf.len(), |stream| {
            // NOSIGNAL: a peer that has gone is an error here, never a SIGPIPE.
            rustix::net::send(stream, buf, SendFlags::NOSIGNAL)
        })
    }

    fn poll_send_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        poll_syscall(self, cx, Interest::WRITABLE, len, |stream| {
            let mut control = SendAncillaryBuffer::default();
            rustix::net::sendmsg(stream, bufs, &mut control, SendFlags::NOSIGNAL)
        })
    }
}

impl SocketIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn erase(launch: Launch<Self>) -> AnyLaunch {
        AnyLaunch::Tls(launch)
    }
}

/// Waits until `stream` is ready for `interest`, then makes `syscall` (which moves at most
/// `len` bytes). Readiness is cleared when the call returns `EAGAIN`, and when it moves
/// fewer than `len` bytes (the socket is drained or full); a readiness event that arrives
/// meanwhile is kept, as `try_io` clears only the event it read before the call.
#[inline(always)]
fn poll_syscall(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    interest: Interest,
    len: usize,
    mut syscall: impl FnMut(&TcpStream) -> rustix::io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        if interest.is_readable() {
            ready!(stream.poll_read_ready(cx))?;
        } else {
            ready!(stream.poll_write_ready(cx))?;
        }
        // A short transfer is reported to `try_io` as `WouldBlock`, so that it clears the
        // readiness, and handed out through `short`.
        let mut short = 0;
        let done = stream.try_io(interest, || {
            let n = syscall(stream)?;
            if n > 0 && n < len {
                short = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match done {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(_) if short > 0 => return Poll::Ready(Ok(short)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio::time::timeout;

    use super::*;

    /// A connected pair over loopback: (accepted, connecting).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (accepted, connected) = tokio::join!(listener.accept(), TcpStream::connect(addr));
        (accepted.expect("accept").0, connected.expect("connect"))
    }

    /// Bytes 0, 1, ..., 250, 0, 1, ...: a misplaced or lost byte shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn reads_pieces_that_arrive_after_a_short_read() {
        let (mut server, mut client) = pair().await;
        let sent = pattern(3000);
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(1000) {
                client.write_all(piece).await.expect("write");
                // Each read below returns less than its buffer and so clears the readiness;
                // the next piece must still wake it.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            client
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while got.len() < 3000 {
            let n = timeout(
                Duration::from_secs(5),
                poll_fn(|cx| server.poll_recv(cx, &mut buf)),
            )
            .await
            .expect("a later piece woke the reader")
            .expect("recv");
            assert!(n > 0 && n <= 1000, "one piece at a time, got {n}");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, pattern(3000));
        drop(writer.await.expect("writer"));
        let end = poll_fn(|cx| server.poll_recv(cx, &mut buf)).await;
        assert_eq!(end.expect("end of stream"), 0);
    }

    #[tokio::test]
    async fn writes_through_a_full_socket_buffer_plain_and_vectored() {
        const LEN: usize = 8 << 20;
        let (mut server, client) = pair().await;
        let reader = tokio::spawn(async move {
            let mut client = client;
            // The server's writes fill both sockets' buffers and come back short or
            // pending until this reader starts.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut got = Vec::with_capacity(2 * LEN);
            client.read_to_end(&mut got).await.expect("read");
            got
        });
        let data = pattern(LEN);
        let mut short = 0;
        let mut at = 0;
        while at < LEN {
            let rest = &data[at..];
            let n = poll_fn(|cx| server.poll_send(cx, rest))
                .await
                .expect("send");
            short += usize::from(n < rest.len());
            at += n;
        }
        at = 0;
        while at < LEN {
            let (a, b) = data[at..].split_at((LEN - at) / 2);
            let slices = [IoSlice::new(a), IoSlice::new(b)];
            let n = poll_fn(|cx| server.poll_send_vectored(cx, &slices))
                .await
                .expect("sendmsg");
            at += n;
        }
        server.shutdown().await.expect("shutdown");
        let got = timeout(Duration::from_secs(20), reader)
            .await
            .expect("the reader finished")
            .expect("reader");
        assert!(short > 0, "8 MiB went through without one short write");
        assert_eq!(got.len(), 2 * LEN);
        assert!(
            got[..LEN] == data[..] && got[LEN..] == data[..],
            "bytes in order"
        );
    }

    #[tokio::test]
    async fn a_peer_that_has_gone_is_an_error() {
        let (mut server, client) = pair().await;
        // Linger 0: the close resets the connection.
        client.set_zero_linger().expect("linger");
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut failed = None;
        for _ in 0..100 {
            match poll_fn(|cx| server.poll_send(cx, b"anyone?")).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => {
                    failed = Some(e.kind());
                    break;
                }
            }
        }
        let kind = failed.expect("sending to a reset connection failed");
        assert!(
            matches!(
                kind,
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{kind:?}"
        );
    }
}
