//! The commands nodes send each other over the backplane, in a small binary encoding:
//! a version byte, the kind, the sending node's instance id, then the fields
//! (ids as 8 bytes big-endian, strings and payloads as a 4-byte length and the bytes).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Scope;
use crate::history::Position;
use crate::{ConnId, Message};

const VERSION: u8 = 1;

/// One operation for the nodes that own the connections it names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    Push {
        conn: ConnId,
        message: Message,
    },
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    Join {
        conn: ConnId,
        room: String,
    },
    Leave {
        conn: ConnId,
        room: String,
    },
    Room {
        room: String,
        message: Message,
        except: Option<ConnId>,
    },
    User {
        user: String,
        message: Message,
    },
    CloseUser {
        user: String,
        code: u16,
        reason: String,
    },
    Broadcast {
        scope: Scope,
        message: Message,
    },
    /// A history room's publication, stored at `position`: each node hands it to the room's
    /// sequencer, which delivers it in position order.
    Publication {
        room: String,
        position: Position,
        message: Message,
    },
    /// `command`, and a request for each receiving node's [`Outcome`]: answered to node
    /// `reply_to` with an [`Command::Answer`] carrying `request`.
    Ask {
        request: u64,
        reply_to: u16,
        command: Box<Command>,
    },
    /// Node `node`'s outcome of request `request`, with how many local connections queued
    /// the message.
    Answer {
        request: u64,
        node: u16,
        outcome: Outcome,
        count: u32,
    },
}

/// What a node did with an asked-for command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Queued (to `count` connections).
    Delivered,
    /// No such connection on that node.
    NotFound,
    /// The connection's queue was full; it is being closed as a slow consumer.
    QueueFull,
    /// The connection is closing.
    Closing,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Delivered => 0,
            Outcome::NotFound => 1,
            Outcome::QueueFull => 2,
            Outcome::Closing => 3,
        }
    }

    fn from_code(code: u8) -> Option<Outcome> {
        Some(match code {
            0 => Outcome::Delivered,
            1 => Outcome::NotFound,
            2 => Outcome::QueueFull,
            3 => Outcome::Closing,
            _ => return None,
        })
    }
}

impl Command {
    /// Encodes the command as sent by the node instance `origin`.
    pub(crate) fn encode(&self, origin: u64) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(VERSION);
        out.put_u8(self.kind());
        out.put_u64(origin);
        match self {
            Command::Push { conn, message } => {
                out.put_u64(conn.as_u64());
                put_message(&mut out, message);
            }
            Command::Close { conn, code, reason } => {
                out.put_u64(conn.as_u64());
                out.put_u16(*code);
                put_str(&mut out, reason);
            }
            Command::Join { conn, room } | Command::Leave { conn, room } => {
                out.put_u64(conn.as_u64());
                put_str(&mut out, room);
            }
            Command::Room {
                room,
                message,
                except,
            } => {
                put_str(&mut out, room);
                out.put_u64(except.map_or(u64::MAX, ConnId::as_u64));
                put_message(&mut out, message);
            }
            Command::User { user, message } => {
                put_str(&mut out, user);
                put_message(&mut out, message);
            }
            Command::CloseUser { user, code, reason } => {
                put_str(&mut out, user);
                out.put_u16(*code);
                put_str(&mut out, reason);
            }
            Command::Broadcast { scope, message } => {
                match scope {
                    Scope::All => out.put_u8(0),
                    Scope::Server(name) => {
                        out.put_u8(1);
                        put_str(&mut out, name);
                    }
                    Scope::Route(pattern) => {
                        out.put_u8(2);
                        put_str(&mut out, pattern);
                    }
                }
                put_message(&mut out, message);
            }
            Command::Publication {
                room,
                position,
                message,
            } => {
                put_str(&mut out, room);
                put_str(&mut out, &position.epoch);
                out.put_u64(position.offset);
                put_message(&mut out, message);
            }
            Command::Ask {
                request,
                reply_to,
                command,
            } => {
                out.put_u64(*request);
                out.put_u16(*reply_to);
                // The inner command whole, its origin included, behind a length.
                put_bytes(&mut out, &command.encode(origin));
            }
            Command::Answer {
                request,
                node,
                outcome,
                count,
            } => {
                out.put_u64(*request);
                out.put_u16(*node);
                out.put_u8(outcome.code());
                out.put_u32(*count);
            }
        }
        out.freeze()
    }

    /// Decodes a payload into its origin and command; `None` when it is not one this
    /// version understands (it is then dropped and counted).
    pub(crate) fn decode(mut input: Bytes) -> Option<(u64, Command)> {
        let input = &mut input;
        if get_u8(input)? != VERSION {
            return None;
        }
        let kind = get_u8(input)?;
        let origin = get_u64(input)?;
        let command = match kind {
            0 => Command::Push {
                conn: get_conn(input)?,
                message: get_message(input)?,
            },
            1 => Command::Close {
                conn: get_conn(input)?,
                code: get_u16(input)?,
                reason: get_str(input)?,
            },
            2 => Command::Join {
                conn: get_conn(input)?,
                room: get_str(input)?,
            },
            3 => Command::Leave {
                conn: get_conn(input)?,
                room: get_str(input)?,
            },
            4 => Command::Room {
                room: get_str(input)?,
                except: match get_u64(input)? {
                    u64::MAX => None,
                    id => Some(ConnId::from_u64(id)),
                },
                message: get_message(input)?,
            },
            5 => Command::User {
                user: get_str(input)?,
                message: get_message(input)?,
            },
            6 => Command::CloseUser {
                user: get_str(input)?,
                code: get_u16(input)?,
                reason: get_str(input)?,
            },
            7 => Command::Broadcast {
                scope: match get_u8(input)? {
                    0 => Scope::All,
                    1 => Scope::Server(get_str(input)?),
                    2 => Scope::Route(get_str(input)?),
                    _ => return None,
                },
                message: get_message(input)?,
            },
            8 => Command::Publication {
                room: get_str(input)?,
                position: {
                    let epoch = get_str(input)?;
                    if !Position::valid_epoch(&epoch) {
                        return None;
                    }
                    Position::new(epoch, get_u64(input)?)
                },
                message: get_message(input)?,
            },
            9 => Command::Ask {
                request: get_u64(input)?,
                reply_to: get_u16(input)?,
                command: match Command::decode(get_bytes(input)?)? {
                    // One level only: an ask inside an ask is refused.
                    (inner, _) if inner != origin => return None,
                    (_, Command::Ask { .. } | Command::Answer { .. }) => return None,
                    (_, command) => Box::new(command),
                },
            },
            10 => Command::Answer {
                request: get_u64(input)?,
                node: get_u16(input)?,
                outcome: Outcome::from_code(get_u8(input)?)?,
                count: get_u32(input)?,
            },
            _ => return None,
        };
        input.is_empty().then_some((origin, command))
    }

    fn kind(&self) -> u8 {
        match self {
            Command::Push { .. } => 0,
            Command::Close { .. } => 1,
            Command::Join { .. } => 2,
            Command::Leave { .. } => 3,
            Command::Room { .. } => 4,
            Command::User { .. } => 5,
            Command::CloseUser { .. } => 6,
            Command::Broadcast { .. } => 7,
            Command::Publication { .. } => 8,
            Command::Ask { .. } => 9,
            Command::Answer { .. } => 10,
        }
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn put_message(out: &mut BytesMut, message: &Message) {
    out.put_u8(match message {
        Message::Text(_) => 1,
        _ => 2,
    });
    put_bytes(out, message.as_bytes());
}

fn get_u8(input: &mut Bytes) -> Option<u8> {
    (input.remaining() >= 1).then(|| input.get_u8())
}

fn get_u16(input: &mut Bytes) -> Option<u16> {
    (input.remaining() >= 2).then(|| input.get_u16())
}

fn get_u64(input: &mut Bytes) -> Option<u64> {
    (input.remaining() >= 8).then(|| input.get_u64())
}

fn get_u32(input: &mut Bytes) -> Option<u32> {
    (input.remaining() >= 4).then(|| input.get_u32())
}

fn get_conn(input: &mut Bytes) -> Option<ConnId> {
    get_u64(input).map(ConnId::from_u64)
}

fn get_bytes(input: &mut Bytes) -> Option<Bytes> {
    if input.remaining() < 4 {
        return None;
    }
    let len = input.get_u32() as usize;
    (input.remaining() >= len).then(|| input.split_to(len))
}

fn get_str(input: &mut Bytes) -> Option<String> {
    String::from_utf8(get_bytes(input)?.to_vec()).ok()
}

fn get_message(input: &mut Bytes) -> Option<Message> {
    match get_u8(input)? {
        1 => Some(Message::Text(get_str(input)?)),
        2 => Some(Message::Binary(get_bytes(input)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips() {
        let id = ConnId::new(3, 9);
        let commands = [
            Command::Push {
                conn: id,
                message: Message::text("héllo"),
            },
            Command::Close {
                conn: id,
                code: 4000,
                reason: "bye".into(),
            },
            Command::Join {
                conn: id,
                room: "lobby".into(),
            },
            Command::Leave {
                conn: id,
                room: "lobby".into(),
            },
            Command::Room {
                room: "r".into(),
                message: Message::binary(vec![0, 255]),
                except: Some(id),
            },
            Command::Room {
                room: "r".into(),
                message: Message::text(""),
                except: None,
            },
            Command::User {
                user: "alice".into(),
                message: Message::text("hi"),
            },
            Command::CloseUser {
                user: "alice".into(),
                code: 1000,
                reason: String::new(),
            },
            Command::Broadcast {
                scope: Scope::All,
                message: Message::text("x"),
            },
            Command::Broadcast {
                scope: Scope::Server("ws".into()),
                message: Message::text("x"),
            },
            Command::Broadcast {
                scope: Scope::Route("/chat".into()),
                message: Message::text("x"),
            },
            Command::Publication {
                room: "chat:lobby".into(),
                position: Position::new("k3xq9a", 42),
                message: Message::binary(vec![1, 2]),
            },
        ];
        let commands = commands.into_iter().chain([
            Command::Ask {
                request: 5,
                reply_to: 17,
                command: Box::new(Command::Push {
                    conn: id,
                    message: Message::text("asked"),
                }),
            },
            Command::Answer {
                request: 5,
                node: 3,
                outcome: Outcome::QueueFull,
                count: 0,
            },
        ]);
        for command in commands {
            let encoded = command.encode(77);
            assert_eq!(Command::decode(encoded.clone()), Some((77, command)));
            // Every truncation is refused, never a panic.
            for cut in 0..encoded.len() {
                assert!(Command::decode(encoded.slice(..cut)).is_none());
            }
        }
    }

    /// The bytes of each command written out by hand from the format in the module docs, so
    /// a bug shared by `encode` and `decode` (a swapped field, a little-endian length) cannot
    /// round-trip its way past the test above. Nodes of different versions read these bytes.
    #[test]
    fn fixed_bytes_for_every_command() {
        let conn = ConnId::from_u64(0x0102_0304_0506_0708);
        const ORIGIN: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 0x4d]; // 77
        const CONN: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
        let cases: Vec<(Command, Vec<&[u8]>)> = vec![
            (
                Command::Push {
                    conn,
                    message: Message::text("hé"),
                },
                vec![&[1, 0], &ORIGIN, &CONN, &[1, 0, 0, 0, 3], b"h\xc3\xa9"],
            ),
            (
                Command::Close {
                    conn,
                    code: 4000,
                    reason: "bye".into(),
                },
                vec![
                    &[1, 1],
                    &ORIGIN,
                    &CONN,
                    &[0x0f, 0xa0],
                    &[0, 0, 0, 3],
                    b"bye",
                ],
            ),
            (
                Command::Join {
                    conn,
                    room: "lobby".into(),
                },
                vec![&[1, 2], &ORIGIN, &CONN, &[0, 0, 0, 5], b"lobby"],
            ),
            (
                Command::Leave {
                    conn,
                    room: "a".into(),
                },
                vec![&[1, 3], &ORIGIN, &CONN, &[0, 0, 0, 1], b"a"],
            ),
            (
                Command::Room {
                    room: "r".into(),
                    message: Message::binary(vec![0, 255]),
                    except: Some(conn),
                },
                vec![
                    &[1, 4],
                    &ORIGIN,
                    &[0, 0, 0, 1],
                    b"r",
                    &CONN,
                    &[2, 0, 0, 0, 2, 0, 255],
                ],
            ),
            (
                Command::Room {
                    room: "r".into(),
                    message: Message::text(""),
                    except: None,
                },
                vec![
                    &[1, 4],
                    &ORIGIN,
                    &[0, 0, 0, 1],
                    b"r",
                    &[0xff; 8],
                    &[1, 0, 0, 0, 0],
                ],
            ),
            (
                Command::User {
                    user: "al".into(),
                    message: Message::text("hi"),
                },
                vec![
                    &[1, 5],
                    &ORIGIN,
                    &[0, 0, 0, 2],
                    b"al",
                    &[1, 0, 0, 0, 2],
                    b"hi",
                ],
            ),
            (
                Command::CloseUser {
                    user: "al".into(),
                    code: 1000,
                    reason: String::new(),
                },
                vec![
                    &[1, 6],
                    &ORIGIN,
                    &[0, 0, 0, 2],
                    b"al",
                    &[0x03, 0xe8],
                    &[0, 0, 0, 0],
                ],
            ),
            (
                Command::Broadcast {
                    scope: Scope::All,
                    message: Message::text("x"),
                },
                vec![&[1, 7], &ORIGIN, &[0], &[1, 0, 0, 0, 1], b"x"],
            ),
            (
                Command::Broadcast {
                    scope: Scope::Server("ws".into()),
                    message: Message::text("x"),
                },
                vec![
                    &[1, 7],
                    &ORIGIN,
                    &[1, 0, 0, 0, 2],
                    b"ws",
                    &[1, 0, 0, 0, 1],
                    b"x",
                ],
            ),
            (
                Command::Broadcast {
                    scope: Scope::Route("/c".into()),
                    message: Message::binary(vec![7]),
                },
                vec![
                    &[1, 7],
                    &ORIGIN,
                    &[2, 0, 0, 0, 2],
                    b"/c",
                    &[2, 0, 0, 0, 1, 7],
                ],
            ),
        ];
        for (command, parts) in cases {
            let bytes = parts.concat();
            assert_eq!(&command.encode(77)[..], &bytes[..], "{command:?}");
            assert_eq!(
                Command::decode(Bytes::from(bytes)),
                Some((77, command.clone())),
                "{command:?}"
            );
        }
    }

    #[test]
    fn publication_has_a_fixed_encoding() {
        let command = Command::Publication {
            room: "r".into(),
            position: Position::new("e1", 258),
            message: Message::text("hi"),
        };
        #[rustfmt::skip]
        let expected: &[u8] = &[
            1, 8,                           // version, kind
            0, 0, 0, 0, 0, 0, 0, 7,         // origin
            0, 0, 0, 1, b'r',               // room
            0, 0, 0, 2, b'e', b'1',         // epoch
            0, 0, 0, 0, 0, 0, 1, 2,         // offset 258
            1, 0, 0, 0, 2, b'h', b'i',      // text "hi"
        ];
        assert_eq!(&command.encode(7)[..], expected);
        assert_eq!(
            Command::decode(Bytes::from_static(expected)),
            Some((7, command))
        );
        // An epoch that is not a token is refused.
        let mut bad = expected.to_vec();
        bad[20] = b' ';
        assert!(Command::decode(Bytes::from(bad)).is_none());
    }

    #[test]
    fn bad_utf8_and_trailing_bytes_are_refused() {
        let mut bad = BytesMut::new();
        bad.put_u8(VERSION);
        bad.put_u8(5);
        bad.put_u64(1);
        put_bytes(&mut bad, &[0xff, 0xfe]);
        put_message(&mut bad, &Message::text("x"));
        assert!(Command::decode(bad.freeze()).is_none());
        let mut trailing = BytesMut::from(
            &Command::Join {
                conn: ConnId::new(1, 1),
                room: "a".into(),
            }
            .encode(1)[..],
        );
        trailing.put_u8(0);
        assert!(Command::decode(trailing.freeze()).is_none());
    }

    #[test]
    fn asks_and_answers_have_fixed_bytes() {
        let ask = Command::Ask {
            request: 0x0102,
            reply_to: 7,
            command: Box::new(Command::Push {
                conn: ConnId::new(3, 9),
                message: Message::text("hi"),
            }),
        };
        #[rustfmt::skip]
        let inner: &[u8] = &[
            1, 0, 0, 0, 0, 0, 0, 0, 0, 77,   // version, kind 0 (push), origin 77
            0, 3, 0, 0, 0, 0, 0, 9,          // connection 3-9
            1, 0, 0, 0, 2, b'h', b'i',       // text "hi"
        ];
        let mut expected = vec![1, 9, 0, 0, 0, 0, 0, 0, 0, 77]; // version, kind 9 (ask), origin
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]); // request 0x0102
        expected.extend_from_slice(&[0, 7]); // reply to node 7
        expected.extend_from_slice(&[0, 0, 0, inner.len() as u8]);
        expected.extend_from_slice(inner);
        assert_eq!(&ask.encode(77)[..], &expected[..]);

        let answer = Command::Answer {
            request: 0x0102,
            node: 300,
            outcome: Outcome::Closing,
            count: 2,
        };
        #[rustfmt::skip]
        let expected: &[u8] = &[
            1, 10, 0, 0, 0, 0, 0, 0, 0, 77, // version, kind 10 (answer), origin 77
            0, 0, 0, 0, 0, 0, 1, 2,          // request
            1, 44,                           // node 300
            3,                               // closing
            0, 0, 0, 2,                      // count
        ];
        assert_eq!(&answer.encode(77)[..], expected);
    }

    #[test]
    fn nested_asks_and_foreign_inner_origins_are_refused() {
        let push = Command::Push {
            conn: ConnId::new(1, 1),
            message: Message::text("x"),
        };
        let ask = |inner: Bytes| {
            let mut out = BytesMut::new();
            out.put_u8(VERSION);
            out.put_u8(9);
            out.put_u64(77);
            out.put_u64(1);
            out.put_u16(2);
            put_bytes(&mut out, &inner);
            out.freeze()
        };
        assert!(Command::decode(ask(push.encode(77))).is_some());
        assert!(Command::decode(ask(push.encode(78))).is_none());
        let nested = Command::Ask {
            request: 1,
            reply_to: 2,
            command: Box::new(push),
        };
        assert!(Command::decode(ask(nested.encode(77))).is_none());
    }
}
