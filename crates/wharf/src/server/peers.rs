//! Concurrent connections per client address (`max_connections_per_ip`).
//!
//! A TCP connection takes its address's slot at accept, before the handshake is read, and
//! holds it until the connection ends: so one address can hold neither more open WebSockets
//! nor more half-open handshakes than the limit. IPv6 addresses are counted per /64, since
//! one host is usually given a whole /64 and could otherwise rotate through it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The counts of the addresses that have connections; an address leaves the map with its
/// last connection, so the map never holds more entries than there are connections.
#[derive(Default)]
pub(crate) struct PeerCounts {
    // A std Mutex: held for one hash-map update, never across an await.
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count, given back on drop.
pub(crate) struct PeerSlot {
    counts: Arc<PeerCounts>,
    key: IpAddr,
}

impl PeerCounts {
    /// Takes a slot for `ip`, or `None` when it already holds `max` (`0`: no limit).
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
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
