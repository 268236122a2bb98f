//! The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a proxy sends before
//! anything else on a connection to say which client it carries.
//!
//! [`parse`] is a pure function over the bytes read so far: it says the header is complete
//! (and how long it is), that it needs more bytes (and how many at least), or that the bytes
//! are not a valid header. It never panics and never asks for more than [`MAX_HEADER`]
//! bytes, so [`read_header`] reads exactly the header and leaves the request after it unread.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line, CRLF included (the spec's bound).
const V1_MAX: usize = 107;
/// The shortest v1 line: `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;
/// The v2 fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The longest header accepted (v2 with TLVs); longer ones are refused.
pub(crate) const MAX_HEADER: usize = 4096;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyHeader {
    /// The proxied client's address.
    Proxied(SocketAddr),
    /// No client address: a v2 `LOCAL` connection (the proxy's own health check), v1
    /// `UNKNOWN`, or a family without an IP address (UNIX sockets). The TCP peer stands.
    Local,
}

/// The result of [`parse`] on the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole header of `len` bytes; what follows belongs to the next protocol.
    Complete { header: ProxyHeader, len: usize },
    /// Not enough bytes yet: read until there are at least `need` (never above
    /// [`MAX_HEADER`]).
    Incomplete { need: usize },
}

/// Why the bytes are not a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyHeaderError {
    /// Neither the v1 prefix nor the v2 signature: the peer did not send a header.
    Missing,
    /// A v1 line that is malformed (the part named).
    V1(&'static str),
    /// A v2 header with a bad version, command or length (the part named).
    V2(&'static str),
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyHeaderError::Missing => {
                f.write_str("the connection did not start with a PROXY protocol header")
            }
            ProxyHeaderError::V1(what) => write!(f, "bad PROXY protocol v1 header: {what}"),
            ProxyHeaderError::V2(what) => write!(f, "bad PROXY protocol v2 header: {what}"),
        }
    }
}

impl std::error::Error for ProxyHeaderError {}

/// Parses the start of a connection as a PROXY protocol header.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let v2_prefix = buf.len().min(V2_SIGNATURE.len());
    if buf[..v2_prefix] == V2_SIGNATURE[..v2_prefix] && !buf.is_empty() {
        return parse_v2(buf);
    }
    let v1_prefix = buf.len().min(V1_PREFIX.len());
    if buf[..v1_prefix] == V1_PREFIX[..v1_prefix] && !buf.is_empty() {
        return parse_v1(buf);
    }
    if buf.is_empty() {
        return Ok(Parsed::Incomplete { need: V1_MIN });
    }
    Err(ProxyHeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyHeaderError::V1("no CRLF within 107 bytes"));
        }
        if buf.iter().any(|&b| b == b'\n' || !b.is_ascii()) {
            return Err(ProxyHeaderError::V1("not one ASCII line"));
        }
        return Ok(Parsed::Incomplete {
            need: (buf.len() + 1).max(V1_MIN),
        });
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(ProxyHeaderError::V1("longer than 107 bytes"));
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| ProxyHeaderError::V1("not ASCII"))?;
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let header = match fields.next() {
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = |what| fields.next().ok_or(ProxyHeaderError::V1(what));
            let (src, dst, src_port, dst_port) = (
                next("no source address")?,
                next("no destination address")?,
                next("no source port")?,
                next("no destination port")?,
            );
            if fields.next().is_some() {
                return Err(ProxyHeaderError::V1("extra fields"));
            }
            let ip = |text: &str| -> Result<IpAddr, ProxyHeaderError> {
                if family == "TCP4" {
                    text.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    text.parse::<Ipv6Addr>().map(IpAddr::V6)
                }
                .map_err(|_| ProxyHeaderError::V1("an address does not match its family"))
            };
            let source = ip(src)?;
            ip(dst)?;
            let port = parse_port(src_port)?;
            parse_port(dst_port)?;
            ProxyHeader::Proxied(SocketAddr::new(source, port))
        }
        _ => {
            return Err(ProxyHeaderError::V1(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Parsed::Complete { header, len })
}

/// A decimal port: 1 to 5 digits, no sign, no leading zero, at most 65535.
fn parse_port(text: &str) -> Result<u16, ProxyHeaderError> {
    let bad = ProxyHeaderError::V1("a port is not a number 0-65535");
    if text.is_empty()
        || text.len() > 5
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(bad);
    }
    text.parse().map_err(|_| bad)
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let Some(fixed) = buf.get(..V2_FIXED) else {
        return Ok(Parsed::Incomplete { need: V2_FIXED });
    };
    let version_command = fixed[12];
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::V2("version is not 2"));
    }
    let family = fixed[13];
    let body_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let len = V2_FIXED + body_len;
    if len > MAX_HEADER {
        return Err(ProxyHeaderError::V2("longer than 4096 bytes"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyHeaderError::V2("command is not LOCAL or PROXY")),
    };
    let Some(body) = buf.get(V2_FIXED..len) else {
        return Ok(Parsed::Incomplete { need: len });
    };
    if local {
        // The proxy's own connection (a health check): the addresses, if any, are ignored.
        return Ok(Parsed::Complete {
            header: ProxyHeader::Local,
            len,
        });
    }
    let header = match family >> 4 {
        // AF_INET: source, destination, source port, destination port.
        1 => {
            let addr = body
                .get(..12)
                .ok_or(ProxyHeaderError::V2("too short for IPv4 addresses"))?;
            let ip = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
            let port = u16::from_be_bytes([addr[8], addr[9]]);
            ProxyHeader::Proxied(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // AF_INET6.
        2 => {
            let addr = body
                .get(..36)
                .ok_or(ProxyHeaderError::V2("too short for IPv6 addresses"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addr[..16]);
            let port = u16::from_be_bytes([addr[32], addr[33]]);
            ProxyHeader::Proxied(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // AF_UNSPEC, AF_UNIX: no IP address to take.
        0 | 3 => ProxyHeader::Local,
        _ => return Err(ProxyHeaderError::V2("unknown address family")),
    };
    Ok(Parsed::Complete { header, len })
}

/// Why [`read_header`] produced no header.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The bytes are not a valid header.
    Invalid(ProxyHeaderError),
    /// The connection failed or ended first.
    Io(std::io::Error),
}

/// Reads exactly one header from `stream`, never a byte past it (so the TLS or HTTP that
/// follows is left for the next reader). A v1 line is read a byte at a time past its first
/// 15 bytes, since its length is not known up front; a v2 header in at most three reads.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<ProxyHeader, ReadError> {
    let mut buf = Vec::with_capacity(V1_MAX);
    loop {
        match parse(&buf).map_err(ReadError::Invalid)? {
            Parsed::Complete { header, .. } => return Ok(header),
            Parsed::Incomplete { need } => {
                let have = buf.len();
                buf.resize(need, 0);
                stream
                    .read_exact(&mut buf[have..])
                    .await
                    .map_err(ReadError::Io)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (ProxyHeader, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("{other:?} for {bytes:?}"),
        }
    }

    /// A v2 header: `command` 0 (LOCAL) or 1 (PROXY), `family` byte, address block, TLVs.
    pub(crate) fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(body.len()).expect("short").to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 203.0.113.9 10.0.0.1 56324 443\r\nGET /";
        let (header, len) = complete(line);
        assert_eq!(
            header,
            ProxyHeader::Proxied("203.0.113.9:56324".parse().expect("addr"))
        );
        assert_eq!(&line[len..], b"GET /");
        let (header, _) = complete(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
        assert_eq!(
            header,
            ProxyHeader::Proxied("[2001:db8::1]:1".parse().expect("addr"))
        );
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").0, ProxyHeader::Local);
        assert_eq!(
            complete(b"PROXY UNKNOWN whatever 1 2\r\n").0,
            ProxyHeader::Local
        );
    }

    #[test]
    fn v1_refuses_malformed_lines() {
        for bad in [
            &b"PROXY TCP4 203.0.113.9 10.0.0.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 10.0.0.1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
            b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\n1.2.3.4 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyHeaderError::V1(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 120]].concat();
        assert!(parse(&long).is_err(), "no CRLF within 107 bytes");
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyHeaderError::Missing));
    }

    #[test]
    fn incomplete_asks_for_more_and_never_past_the_header() {
        assert_eq!(parse(b""), Ok(Parsed::Incomplete { need: 15 }));
        assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete { need: 15 }));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3."),
            Ok(Parsed::Incomplete { need: 18 })
        );
        assert_eq!(parse(b"\r\n\r\n"), Ok(Parsed::Incomplete { need: 16 }));
        let header = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 1, 187]);
        assert_eq!(parse(&header[..16]), Ok(Parsed::Incomplete { need: 28 }));
    }

    #[test]
    fn v2_inet_inet6_local_unix_and_tlvs() {
        let mut body = vec![203, 0, 113, 9, 10, 0, 0, 1, 0xdc, 0x04, 1, 187];
        body.extend_from_slice(&[0x04, 0, 3, b'a', b'b', b'c']); // a TLV, ignored
        let (header, len) = complete(&[v2(1, 0x11, &body), b"GET".to_vec()].concat());
        assert_eq!(
            header,
            ProxyHeader::Proxied("203.0.113.9:56324".parse().expect("addr"))
        );
        assert_eq!(len, 16 + body.len());
        let mut six = Vec::new();
        six.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("v6").octets());
        six.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        six.extend_from_slice(&[0, 9, 1, 187]);
        assert_eq!(
            complete(&v2(1, 0x21, &six)).0,
            ProxyHeader::Proxied("[2001:db8::7]:9".parse().expect("addr"))
        );
        assert_eq!(complete(&v2(0, 0x00, &[])).0, ProxyHeader::Local);
        assert_eq!(complete(&v2(0, 0x11, &body)).0, ProxyHeader::Local);
        assert_eq!(complete(&v2(1, 0x31, &[0; 216])).0, ProxyHeader::Local);
    }

    #[test]
    fn v2_refuses_bad_versions_commands_and_lengths() {
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        let mut wrong_command = v2(1, 0x11, &[0; 12]);
        wrong_command[12] = 0x22;
        for bad in [
            wrong_version,
            wrong_command,
            v2(1, 0x11, &[0; 11]),
            v2(1, 0x21, &[0; 35]),
            v2(1, 0x41, &[0; 12]),
        ] {
            assert!(
                matches!(parse(&bad), Err(ProxyHeaderError::V2(_))),
                "{bad:?}"
            );
        }
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(
            parse(&huge).is_err(),
            "over 4096 bytes is refused before it is read"
        );
    }

    /// Every prefix and every single-byte change of valid headers: no panic, and a request
    /// for more bytes always grows and stays within the bound.
    #[test]
    fn no_panics_on_prefixes_and_mutations() {
        let samples = [
            b"PROXY TCP4 203.0.113.9 10.0.0.1 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n".to_vec(),
            v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 1, 187]),
            v2(1, 0x21, &[7; 36]),
        ];
        for sample in samples {
            for cut in 0..=sample.len() {
                check(&sample[..cut]);
            }
            for i in 0..sample.len() {
                for byte in [0u8, b' ', b'\r', b'\n', 0x7f, 0xff, b'9'] {
                    let mut changed = sample.clone();
                    changed[i] = byte;
                    check(&changed);
                }
            }
        }
    }

    fn check(bytes: &[u8]) {
        if let Ok(Parsed::Incomplete { need }) = parse(bytes) {
            assert!(
                need > bytes.len() && need <= MAX_HEADER,
                "{need} for {bytes:?}"
            );
        }
        if let Ok(Parsed::Complete { len, .. }) = parse(bytes) {
            assert!(len <= bytes.len());
        }
    }

    #[tokio::test]
    async fn read_header_leaves_what_follows() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.9 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let header = read_header(&mut input).await.expect("header");
        assert_eq!(
            header,
            ProxyHeader::Proxied("203.0.113.9:56324".parse().expect("addr"))
        );
        assert_eq!(input, b"GET / HTTP/1.1\r\n");
        let mut short: &[u8] = b"PROXY TCP4 1.2";
        assert!(matches!(
            read_header(&mut short).await,
            Err(ReadError::Io(_))
        ));
        let mut plain: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(matches!(
            read_header(&mut plain).await,
            Err(ReadError::Invalid(ProxyHeaderError::Missing))
        ));
    }
}
