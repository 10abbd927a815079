//! Per-client-address caps, beside the global `server.max_connections`.
//!
//! Used twice: one address may hold at most `server.max_connections_per_address` connections
//! (the server closes the next one as soon as it is accepted, before any TLS work, like nginx's
//! `limit_conn`), and at most `websocket.max_per_address` relayed WebSockets (the pipeline
//! refuses the next upgrade). An IPv6 client usually owns a whole /64, so a /64 counts as one
//! address; an IPv4-mapped IPv6 peer counts as its IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The address a client is counted under: IPv4 as is, IPv6 reduced to its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Open connections (or sockets) per client address. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PerAddress {
    max: u32,
    // A std mutex: held for one map operation, never across an `.await`.
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// One connection counted against its address; released on drop.
#[derive(Debug)]
pub(crate) struct AddressPermit {
    key: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl PerAddress {
    pub(crate) fn new(max: u32) -> Self {
        PerAddress {
            max,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Counts one more connection from `ip`, or `None` if its address is at the cap.
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Option<AddressPermit> {
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressPermit {
            key,
            open: self.open.clone(),
        })
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(address_key(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_ne!(address_key(ip("10.0.0.1")), address_key(ip("10.0.0.2")));
    }

    #[test]
    fn the_cap_counts_per_address_and_frees_on_drop() {
        let limit = PerAddress::new(2);
        let a1 = limit.try_acquire(ip("2001:db8::1")).unwrap();
        let _a2 = limit.try_acquire(ip("2001:db8::2")).unwrap();
        assert!(limit.try_acquire(ip("2001:db8::3")).is_none(), "same /64");
        let _b = limit.try_acquire(ip("2001:db8:0:1::1")).unwrap();
        drop(a1);
        assert!(limit.try_acquire(ip("2001:db8::3")).is_some());
        drop(_b);
        assert!(!limit
            .open
            .lock()
            .unwrap()
            .contains_key(&ip("2001:db8:0:1::")));
    }
}
