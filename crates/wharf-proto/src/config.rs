//! [`DecoderConfig`] and [`Role`]: how a [`Decoder`](crate::Decoder) is set up.

/// Which end of the connection the decoder serves: it decides whether
/// incoming frames must be masked.
///
/// ```
/// use wharf_proto::{Decoder, DecoderConfig, Role};
///
/// let server_side = Decoder::new(DecoderConfig::new(Role::Server));
/// let client_side = Decoder::new(DecoderConfig::new(Role::Client));
/// assert_eq!(client_side.config().role, Role::Client);
/// # let _ = server_side;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decodes a client's frames, which must be masked.
    Server,
    /// Decodes a server's frames, which must not be masked.
    Client,
}

/// Limits and options of a [`Decoder`](crate::Decoder).
///
/// ```
/// use wharf_proto::{DecoderConfig, Role};
///
/// let config = DecoderConfig::new(Role::Client).with_max_message_size(1 << 20);
/// assert_eq!(config.max_message_size, 1 << 20);
/// assert_eq!(config.max_frame_size, 16 << 20);
/// assert_eq!(DecoderConfig::default().role, Role::Server);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecoderConfig {
    /// Which side's frames are decoded.
    pub role: Role,
    /// The largest message (all fragments together), default 64 MiB; more is
    /// refused with 1009.
    pub max_message_size: usize,
    /// The largest frame payload, default 16 MiB; more is refused with 1009.
    pub max_frame_size: usize,
    /// The least a fragment of a fragmented message counts for against
    /// [`max_message_size`](Self::max_message_size), default 64 bytes: a
    /// fragment of `n` bytes costs `max(n, fragment_cost)`. Tiny (or empty)
    /// fragments cost per-frame work, not message bytes, so without a floor
    /// a message of millions of empty fragments would never reach the limit.
    /// 64 keeps Autobahn 9.3/9.4 (4 MiB in 65,536 fragments of 64 bytes)
    /// within a 4 MiB limit; `0` counts payload bytes only.
    pub fragment_cost: usize,
}

impl DecoderConfig {
    /// The defaults for `role`.
    ///
    /// ```
    /// let c = wharf_proto::DecoderConfig::new(wharf_proto::Role::Server);
    /// assert_eq!(c.fragment_cost, 64);
    /// ```
    pub const fn new(role: Role) -> Self {
        Self {
            role,
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            fragment_cost: 64,
        }
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    ///
    /// ```
    /// let c = wharf_proto::DecoderConfig::default().with_max_message_size(1024);
    /// assert_eq!(c.max_message_size, 1024);
    /// ```
    pub const fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`max_frame_size`](Self::max_frame_size).
    ///
    /// ```
    /// let c = wharf_proto::DecoderConfig::default().with_max_frame_size(1024);
    /// assert_eq!(c.max_frame_size, 1024);
    /// ```
    pub const fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`fragment_cost`](Self::fragment_cost).
    ///
    /// ```
    /// let c = wharf_proto::DecoderConfig::default().with_fragment_cost(0);
    /// assert_eq!(c.fragment_cost, 0);
    /// ```
    pub const fn with_fragment_cost(mut self, bytes: usize) -> Self {
        self.fragment_cost = bytes;
        self
    }
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self::new(Role::Server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_builders() {
        let c = DecoderConfig::default();
        assert_eq!(c.role, Role::Server);
        assert_eq!((c.max_message_size, c.max_frame_size), (64 << 20, 16 << 20));
        let c = DecoderConfig::new(Role::Client)
            .with_max_message_size(10)
            .with_max_frame_size(5);
        assert_eq!(c.role, Role::Client);
        assert_eq!((c.max_message_size, c.max_frame_size), (10, 5));
    }
}
