//! Concurrent connections per client address (`max_connections_per_ip`).
//!
//! A TCP connection takes its address's slot at accept, before the handshake is read, and
//! holds it until the connection ends: so one address can hold neither more open WebSockets
//! nor more half-open handshakes than the limit. IPv6 addresses are counted per /64, since
//! one host is usually given a whole /64 and could otherwise rotate through it.
//!
//! From a trusted proxy the slot is taken once the client address is known: after the PROXY
//! header, or after the request head when the address comes from a forwarded header.
//! [`PeerCounts::admit`] is the one place that decides whether an address is capped at all.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::config::{Limits, canonical, is_private};

/// A cap refusal is logged at most once per this period per server; the line counts the
/// refusals it stands for.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// A connection's standing under `max_connections_per_ip`.
pub(crate) enum Admission {
    /// Counted; the slot is given back when the connection ends (when this is dropped).
    Counted { _slot: PeerSlot },
    /// Not capped: the cap is off, or the address is a trusted proxy's own, or a private one.
    Exempt,
    /// Over the cap: answered 429.
    Refused,
}

impl Admission {
    pub(crate) fn is_refused(&self) -> bool {
        matches!(self, Admission::Refused)
    }
}

/// The counts of the addresses that have connections; an address leaves the map with its
/// last connection, so the map never holds more entries than there are connections.
#[derive(Default)]
pub(crate) struct PeerCounts {
    // A std Mutex: held for one hash-map update, never across an await.
    counts: Mutex<HashMap<IpAddr, usize>>,
    /// When a refusal was last logged, and the refusals since (std Mutex: never held
    /// across an await).
    refusals: Mutex<(Option<Instant>, u64)>,
}

/// One connection's place in its address's count, given back on drop.
pub(crate) struct PeerSlot {
    counts: Arc<PeerCounts>,
    key: IpAddr,
}

/// The per-address cap that applies to `ip`, or `None` when it is exempt: the cap is off,
/// the connection is a trusted proxy's own, or the address is private and private
/// addresses are not capped.
fn cap(ip: IpAddr, limits: &Limits, trusted_proxy: bool) -> Option<usize> {
    let max = limits.max_connections_per_ip;
    let exempt = max == 0 || trusted_proxy || (!limits.cap_private_addresses && is_private(ip));
    (!exempt).then_some(max)
}

impl PeerCounts {
    /// Decides whether a connection from `client` may proceed, and counts it if it is
    /// capped. `trusted_proxy`: `client` is a trusted proxy's own address (a connection it
    /// made for itself, or with no client address given). A refusal is logged (rate-limited)
    /// naming the address and the setting.
    pub(crate) fn admit(
        self: &Arc<Self>,
        server: &str,
        client: SocketAddr,
        limits: &Limits,
        trusted_proxy: bool,
    ) -> Admission {
        let ip = canonical(client.ip());
        let Some(max) = cap(ip, limits, trusted_proxy) else {
            return Admission::Exempt;
        };
        match self.acquire(ip, max) {
            Some(slot) => Admission::Counted { _slot: slot },
            None => {
                self.log_refusal(server, ip, max);
                Admission::Refused
            }
        }
    }

    /// Counts a connection a predecessor handed over under its client address, as
    /// [`admit`](Self::admit) would have (the same exemptions), but never refuses it: it
    /// was admitted there, and closing it now would defeat the handover.
    pub(crate) fn admit_moved(
        self: &Arc<Self>,
        client: SocketAddr,
        limits: &Limits,
        trusted_proxy: bool,
    ) -> Admission {
        let ip = canonical(client.ip());
        if cap(ip, limits, trusted_proxy).is_none() {
            return Admission::Exempt;
        }
        match self.acquire(ip, 0) {
            Some(slot) => Admission::Counted { _slot: slot },
            None => Admission::Exempt,
        }
    }

    fn log_refusal(&self, server: &str, ip: IpAddr, max: usize) {
        let now = Instant::now();
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        refusals.1 += 1;
        if refusals
            .0
            .is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        let refused = std::mem::take(&mut refusals.1);
        refusals.0 = Some(now);
        drop(refusals);
        warn!(
            server,
            client = %ip,
            max,
            refused_since_last_line = refused,
            "refused a connection: this client address holds limits.max_connections_per_ip \
             connections (429). If it is a proxy or load balancer, list it in trusted_proxies \
             so the cap counts the clients behind it; else raise the cap (0 turns it off)"
        );
    }

    /// Takes a slot for `ip`, or `None` when it already holds `max` (`0`: no limit).
    fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let key = key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_insert(0);
        if max != 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            counts: self.clone(),
            key,
        })
    }

    /// Connections counted for `ip` (for tests).
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The key an address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64 prefix.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_releases_on_drop() {
        let counts = Arc::new(PeerCounts::default());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = counts.acquire(a, 2);
        let second = counts.acquire(a, 2);
        assert!(first.is_some() && second.is_some());
        assert!(counts.acquire(a, 2).is_none(), "third from a");
        assert!(counts.acquire(b, 2).is_some(), "b has its own count");
        drop(first);
        assert_eq!(counts.count(a), 1);
        assert!(counts.acquire(a, 2).is_some());
        drop(second);
        assert!(
            counts.counts.lock().expect("lock").is_empty(),
            "map emptied"
        );
        assert!(counts.acquire(a, 0).is_some(), "0 is no limit");
    }

    #[test]
    fn moved_connections_are_counted_over_the_cap_and_hold_new_ones_back() {
        let counts = Arc::new(PeerCounts::default());
        let public: SocketAddr = "203.0.113.9:1".parse().expect("addr");
        let limits = Limits {
            max_connections_per_ip: 1,
            ..Limits::default()
        };
        let moved = [(); 2].map(|()| counts.admit_moved(public, &limits, false));
        assert!(moved.iter().all(|m| matches!(m, Admission::Counted { .. })));
        assert_eq!(
            counts.count(public.ip()),
            2,
            "over the cap: they were admitted"
        );
        assert!(counts.admit("ws", public, &limits, false).is_refused());
        drop(moved);
        assert!(!counts.admit("ws", public, &limits, false).is_refused());
        assert!(matches!(
            counts.admit_moved(public, &limits, true),
            Admission::Exempt
        ));
    }

    #[test]
    fn admit_exempts_trusted_private_and_off() {
        let counts = Arc::new(PeerCounts::default());
        let public: SocketAddr = "203.0.113.9:1".parse().expect("addr");
        let private: SocketAddr = "10.0.0.1:1".parse().expect("addr");
        let mut limits = Limits {
            max_connections_per_ip: 1,
            ..Limits::default()
        };
        let first = counts.admit("ws", public, &limits, false);
        assert!(matches!(first, Admission::Counted { .. }));
        assert!(counts.admit("ws", public, &limits, false).is_refused());
        assert!(
            counts.admit("ws", public, &limits, false).is_refused(),
            "logged once"
        );
        assert!(matches!(
            counts.admit("ws", public, &limits, true),
            Admission::Exempt
        ));
        let _held = [(); 3].map(|()| counts.admit("ws", private, &limits, false));
        assert!(matches!(
            counts.admit("ws", private, &limits, false),
            Admission::Exempt
        ));
        limits.cap_private_addresses = true;
        assert!(matches!(
            counts.admit("ws", private, &limits, false),
            Admission::Counted { .. }
        ));
        limits.max_connections_per_ip = 0;
        assert!(matches!(
            counts.admit("ws", public, &limits, false),
            Admission::Exempt
        ));
        assert_eq!(
            counts.refusals.lock().expect("lock").1,
            1,
            "one refusal since the line"
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let next: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(key(one), key(other));
        assert_ne!(key(one), key(next));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(key(mapped), "10.0.0.1".parse::<IpAddr>().expect("ip"));
    }
}
