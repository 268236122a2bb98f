//! The handover socket: framed [`Message`]s over a Unix stream, with file descriptors
//! attached by SCM_RIGHTS (through `rustix`, so no `unsafe` here).
//!
//! Blocking on purpose: a handover is four messages, run on a blocking thread with a read
//! timeout on the socket, so a silent peer costs a timeout and never a stuck runtime.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::wire::{self, FrameError, HEAD_LEN, Message};

/// The most fds one frame may carry (below the kernel's 253 per message): listening
/// sockets, or one batch of open connections.
pub(crate) const MAX_FDS: usize = 128;

/// Why the conversation broke.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChannelError {
    /// The socket failed, timed out (`WouldBlock`/`TimedOut`) or the peer hung up (`UnexpectedEof`).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer sent something that is not a message of our format.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ChannelError {
    /// Whether the read timed out.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, ChannelError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// One end of the handover socket.
pub(crate) struct Channel {
    stream: UnixStream,
    /// Fds received with bytes not yet returned (they arrive with the first byte of their frame).
    fds: Vec<OwnedFd>,
}

impl Channel {
    pub(crate) fn new(stream: UnixStream) -> Channel {
        Channel {
            stream,
            fds: Vec::new(),
        }
    }

    /// The socket, for its peer's credentials.
    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Bounds every following read.
    pub(crate) fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        self.stream
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
    }

    /// Sends `message` with `fds` attached to its first byte.
    pub(crate) fn send(&mut self, message: &Message, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let frame = wire::encode(message);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty()
            && (fds.len() > MAX_FDS || !control.push(SendAncillaryMessage::ScmRights(fds)))
        {
            return Err(io::Error::other(format!(
                "at most {MAX_FDS} sockets can be handed over"
            )));
        }
        let mut sent = 0;
        while sent < frame.len() {
            let n = rustix::net::sendmsg(
                &self.stream,
                &[IoSlice::new(&frame[sent..])],
                &mut control,
                SendFlags::NOSIGNAL,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            sent += n;
            // The fds went with the first bytes.
            control = SendAncillaryBuffer::default();
        }
        Ok(())
    }

    /// Receives the next message and the fds that came with it.
    pub(crate) fn recv(&mut self) -> Result<(Message, Vec<OwnedFd>), ChannelError> {
        let mut head = [0u8; HEAD_LEN];
        self.read_exact(&mut head)?;
        let len = wire::decode_head(&head)?;
        let mut body = vec![0u8; len];
        self.read_exact(&mut body)?;
        let message = wire::decode_body(&body)?;
        Ok((message, std::mem::take(&mut self.fds)))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        let mut filled = 0;
        while filled < buf.len() {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let received = rustix::net::recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(&mut buf[filled..])],
                &mut control,
                // Received fds are not inherited by processes this one starts later.
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(io::Error::from)?;
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = message {
                    self.fds.extend(fds);
                }
            }
            if received.bytes == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            filled += received.bytes;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::wire::{SocketEntry, SocketKind};
    use std::os::fd::AsFd;

    #[test]
    fn a_listening_socket_crosses_and_still_accepts() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut old, mut new) = (Channel::new(a), Channel::new(b));
        new.set_timeout(Duration::from_secs(5)).expect("timeout");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let message = Message::Sockets {
            node: 3,
            next_seq: 9,
            sockets: vec![SocketEntry {
                name: "ws".into(),
                kind: SocketKind::Tcp,
            }],
        };
        old.send(&message, &[listener.as_fd()]).expect("send");
        drop(listener);
        let (received, mut fds) = new.recv().expect("recv");
        assert_eq!(received, message);
        assert_eq!(fds.len(), 1);
        let inherited = std::net::TcpListener::from(fds.remove(0));
        assert_eq!(inherited.local_addr().expect("addr"), addr);
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        inherited.accept().expect("the inherited socket accepts");
    }

    #[test]
    fn a_hang_up_or_silence_is_an_error() {
        let (a, b) = UnixStream::pair().expect("pair");
        let mut new = Channel::new(b);
        new.set_timeout(Duration::from_millis(50)).expect("timeout");
        let silent = new.recv().expect_err("nothing sent");
        assert!(silent.is_timeout(), "{silent}");
        drop(a);
        let gone = new.recv().expect_err("hung up");
        assert!(!gone.is_timeout(), "{gone}");
    }
}
