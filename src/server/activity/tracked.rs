//! Response bodies hyper sends: in flight until finished or dropped, and waiting for the
//! client while a frame they handed out (or the response itself) has not been followed by
//! hyper's next poll.
//!
//! hyper polls a body for its next frame only once the previous one has room to go: room in
//! its HTTP/1.1 write buffer (a blocked socket), or flow-control window on an HTTP/2 stream,
//! which the client grants. A body ready for its next poll that hyper does not poll is
//! therefore waiting for the client; a body that was polled and is pending waits for
//! upstream, which is not the client's doing.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::{InFlight, Load};
use crate::body::{Body, BoxError};

/// The bodies of one connection's responses that wait for hyper: each one's wait began at
/// its value, as nanoseconds since the connection opened plus one (zero: not waiting).
#[derive(Debug, Default)]
pub(super) struct Handed(Mutex<Vec<Arc<AtomicU64>>>);

impl Handed {
    fn register(&self, since: u64) -> Arc<AtomicU64> {
        let wait = Arc::new(AtomicU64::new(since));
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(wait.clone());
        wait
    }

    fn unregister(&self, wait: &Arc<AtomicU64>) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = all.iter().position(|w| Arc::ptr_eq(w, wait)) {
            all.swap_remove(i);
        }
    }

    /// The earliest wait that began (zero: none waits).
    pub(super) fn earliest(&self) -> u64 {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter()
            .map(|w| w.load(Ordering::Relaxed))
            .filter(|&w| w != 0)
            .min()
            .unwrap_or(0)
    }
}

/// A response body that keeps its request in flight until it is finished or dropped, and
/// tells since when it waits for hyper to take its next frame: to its HTTP/2 stream, which
/// resets itself after `send_timeout` ([`crate::server::streams`]), or else (HTTP/1.1) to the
/// connection's supervisor, which drops the connection.
#[derive(Debug)]
pub(crate) struct Tracked<B = Body> {
    body: B,
    wait: Wait,
    in_flight: InFlight,
}

#[derive(Debug)]
enum Wait {
    /// Registered with the connection's [`Handed`] for the body's life.
    Connection(Arc<AtomicU64>),
    Stream(crate::server::streams::Slot),
}

impl<B> Tracked<B> {
    /// `body` of a response about to be handed to hyper, which waits for its first poll.
    pub(crate) fn new(body: B, in_flight: InFlight) -> Self {
        let wait = match crate::server::streams::current() {
            Some(slot) => {
                slot.waiting();
                Wait::Stream(slot)
            }
            None => {
                let load: &Load = &in_flight.0;
                Wait::Connection(load.handed.register(waiting_since(load)))
            }
        };
        Tracked {
            body,
            wait,
            in_flight,
        }
    }
}

fn waiting_since(load: &Load) -> u64 {
    load.since_opened().saturating_add(1)
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        match &self.wait {
            Wait::Connection(wait) => self.in_flight.0.handed.unregister(wait),
            Wait::Stream(slot) => slot.taken(),
        }
    }
}

impl<B> http_body::Body for Tracked<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        // Polled: hyper took what came before. A frame now handed out waits for the next poll;
        // a pending body waits for upstream, and an ended one for nothing.
        let handed = matches!(&polled, Poll::Ready(Some(Ok(_))));
        match &this.wait {
            Wait::Connection(wait) => {
                let since = if handed {
                    waiting_since(&this.in_flight.0)
                } else {
                    0
                };
                wait.store(since, Ordering::Relaxed);
            }
            Wait::Stream(slot) if handed => slot.waiting(),
            Wait::Stream(slot) => slot.taken(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
