//! [`Compression`]: permessage-deflate (RFC 7692) for one WebSocket server.

use serde::Deserialize;

/// `[server.compression]`: permessage-deflate, offered by browsers and most clients. Off by
/// default. The defaults keep no compression state between messages: the server compresses
/// each message with a per-thread compressor and a client's decompressor is dropped after each
/// message, so an idle connection costs no more with compression on. Setting the two
/// `*_no_context_takeover` to false compresses repeated messages better, at about 300 KiB
/// (server side) and 40 KiB (client side) per connection that uses it.
///
/// ```
/// let config = wharf::Config::from_toml_str(r#"
///     [[server]]
///     name = "ws"
///     kind = "websocket"
///     port = 9502
///     [server.compression]
///     enabled = true
///     threshold = "1KiB"
/// "#).unwrap();
/// let compression = &config.servers[0].compression;
/// assert!(compression.enabled);
/// assert_eq!(compression.threshold, 1024);
/// assert!(compression.server_no_context_takeover);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Compression {
    /// Accept permessage-deflate offers. Default: false.
    pub enabled: bool,
    /// Messages shorter than this are sent uncompressed (compressing them costs more than it
    /// saves). Default: `"128B"`.
    #[serde(deserialize_with = "super::units::size")]
    pub threshold: usize,
    /// zlib compression level, 0 (store) to 9 (smallest). Default: 6.
    pub level: u32,
    /// Compress each server message on its own. Default: true.
    pub server_no_context_takeover: bool,
    /// Ask clients to compress each message on its own. Default: true.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 9–15. Default: 15.
    pub server_max_window_bits: u8,
    /// The largest window asked of clients, 8–15. Default: 15.
    pub client_max_window_bits: u8,
}

impl Default for Compression {
    fn default() -> Self {
        let proto = wharf_proto::DeflateConfig::default();
        Compression {
            enabled: false,
            threshold: 128,
            level: 6,
            server_no_context_takeover: proto.server_no_context_takeover,
            client_no_context_takeover: proto.client_no_context_takeover,
            server_max_window_bits: proto.server_max_window_bits,
            client_max_window_bits: proto.client_max_window_bits,
        }
    }
}

impl Compression {
    /// Compression on, with the defaults.
    ///
    /// ```
    /// assert!(wharf::Compression::on().enabled);
    /// ```
    pub fn on() -> Compression {
        Compression {
            enabled: true,
            ..Compression::default()
        }
    }

    /// What the handshake negotiates with.
    pub(crate) fn negotiation(&self) -> wharf_proto::DeflateConfig {
        let mut config = wharf_proto::DeflateConfig::default();
        config.server_no_context_takeover = self.server_no_context_takeover;
        config.client_no_context_takeover = self.client_no_context_takeover;
        config.server_max_window_bits = self.server_max_window_bits;
        config.client_max_window_bits = self.client_max_window_bits;
        config
    }

    /// The first invalid field and why, for [`Config::validate`](super::Config::validate).
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.level > 9 {
            return Err(("level", format!("must be 0-9, not {}", self.level)));
        }
        let server = self.server_max_window_bits;
        if !(9..=15).contains(&server) {
            return Err((
                "server_max_window_bits",
                format!("must be 9-15, not {server}"),
            ));
        }
        let client = self.client_max_window_bits;
        if !(8..=15).contains(&client) {
            return Err((
                "client_max_window_bits",
                format!("must be 8-15, not {client}"),
            ));
        }
        Ok(())
    }
}
