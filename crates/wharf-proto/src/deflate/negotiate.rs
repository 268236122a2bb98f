//! Negotiating permessage-deflate (RFC 7692 §7): the server's policy
//! ([`DeflateConfig`]), reading a client's offers and writing the agreed
//! parameters ([`DeflateParams`]) back.

/// The extension's token in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// What a server is willing to agree to: each field caps or requests what a
/// client offer may get. The defaults keep no compression state between
/// messages (no per-connection compressor is kept; see the crate docs on
/// memory) and allow the full 32 KiB window.
///
/// ```
/// use wharf_proto::DeflateConfig;
///
/// let config = DeflateConfig::default();
/// assert!(config.server_no_context_takeover && config.client_no_context_takeover);
/// assert_eq!((config.server_max_window_bits, config.client_max_window_bits), (15, 15));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Compress each server message on its own (default true): no
    /// compressor is kept per connection.
    pub server_no_context_takeover: bool,
    /// Ask clients to compress each message on its own (default true): no
    /// decompressor is kept per connection between messages.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 9 to 15 (default 15).
    pub server_max_window_bits: u8,
    /// The largest window asked of clients that offer `client_max_window_bits`,
    /// 8 to 15 (default 15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The parameters both ends agreed on for one connection.
///
/// ```
/// use wharf_proto::{DeflateConfig, DeflateParams};
///
/// // What Chromium offers.
/// let offer = "permessage-deflate; client_max_window_bits";
/// let params = DeflateParams::negotiate([offer], &DeflateConfig::default()).unwrap();
/// assert_eq!(
///     params.to_header(),
///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
/// );
/// // No offer, or only unknown extensions: no compression.
/// assert_eq!(DeflateParams::negotiate(["x-webkit-deflate-frame"], &DeflateConfig::default()), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server compresses each message with a fresh context.
    pub server_no_context_takeover: bool,
    /// The client compresses each message with a fresh context.
    pub client_no_context_takeover: bool,
    /// The server's window, 8 to 15 bits. At 8 the server sends its
    /// messages uncompressed (raw deflate cannot be produced with a 256-byte
    /// window; RFC 7692 lets an endpoint leave any message uncompressed).
    pub server_max_window_bits: u8,
    /// The client's window, 8 to 15 bits.
    pub client_max_window_bits: u8,
    /// Whether `client_max_window_bits` goes into the response.
    client_window_in_response: bool,
    /// Whether `server_max_window_bits` goes into the response.
    server_window_in_response: bool,
}

impl DeflateParams {
    /// Picks the first acceptable offer from the values of the request's
    /// `Sec-WebSocket-Extensions` headers, capped by `config`. Offers with
    /// unknown or repeated parameters or invalid values are declined
    /// (RFC 7692 §5), so the next one is tried; `None` when none is
    /// acceptable, and the connection is not compressed.
    ///
    /// ```
    /// use wharf_proto::{DeflateConfig, DeflateParams};
    ///
    /// let config = DeflateConfig::default();
    /// let offers = ["permessage-deflate; bogus, permessage-deflate; server_max_window_bits=10"];
    /// let params = DeflateParams::negotiate(offers, &config).unwrap();
    /// assert_eq!(params.server_max_window_bits, 10);
    /// ```
    pub fn negotiate<'a>(
        headers: impl IntoIterator<Item = &'a str>,
        config: &DeflateConfig,
    ) -> Option<Self> {
        headers
            .into_iter()
            .flat_map(|value| value.split(','))
            .find_map(|offer| Self::accept(offer, config))
    }

    fn accept(offer: &str, config: &DeflateConfig) -> Option<Self> {
        let mut parts = offer.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case(EXTENSION_NAME) {
            return None;
        }
        let offer = Offer::parse(parts)?;
        let server_window = offer
            .server_max_window_bits
            .unwrap_or(15)
            .min(config.server_max_window_bits.clamp(9, 15));
        let client_window = match offer.client_max_window_bits {
            Some(offered) => offered
                .unwrap_or(15)
                .min(config.client_max_window_bits.clamp(8, 15)),
            None => 15,
        };
        Some(Self {
            server_no_context_takeover: offer.server_no_context_takeover
                || config.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || config.client_no_context_takeover,
            server_max_window_bits: server_window,
            client_max_window_bits: client_window,
            server_window_in_response: offer.server_max_window_bits.is_some() || server_window < 15,
            // Only a client that offered the parameter may be told a window.
            client_window_in_response: offer.client_max_window_bits.is_some() && client_window < 15,
        })
    }

    /// What a server's response agreed to, read by the client that sent the
    /// offer: `None` unless it is exactly one valid permessage-deflate
    /// response (the client must then fail the connection, RFC 7692 §5).
    ///
    /// ```
    /// use wharf_proto::DeflateParams;
    ///
    /// let params = DeflateParams::from_response("permessage-deflate; server_max_window_bits=10").unwrap();
    /// assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (10, 15));
    /// assert!(!params.server_no_context_takeover);
    /// assert_eq!(DeflateParams::from_response("permessage-deflate; client_max_window_bits"), None);
    /// ```
    pub fn from_response(value: &str) -> Option<Self> {
        let mut parts = value.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case(EXTENSION_NAME) || value.contains(',') {
            return None;
        }
        let offer = Offer::parse(parts)?;
        // In a response the client's window needs a value.
        if offer.client_max_window_bits == Some(None) {
            return None;
        }
        Some(Self {
            server_no_context_takeover: offer.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover,
            server_max_window_bits: offer.server_max_window_bits.unwrap_or(15),
            client_max_window_bits: offer.client_max_window_bits.flatten().unwrap_or(15),
            server_window_in_response: offer.server_max_window_bits.is_some(),
            client_window_in_response: offer.client_max_window_bits.is_some(),
        })
    }

    /// The `Sec-WebSocket-Extensions` value of the response.
    ///
    /// ```
    /// use wharf_proto::{DeflateConfig, DeflateParams};
    ///
    /// let mut config = DeflateConfig::default();
    /// config.server_no_context_takeover = false;
    /// config.client_no_context_takeover = false;
    /// let offer = "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12";
    /// let params = DeflateParams::negotiate([offer], &config).unwrap();
    /// assert_eq!(
    ///     params.to_header(),
    ///     "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
    /// );
    /// ```
    pub fn to_header(&self) -> String {
        let mut header = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            header.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            header.push_str("; client_no_context_takeover");
        }
        if self.server_window_in_response {
            header.push_str("; server_max_window_bits=");
            header.push_str(&self.server_max_window_bits.to_string());
        }
        if self.client_window_in_response {
            header.push_str("; client_max_window_bits=");
            header.push_str(&self.client_max_window_bits.to_string());
        }
        header
    }
}

/// The parameters of one offer, each at most once.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    fn parse<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
        let mut offer = Offer::default();
        for param in params {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
                None => (param, None),
            };
            match (name, value) {
                ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                    offer.server_no_context_takeover = true;
                }
                ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                    offer.client_no_context_takeover = true;
                }
                ("server_max_window_bits", Some(value))
                    if offer.server_max_window_bits.is_none() =>
                {
                    offer.server_max_window_bits = Some(window_bits(value)?);
                }
                ("client_max_window_bits", value) if offer.client_max_window_bits.is_none() => {
                    let bits = match value {
                        Some(value) => Some(window_bits(value)?),
                        None => None,
                    };
                    offer.client_max_window_bits = Some(bits);
                }
                _ => return None,
            }
        }
        Some(offer)
    }
}

/// A window size: 8 to 15, digits only (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// A parameter value may be a quoted string (RFC 6455 §9.1).
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_defaults() -> DeflateConfig {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..DeflateConfig::default()
        }
    }

    fn negotiate(offer: &str, config: &DeflateConfig) -> Option<String> {
        DeflateParams::negotiate([offer], config).map(|p| p.to_header())
    }

    #[test]
    fn plain_offer_with_rfc_defaults() {
        let config = rfc_defaults();
        assert_eq!(
            negotiate("permessage-deflate", &config).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            negotiate("PerMessage-Deflate ; client_max_window_bits", &config).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn offered_flags_are_echoed() {
        let config = rfc_defaults();
        let header = negotiate(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            &config,
        );
        assert_eq!(
            header.as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn windows_are_capped_by_the_config() {
        let config = DeflateConfig {
            server_max_window_bits: 10,
            client_max_window_bits: 9,
            ..rfc_defaults()
        };
        // The server may state its own window unasked; the client's only when offered.
        assert_eq!(
            negotiate("permessage-deflate", &config).as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        let params = DeflateParams::negotiate(
            ["permessage-deflate; server_max_window_bits=12; client_max_window_bits=\"11\""],
            &config,
        );
        let params = params.expect("accepted");
        assert_eq!(
            (params.server_max_window_bits, params.client_max_window_bits),
            (10, 9)
        );
        assert_eq!(
            params.to_header(),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"
        );
        let params =
            DeflateParams::negotiate(["permessage-deflate; server_max_window_bits=8"], &config);
        assert_eq!(params.map(|p| p.server_max_window_bits), Some(8));
    }

    #[test]
    fn responses_round_trip() {
        for config in [rfc_defaults(), DeflateConfig::default()] {
            for offer in [
                "permessage-deflate",
                "permessage-deflate; client_max_window_bits=9; server_max_window_bits=10",
                "permessage-deflate; server_no_context_takeover",
            ] {
                let params = DeflateParams::negotiate([offer], &config).expect("accepted");
                assert_eq!(
                    DeflateParams::from_response(&params.to_header()),
                    Some(params)
                );
            }
        }
        assert_eq!(
            DeflateParams::from_response("permessage-deflate, permessage-deflate"),
            None
        );
        assert_eq!(DeflateParams::from_response("x-other"), None);
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_is_taken() {
        let config = rfc_defaults();
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "permessage-deflate; x=1",
            "permessage-deflatex",
            "",
        ] {
            assert_eq!(negotiate(bad, &config), None, "{bad}");
        }
        let two = "permessage-deflate; x, permessage-deflate; client_no_context_takeover";
        assert_eq!(
            negotiate(two, &config).as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        let headers = ["foo, bar; baz=1", "permessage-deflate"];
        assert!(DeflateParams::negotiate(headers, &config).is_some());
    }
}
