//! The streaming [`Decoder`]: turns bytes read from a socket into whole
//! messages and control frames, enforcing every RFC 6455 rule on the way.

use crate::{DecoderConfig, DeflateParams, Frame, Inflater, apply_mask, mask_copy};
use crate::{FrameHeader, OpCode, ProtocolError, Role, Utf8Validator};

/// How much a message buffer may reserve ahead of the bytes that have
/// arrived, whatever length the peer declared.
const RESERVE_AHEAD: usize = 64 * 1024;

/// The frame whose payload is being received.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    opcode: OpCode,
    fin: bool,
    compressed: bool,
    mask: Option<[u8; 4]>,
    remaining: usize,
    /// Payload bytes of this frame received so far, modulo 4.
    offset: usize,
}

/// A data message whose fragments are being received.
#[derive(Debug, Clone, Copy)]
struct Message {
    text: bool,
    compressed: bool,
}

/// permessage-deflate on the receiving side, once negotiated.
#[derive(Debug)]
struct Inflate {
    /// The peer compresses each message on its own: the inflater is dropped after each
    /// message, so an idle connection keeps no window.
    no_context_takeover: bool,
    /// Made at the first compressed message.
    inflater: Option<Inflater>,
}

/// The streaming RFC 6455 decoder.
///
/// ```
/// use wharf_proto::{Decoder, DecoderConfig, Frame};
///
/// // RFC 6455 §5.7: a masked "Hello", fed in two pieces.
/// let mut bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let mut decoder = Decoder::new(DecoderConfig::default());
/// let mut out = Vec::new();
/// assert_eq!(decoder.decode(&mut bytes[..8], &mut out), Ok(8));
/// assert!(out.is_empty() && decoder.in_progress());
/// assert_eq!(decoder.decode(&mut bytes[8..], &mut out), Ok(3));
/// assert_eq!(out, [Frame::Text("Hello".into())]);
/// ```
#[derive(Debug)]
// `repr(C)`, in this order: what a whole frame in one read touches comes first (the limits,
// the frame and message in progress, a past error, compression), in two cache lines at
// most; what a fragmented or control message adds comes after.
#[repr(C)]
pub struct Decoder {
    config: DecoderConfig,
    frame: Option<InFrame>,
    error: Option<ProtocolError>,
    /// Boxed: most connections never negotiate compression.
    inflate: Option<Box<Inflate>>,
    message: Option<Message>,
    data: Vec<u8>,
    /// What the message in progress counts for against `max_message_size`:
    /// its bytes, with each fragment counted as at least `fragment_cost`.
    cost: usize,
    control: Vec<u8>,
    utf8: Utf8Validator,
}

impl Decoder {
    /// A decoder at the start of a connection.
    ///
    /// ```
    /// use wharf_proto::{Decoder, DecoderConfig, Role};
    /// let decoder = Decoder::new(DecoderConfig::new(Role::Client));
    /// assert!(!decoder.in_progress());
    /// ```
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            frame: None,
            message: None,
            data: Vec::new(),
            cost: 0,
            control: Vec::new(),
            utf8: Utf8Validator::new(),
            error: None,
            inflate: None,
        }
    }

    /// Accepts messages compressed with permessage-deflate (RSV1 set on their
    /// first frame) from here on, as `params` negotiated for the peer's
    /// direction. Such messages are inflated (at most
    /// [`max_message_size`](DecoderConfig::max_message_size) bytes, else
    /// 1009) and text is validated after inflating. See
    /// [`deflate`](crate::deflate) for an example.
    pub fn enable_deflate(&mut self, params: &DeflateParams) {
        let no_context_takeover = match self.config.role {
            Role::Server => params.client_no_context_takeover,
            Role::Client => params.server_no_context_takeover,
        };
        self.inflate = Some(Box::new(Inflate {
            no_context_takeover,
            inflater: None,
        }));
    }

    /// The configuration the decoder was built with.
    ///
    /// ```
    /// use wharf_proto::{Decoder, DecoderConfig};
    /// let decoder = Decoder::new(DecoderConfig::default().with_max_frame_size(99));
    /// assert_eq!(decoder.config().max_frame_size, 99);
    /// ```
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// True when a fragmented message or a frame is in progress.
    ///
    /// ```
    /// use wharf_proto::{Decoder, DecoderConfig};
    /// let mut decoder = Decoder::new(DecoderConfig::default());
    /// // The first fragment of a masked binary message ("a", FIN clear).
    /// decoder.decode(&mut [0x02, 0x81, 0, 0, 0, 0, b'a'], &mut Vec::new()).unwrap();
    /// assert!(decoder.in_progress());
    /// ```
    pub fn in_progress(&self) -> bool {
        self.frame.is_some() || self.message.is_some()
    }

    /// Consumes bytes from `input`, pushing every completed message and
    /// control frame into `out`, and returns how many bytes it consumed.
    ///
    /// A control or compressed frame wholly in `input` is unmasked where it lies (other
    /// frames are unmasked as they are copied into their message): the consumed bytes of
    /// `input` may be left changed. The unconsumed tail is never touched.
    ///
    /// It consumes all of `input` except, at most, an incomplete frame header
    /// (fewer than [`MAX_HEADER_LEN`](crate::MAX_HEADER_LEN) bytes) at its
    /// end, which the caller must pass again at the front of the next call.
    /// Partial payloads are consumed and kept (and text validated) here.
    ///
    /// # Errors
    /// The first protocol violation; the decoder then stays failed and
    /// returns the same error from every later call. Frames pushed to `out`
    /// before the error are valid.
    ///
    /// ```
    /// use wharf_proto::{Decoder, DecoderConfig, Frame, OpCode, ProtocolError, encode_frame};
    ///
    /// let mut wire = Vec::new();
    /// encode_frame(&mut wire, OpCode::Binary, b"one", Some([1, 2, 3, 4]));
    /// encode_frame(&mut wire, OpCode::Binary, b"two", Some([5, 6, 7, 8]));
    /// let mut decoder = Decoder::new(DecoderConfig::default());
    /// let mut out = Vec::new();
    /// // 12 bytes: the first frame (9) and 3 of the second's 6-byte header.
    /// assert_eq!(decoder.decode(&mut wire[..12], &mut out), Ok(9));
    /// assert_eq!(decoder.decode(&mut wire[9..], &mut out), Ok(9));
    /// assert_eq!(out, [Frame::Binary("one".into()), Frame::Binary("two".into())]);
    ///
    /// // An unmasked frame from a client is a protocol error (1002).
    /// let err = decoder.decode(&mut [0x82, 0x00], &mut out).unwrap_err();
    /// assert_eq!(err, ProtocolError::UNMASKED_CLIENT_FRAME);
    /// ```
    pub fn decode(
        &mut self,
        input: &mut [u8],
        out: &mut Vec<Frame>,
    ) -> Result<usize, ProtocolError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let result = self.run(input, out);
        if let Err(error) = result {
            self.error = Some(error);
        }
        result
    }

    fn run(&mut self, input: &mut [u8], out: &mut Vec<Frame>) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        loop {
            let rest = input.get_mut(pos..).unwrap_or_default();
            if let Some(mut frame) = self.frame.take() {
                let (chunk, _) = rest.split_at(frame.remaining.min(rest.len()));
                pos += chunk.len();
                self.append_payload(&frame, chunk)?;
                frame.remaining -= chunk.len();
                frame.offset = (frame.offset + chunk.len()) % 4;
                if frame.remaining > 0 {
                    self.frame = Some(frame);
                    return Ok(pos);
                }
                self.end_frame(&frame, out)?;
                continue;
            }
            let Some((header, header_len)) = FrameHeader::parse(rest)? else {
                return Ok(pos);
            };
            let frame = self.check(&header)?;
            pos += header_len;
            let body = rest.get_mut(header_len..).unwrap_or_default();
            match body.get_mut(..frame.remaining) {
                Some(payload) => {
                    pos += payload.len();
                    self.whole_frame(frame, payload, out)?;
                }
                None => {
                    if !frame.opcode.is_control() {
                        self.start_message(&frame);
                    }
                    self.frame = Some(frame);
                }
            }
        }
    }

    /// Checks a header against the protocol rules and the limits.
    fn check(&mut self, header: &FrameHeader) -> Result<InFrame, ProtocolError> {
        let opcode = OpCode::from_u8(header.opcode).ok_or(ProtocolError::RESERVED_OPCODE)?;
        let compressed = header.rsv == 0b100
            && self.inflate.is_some()
            && matches!(opcode, OpCode::Text | OpCode::Binary);
        if header.rsv != 0 && !compressed {
            return Err(ProtocolError::RESERVED_BITS);
        }
        match (self.config.role, header.mask) {
            (Role::Server, None) => return Err(ProtocolError::UNMASKED_CLIENT_FRAME),
            (Role::Client, Some(_)) => return Err(ProtocolError::MASKED_SERVER_FRAME),
            _ => {}
        }
        let len = header.payload_len;
        if opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::CONTROL_FRAGMENTED);
            }
            if len > 125 {
                return Err(ProtocolError::CONTROL_TOO_LONG);
            }
        } else {
            match (opcode, self.message.is_some()) {
                (OpCode::Continuation, false) => {
                    return Err(ProtocolError::UNEXPECTED_CONTINUATION);
                }
                (OpCode::Text | OpCode::Binary, true) => {
                    return Err(ProtocolError::EXPECTED_CONTINUATION);
                }
                _ => {}
            }
            if len > self.config.max_frame_size as u64 {
                return Err(ProtocolError::FRAME_TOO_BIG);
            }
            // An unfragmented message costs its length; each fragment of a fragmented one
            // at least `fragment_cost`, so tiny fragments cannot make a message cost
            // unbounded work (see `DecoderConfig::fragment_cost`).
            let fragmented = !header.fin || opcode == OpCode::Continuation;
            let cost = if fragmented {
                len.max(self.config.fragment_cost as u64)
            } else {
                len
            };
            let total = (self.cost as u64).saturating_add(cost);
            if total > self.config.max_message_size as u64 {
                return Err(ProtocolError::MESSAGE_TOO_BIG);
            }
            if fragmented {
                // Within max_message_size, so it fits a usize.
                self.cost = usize::try_from(total).unwrap_or(usize::MAX);
            }
        }
        Ok(InFrame {
            opcode,
            fin: header.fin,
            compressed,
            mask: header.mask,
            remaining: usize::try_from(len).map_err(|_| ProtocolError::FRAME_TOO_BIG)?,
            offset: 0,
        })
    }

    /// A frame whose payload is wholly in the input.
    fn whole_frame(
        &mut self,
        frame: InFrame,
        payload: &mut [u8],
        out: &mut Vec<Frame>,
    ) -> Result<(), ProtocolError> {
        match frame.opcode {
            OpCode::Text | OpCode::Binary if frame.fin => {
                // Fast path: an unfragmented message, unmasked as it is copied into the
                // buffer that becomes its `String` or `Bytes` (one pass over the payload;
                // a buffer given back to the pool when it is large enough), or unmasked in
                // place to be inflated.
                let text = frame.opcode == OpCode::Text;
                let data = if frame.compressed {
                    self.inflate(unmask(payload, frame.mask))?
                } else {
                    let mut data = crate::pool::take(payload.len());
                    append(&mut data, payload, frame.mask, 0);
                    data
                };
                out.push(Frame::data(text, data)?);
                Ok(())
            }
            op if op.is_control() => {
                out.push(Frame::control(op, unmask(payload, frame.mask).to_vec())?);
                Ok(())
            }
            _ => {
                self.start_message(&frame);
                self.append_payload(&frame, payload)?;
                self.end_frame(&frame, out)
            }
        }
    }

    fn start_message(&mut self, frame: &InFrame) {
        if frame.opcode != OpCode::Continuation {
            let text = frame.opcode == OpCode::Text;
            let compressed = frame.compressed;
            self.message = Some(Message { text, compressed });
            self.utf8.reset();
        }
    }

    /// Appends (unmasked) payload bytes of the current frame.
    fn append_payload(&mut self, frame: &InFrame, chunk: &[u8]) -> Result<(), ProtocolError> {
        if frame.opcode.is_control() {
            append(&mut self.control, chunk, frame.mask, frame.offset);
            return Ok(());
        }
        let upper = if frame.fin {
            frame.remaining
        } else {
            usize::MAX
        };
        let upper = upper.min(self.config.max_message_size.saturating_sub(self.data.len()));
        reserve(&mut self.data, chunk.len(), frame.remaining, upper);
        let start = self.data.len();
        append(&mut self.data, chunk, frame.mask, frame.offset);
        if self.message.is_some_and(|m| m.text && !m.compressed) {
            let new = self.data.get(start..).unwrap_or_default();
            self.utf8.feed(new)?;
        }
        Ok(())
    }

    /// Emits what the end of this frame completes.
    fn end_frame(&mut self, frame: &InFrame, out: &mut Vec<Frame>) -> Result<(), ProtocolError> {
        if frame.opcode.is_control() {
            let payload = self.control.clone();
            self.control.clear();
            out.push(Frame::control(frame.opcode, payload)?);
        } else if frame.fin {
            let message = self.message.take();
            let text = message.is_some_and(|m| m.text);
            let mut data = std::mem::take(&mut self.data);
            self.cost = 0;
            if message.is_some_and(|m| m.compressed) {
                data = self.inflate(&data)?;
            } else if text {
                // Checked as it arrived (so a bad byte fails fast); `Frame::data` makes the
                // `String` with one more check, only for fragmented text.
                self.utf8.finish()?;
            }
            out.push(Frame::data(text, data)?);
        }
        Ok(())
    }

    /// Inflates one compressed message, at most `max_message_size` bytes of it.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let limit = self.config.max_message_size;
        let Some(state) = self.inflate.as_deref_mut() else {
            return Err(ProtocolError::RESERVED_BITS);
        };
        let no_context_takeover = state.no_context_takeover;
        let inflater = state
            .inflater
            .get_or_insert_with(|| Inflater::new(no_context_takeover));
        let data = inflater.inflate(compressed, limit)?;
        if no_context_takeover {
            state.inflater = None;
        }
        Ok(data)
    }
}

/// Grows `buf` for `incoming` more bytes of a frame with `declared` bytes
/// still to come: geometrically, but at most [`RESERVE_AHEAD`] past what has
/// arrived (a declared length is never trusted further) and never past
/// `upper`, the most the message can still grow by.
fn reserve(buf: &mut Vec<u8>, incoming: usize, declared: usize, upper: usize) {
    if buf.capacity() - buf.len() < incoming {
        let ahead = declared.min(RESERVE_AHEAD);
        let want = buf.len().max(ahead).min(upper).max(incoming);
        buf.reserve_exact(want);
    }
}

#[inline]
fn append(buf: &mut Vec<u8>, chunk: &[u8], mask: Option<[u8; 4]>, offset: usize) {
    match mask {
        Some(key) => mask_copy(buf, chunk, key, offset),
        None => buf.extend_from_slice(chunk),
    }
}

/// A whole frame's payload, unmasked where it lies in the input.
fn unmask(payload: &mut [u8], mask: Option<[u8; 4]>) -> &[u8] {
    if let Some(key) = mask {
        apply_mask(payload, key, 0);
    }
    payload
}

#[cfg(test)]
mod tests;
