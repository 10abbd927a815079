//! What a relayed WebSocket holds while it is open, so that sockets count against the limits.
//!
//! * **Its connection's slot.** A client connection holds one of `server.max_connections`
//!   permits and one of its address's `server.max_connections_per_address`. After the 101,
//!   hyper hands the upgraded stream over and the HTTP connection task ends; without more, the
//!   socket would live on outside every budget. [`ConnSlot`] lets the socket take over the
//!   permits of the connection it was upgraded on, and hold them until it closes.
//! * **The socket caps.** [`Sockets`] counts open sockets per client address (an IPv6 /64 is
//!   one address, as for connections) and public sockets together. Over a cap, the upgrade is
//!   refused with a problem document before upstream is contacted.
//!
//! The caps are bound once, like the listeners: a configuration reload does not change them.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::WebSocketSettings;
use crate::per_address::{AddressPermit, PerAddress};
use crate::proxy::websocket::SocketError;

/// A connection's place in `server.max_connections` and in its address's count, held by the
/// connection task until a WebSocket upgraded on it takes it over. Cheap to clone.
#[derive(Clone, Default)]
pub struct ConnSlot {
    // A std mutex: held for one `Option::take`, never across an `.await`.
    held: Arc<Mutex<Option<Held>>>,
}

/// The permits of one connection; released on drop.
pub(crate) struct Held {
    _connection: OwnedSemaphorePermit,
    _address: AddressPermit,
}

impl ConnSlot {
    /// The slot of a connection that holds `connection` and `address`.
    pub(crate) fn new(connection: OwnedSemaphorePermit, address: AddressPermit) -> Self {
        ConnSlot {
            held: Arc::new(Mutex::new(Some(Held {
                _connection: connection,
                _address: address,
            }))),
        }
    }

    /// Takes the permits over (the socket that keeps them releases them when it closes).
    /// `None` when there are none (already taken, or a connection served without them).
    pub(crate) fn take(&self) -> Option<Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.held.lock().map(|h| h.is_some()).unwrap_or_default();
        f.debug_struct("ConnSlot").field("held", &held).finish()
    }
}

/// The socket limits and the counts behind the caps. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sockets {
    pub settings: WebSocketSettings,
    per_address: PerAddress,
    public: Arc<Semaphore>,
}

/// One open socket counted against its address (and the public cap); released on drop.
#[derive(Debug)]
pub(crate) struct SocketPermit {
    _address: AddressPermit,
    _public: Option<OwnedSemaphorePermit>,
}

impl Sockets {
    pub fn new(settings: &WebSocketSettings) -> Sockets {
        Sockets {
            settings: *settings,
            per_address: PerAddress::new(settings.max_per_address),
            public: Arc::new(Semaphore::new(settings.max_public as usize)),
        }
    }

    /// Counts one more socket from `ip` (a public one also against the public cap), or says
    /// which cap it is over.
    pub(crate) fn admit(&self, ip: IpAddr, public: bool) -> Result<SocketPermit, SocketError> {
        let address = self
            .per_address
            .try_acquire(ip)
            .ok_or(SocketError::TooManyFromAddress)?;
        let public = match public {
            true => Some(
                self.public
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| SocketError::PublicFull)?,
            ),
            false => None,
        };
        Ok(SocketPermit {
            _address: address,
            _public: public,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn settings(per_address: u32, public: u32) -> WebSocketSettings {
        WebSocketSettings {
            max_message_bytes: 64 << 10,
            max_first_frame_bytes: 4 << 10,
            auth_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            send_timeout: Duration::from_secs(60),
            max_per_address: per_address,
            max_public: public,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_address_cap_counts_a_slash_64_as_one_and_frees_on_drop() {
        let sockets = Sockets::new(&settings(2, 10));
        let a = sockets.admit(ip("2001:db8::1"), false).unwrap();
        let _b = sockets.admit(ip("2001:db8::2"), true).unwrap();
        assert!(matches!(
            sockets.admit(ip("2001:db8::3"), false),
            Err(SocketError::TooManyFromAddress)
        ));
        sockets.admit(ip("2001:db8:0:1::1"), false).unwrap();
        drop(a);
        sockets.admit(ip("2001:db8::3"), false).unwrap();
    }

    #[test]
    fn the_public_cap_counts_every_address_and_only_public_sockets() {
        let sockets = Sockets::new(&settings(10, 1));
        let p = sockets.admit(ip("10.0.0.1"), true).unwrap();
        assert!(matches!(
            sockets.admit(ip("10.0.0.2"), true),
            Err(SocketError::PublicFull)
        ));
        let _private = sockets.admit(ip("10.0.0.2"), false).unwrap();
        drop(p);
        sockets.admit(ip("10.0.0.2"), true).unwrap();
    }

    #[test]
    fn a_slot_is_taken_once() {
        let conns = Arc::new(Semaphore::new(1));
        let addresses = PerAddress::new(1);
        let slot = ConnSlot::new(
            conns.clone().try_acquire_owned().unwrap(),
            addresses.try_acquire(ip("10.0.0.1")).unwrap(),
        );
        let held = slot.clone().take().unwrap();
        assert!(slot.take().is_none());
        assert_eq!(conns.available_permits(), 0);
        drop(held);
        assert_eq!(conns.available_permits(), 1);
        assert!(addresses.try_acquire(ip("10.0.0.1")).is_some());
    }
}
