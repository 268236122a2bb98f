//! [`WriteQueue`]: bytes on their way to a socket. Frame headers and small frames are encoded
//! into one buffer; a large payload handed over by value is kept as it is, spliced in at its
//! place, and written with a vectored write beside the headers instead of being copied. Once
//! written, a spliced buffer goes back to [`wharf_proto::pool`] for the next message read.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::Bytes;
use wharf_proto::OpCode;

use crate::socket_io::SocketIo;

/// From this many bytes on, a payload given by value is spliced rather than copied: below
/// it, a copy costs less than an extra slice in the write (and keeps small replies in one
/// buffer, one `write`).
pub(crate) const SPLICE_FROM: usize = 1024;

/// The most slices one vectored write is given (the rest goes in the next one).
const MAX_SLICES: usize = 16;

/// A splice list grown beyond this many entries is freed once empty, like the buffer.
const KEEP_SPLICES: usize = 64;

/// Bytes queued for one socket, in order: `buf`, with each spliced payload inserted at its
/// offset.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    /// Encoded bytes: every frame header, and the payloads that were copied.
    buf: Vec<u8>,
    /// Payloads kept by value, in order of their offsets in `buf`.
    spliced: Vec<Splice>,
    /// The spliced payloads' total length.
    spliced_len: usize,
}

#[derive(Debug)]
struct Splice {
    /// Where in `buf` the payload goes (before the byte at this offset).
    at: usize,
    payload: Payload,
}

/// A payload handed over by value: a buffer of its own (a text message's `String`), or
/// shared bytes (a binary message, one fan-out encoding for many connections).
#[derive(Debug)]
pub(crate) enum Payload {
    Owned(Vec<u8>),
    Shared(Bytes),
}

impl Payload {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Owned(buf) => buf,
            Payload::Shared(bytes) => bytes,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Gives the buffer to [`wharf_proto::pool`] once nothing else holds it.
    fn recycle(self) {
        match self {
            Payload::Owned(buf) => wharf_proto::pool::give(buf),
            Payload::Shared(bytes) => {
                if let Ok(buf) = bytes.try_into_mut() {
                    wharf_proto::pool::give(buf.into());
                }
            }
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(buf: Vec<u8>) -> Self {
        Payload::Owned(buf)
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Payload::Shared(bytes)
    }
}

impl WriteQueue {
    /// An empty queue (a `const fn`, for a thread-local one).
    pub(crate) const fn new() -> WriteQueue {
        WriteQueue {
            buf: Vec::new(),
            spliced: Vec::new(),
            spliced_len: 0,
        }
    }

    /// The encoded bytes, to append frames to (the end of the buffer is the end of the
    /// queue).
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Queues one unfragmented, unmasked frame; a payload of [`SPLICE_FROM`] bytes or more
    /// is kept rather than copied.
    pub(crate) fn push_frame(&mut self, opcode: OpCode, payload: Payload) {
        if payload.len() < SPLICE_FROM {
            wharf_proto::encode_frame(&mut self.buf, opcode, payload.as_slice(), None);
        } else {
            wharf_proto::encode_header(&mut self.buf, true, opcode, None, payload.len());
            self.splice(payload);
        }
    }

    /// Queues bytes already encoded (one fan-out frame for many connections): shared rather
    /// than copied from [`SPLICE_FROM`] bytes on.
    pub(crate) fn push_shared(&mut self, encoded: &Bytes) {
        if encoded.len() < SPLICE_FROM {
            self.buf.extend_from_slice(encoded);
        } else {
            self.splice(Payload::Shared(encoded.clone()));
        }
    }

    fn splice(&mut self, payload: Payload) {
        self.spliced_len += payload.len();
        self.spliced.push(Splice {
            at: self.buf.len(),
            payload,
        });
    }

    /// Moves everything `other` holds to the end of this queue, leaving `other` empty with
    /// its buffers' capacity.
    pub(crate) fn append(&mut self, other: &mut WriteQueue) {
        let shift = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        other.buf.clear();
        self.spliced_len += std::mem::take(&mut other.spliced_len);
        self.spliced.extend(other.spliced.drain(..).map(|s| Splice {
            at: s.at + shift,
            payload: s.payload,
        }));
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() + self.spliced_len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the queue; a buffer grown beyond `keep` bytes (or a splice list beyond
    /// [`KEEP_SPLICES`]) is freed, so a burst does not pin memory. A spliced payload held
    /// nowhere else goes back to [`wharf_proto::pool`], for the next message read.
    pub(crate) fn reset(&mut self, keep: usize) {
        empty(&mut self.buf, keep);
        if self.spliced.is_empty() {
            // Small replies only (most wake-ups): nothing was spliced.
            return;
        }
        while let Some(splice) = self.spliced.pop() {
            splice.payload.recycle();
        }
        empty(&mut self.spliced, KEEP_SPLICES);
        self.spliced_len = 0;
    }

    /// The queued bytes from `from` on, as one buffer (a moved connection's unwritten
    /// bytes).
    pub(crate) fn to_vec_from(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len().saturating_sub(from));
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut at = from;
        loop {
            let n = self.slices_from(at, &mut slices);
            if n == 0 {
                return out;
            }
            for slice in &slices[..n] {
                out.extend_from_slice(slice);
                at += slice.len();
            }
        }
    }

    /// Writes some of the queued bytes from `from` on; returns how many.
    pub(crate) fn poll_write<S: SocketIo>(
        &self,
        from: usize,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.spliced.is_empty() {
            let rest = self.buf.get(from..).unwrap_or_default();
            return stream.poll_send(cx, rest);
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = self.slices_from(from, &mut slices);
        stream.poll_send_vectored(cx, &slices[..n])
    }

    /// Fills `out` with the queue's bytes from `from` on, in order; returns how many slices.
    fn slices_from<'a>(&'a self, from: usize, out: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        let mut pos = 0;
        // Takes the piece at `pos` if it reaches past `from`; false once `out` is full.
        let mut take = |piece: &'a [u8]| {
            let end = pos + piece.len();
            if end > from && !piece.is_empty() {
                let Some(slot) = out.get_mut(filled) else {
                    return false;
                };
                *slot = IoSlice::new(piece.get(from.saturating_sub(pos)..).unwrap_or_default());
                filled += 1;
            }
            pos = end;
            true
        };
        let mut run_start = 0;
        for splice in &self.spliced {
            let run = self.buf.get(run_start..splice.at).unwrap_or_default();
            if !take(run) || !take(splice.payload.as_slice()) {
                return filled;
            }
            run_start = splice.at;
        }
        take(self.buf.get(run_start..).unwrap_or_default());
        filled
    }

    /// The whole queue as one buffer.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        if self.spliced.is_empty() {
            return self.buf;
        }
        self.to_vec_from(0)
    }
}

/// Empties `items`, freeing them when they grew beyond `keep`.
fn empty<T>(items: &mut Vec<T>, keep: usize) {
    if items.capacity() > keep {
        *items = Vec::new();
    } else {
        items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wharf_proto::encode_frame(&mut out, opcode, payload, None);
        out
    }

    fn queue_of(payloads: &[usize]) -> (WriteQueue, Vec<u8>) {
        let mut queue = WriteQueue::default();
        let mut expected = Vec::new();
        for (i, &len) in payloads.iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|b| (b + i) as u8).collect();
            expected.extend(frame(OpCode::Binary, &payload));
            queue.push_frame(OpCode::Binary, payload.into());
        }
        (queue, expected)
    }

    #[test]
    fn small_payloads_are_copied_and_large_ones_spliced_in_order() {
        let (queue, expected) = queue_of(&[3, SPLICE_FROM, 10, 70_000, 0, SPLICE_FROM - 1]);
        assert_eq!(queue.spliced.len(), 2);
        assert_eq!(queue.len(), expected.len());
        assert_eq!(queue.to_vec_from(0), expected);
        for from in [1, 5, 6, SPLICE_FROM, expected.len() - 1, expected.len()] {
            assert_eq!(queue.to_vec_from(from), expected[from..], "from {from}");
        }
        assert_eq!(queue.into_vec(), expected);
    }

    #[test]
    fn append_keeps_the_order_of_both_queues_and_leaves_the_other_empty() {
        let (mut first, mut expected) = queue_of(&[SPLICE_FROM, 2]);
        let (mut second, rest) = queue_of(&[5, 2 * SPLICE_FROM]);
        first.buf().extend_from_slice(b"raw");
        expected.extend_from_slice(b"raw");
        first.append(&mut second);
        expected.extend(rest);
        assert_eq!(first.into_vec(), expected);
        assert!(second.is_empty());
        assert!(
            second.buf().capacity() > 0,
            "its buffer is kept for the next use"
        );
        assert!(second.spliced.is_empty());
    }

    #[test]
    fn more_pieces_than_one_write_takes_are_written_across_writes() {
        let lens = vec![SPLICE_FROM; MAX_SLICES];
        let (queue, expected) = queue_of(&lens);
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        assert_eq!(queue.slices_from(0, &mut slices), MAX_SLICES);
        assert_eq!(queue.to_vec_from(0), expected);
    }

    #[test]
    fn reset_frees_what_a_burst_grew_and_keeps_what_a_reply_needs() {
        // 65 headers (260 bytes) against a buffer kept up to 16.
        let (mut queue, _) = queue_of(&[SPLICE_FROM; KEEP_SPLICES + 1]);
        queue.reset(16);
        assert!(queue.is_empty());
        assert_eq!(queue.spliced.capacity(), 0);
        assert_eq!(queue.buf.capacity(), 0);
        let (mut queue, _) = queue_of(&[SPLICE_FROM, 10]);
        queue.reset(4096);
        assert!(queue.is_empty() && queue.spliced.capacity() > 0 && queue.buf.capacity() > 0);
    }

    #[test]
    fn a_written_payload_goes_back_to_the_pool_a_shared_one_once_it_is_the_last() {
        let mut queue = WriteQueue::default();
        let owned = vec![1u8; 3000];
        let owned_at = owned.as_ptr();
        queue.push_frame(OpCode::Text, owned.into());
        let shared = Bytes::from(vec![2u8; 5000]);
        let shared_at = shared.as_ptr();
        queue.push_frame(OpCode::Binary, shared.clone().into());
        queue.reset(0);
        let again = wharf_proto::pool::take(3000);
        assert_eq!((again.as_ptr(), again.capacity()), (owned_at, 3000));
        // Still held by `shared`: not given back, so the pool has none of that size.
        let fresh = wharf_proto::pool::take(5000);
        assert_ne!(fresh.as_ptr(), shared_at);
        queue.push_frame(OpCode::Binary, shared.into());
        queue.reset(0);
        let last = wharf_proto::pool::take(5000);
        assert_eq!(last.as_ptr(), shared_at);
    }

    #[tokio::test]
    async fn a_vectored_write_to_a_real_socket_carries_every_byte() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            socket.read_to_end(&mut got).await.expect("read");
            got
        });
        let (mut queue, expected) = queue_of(&[7, 300_000, SPLICE_FROM, 1, 2 * SPLICE_FROM]);
        queue.buf().extend_from_slice(b"tail");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut written = 0;
        while written < queue.len() {
            let n = std::future::poll_fn(|cx| queue.poll_write(written, &mut stream, cx))
                .await
                .expect("write");
            assert!(n > 0);
            written += n;
        }
        drop(stream);
        let mut want = expected;
        want.extend_from_slice(b"tail");
        assert_eq!(reader.await.expect("reader"), want);
        queue.reset(0);
        assert!(queue.is_empty());
    }
}
