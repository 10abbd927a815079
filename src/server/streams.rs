//! HTTP/2 streams under the send deadline, one by one.
//!
//! hyper runs each HTTP/2 stream as a task of its own, through the executor it was built
//! with (and nothing else, but the tunnel of a `CONNECT` it answered with 2xx, which the
//! gateway never does; such a task never gets a waiting body). [`Streams`] spawns each one
//! wrapped in [`Stream`], which lends the stream's response
//! body ([`super::activity::Tracked`], made while the stream's task is polled) a slot to say
//! since when it waits for hyper to take its next frame. A body waits there when the client
//! grants its stream no flow-control window; `send_timeout` later the stream's task ends,
//! which resets the stream (`RST_STREAM`) and drops the response and its upstream exchange,
//! while the connection's other streams go on. A stall of the connection's socket is the
//! supervisor's, and drops the whole connection.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Where a stream's response body says since when it waits: nanoseconds since `origin`,
/// plus one (zero: not waiting).
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    origin: Instant,
    wait: Arc<AtomicU64>,
}

impl Slot {
    /// The body is ready for its next poll from now on.
    pub(crate) fn waiting(&self) {
        let since = crate::clock::io_now().saturating_duration_since(self.origin);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1);
        self.wait.store(nanos + 1, Ordering::Relaxed);
    }

    /// The body was polled: it does not wait for the client.
    pub(crate) fn taken(&self) {
        self.wait.store(0, Ordering::Relaxed);
    }

    fn waits_since(&self) -> Option<Instant> {
        match self.wait.load(Ordering::Relaxed) {
            0 => None,
            w => Some(self.origin + Duration::from_nanos(w - 1)),
        }
    }
}

thread_local! {
    /// The slot of the stream whose task is being polled on this thread.
    static CURRENT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// The slot of the HTTP/2 stream being polled, if this poll is one's.
pub(crate) fn current() -> Option<Slot> {
    CURRENT.with(|c| c.borrow().clone())
}

/// hyper's executor for HTTP/2 streams: tokio's, with each stream under the send deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Streams {
    pub(crate) send_timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Stream {
            inner: Box::pin(fut),
            slot: Slot {
                origin: crate::clock::io_now(),
                wait: Arc::new(AtomicU64::new(0)),
            },
            limit: self.send_timeout,
            timer: None,
        });
    }
}

/// One stream's task: ends when its response body has waited `limit` for hyper.
struct Stream<F> {
    inner: Pin<Box<F>>,
    slot: Slot,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F: Future<Output = ()>> Future for Stream<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        /// Puts back what the thread had before the stream's poll, also when it panics.
        struct Lent(Option<Slot>);
        impl Drop for Lent {
            fn drop(&mut self) {
                let before = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = before);
            }
        }
        let polled = {
            let before = CURRENT.with(|c| c.borrow_mut().replace(this.slot.clone()));
            let _lent = Lent(before);
            this.inner.as_mut().poll(cx)
        };
        if polled.is_ready() {
            return Poll::Ready(());
        }
        let Some(since) = this.slot.waits_since() else {
            return Poll::Pending;
        };
        let due = since + this.limit;
        if due <= crate::clock::io_now() {
            tracing::debug!("HTTP/2 stream reset: its client took nothing for the send timeout");
            return Poll::Ready(()); // dropping the stream's task resets it
        }
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        // Woken at the deadline to look again (a stream that moved on in the meantime has
        // cleared its wait); a timer already fired is the deadline itself: the stream ends.
        timer.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hyper::rt::Executor;
    use tokio::sync::oneshot;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    /// Runs `stream` as hyper would; returns when its task ended (its future was dropped).
    async fn ended_after<F>(stream: impl FnOnce() -> F) -> Duration
    where
        F: Future<Output = ()> + Send + 'static,
    {
        struct Dropped(Option<oneshot::Sender<()>>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.take().unwrap().send(());
            }
        }
        let (tx, rx) = oneshot::channel();
        let started = crate::clock::io_now();
        let fut = stream();
        Streams {
            send_timeout: LIMIT,
        }
        .execute(async move {
            let _dropped = Dropped(Some(tx));
            fut.await;
        });
        rx.await.unwrap();
        crate::clock::io_now() - started
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_whose_body_waits_the_limit_is_ended() {
        let took = ended_after(|| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            current().expect("a stream's slot").waiting(); // and hyper never takes it
            std::future::pending::<()>().await;
        })
        .await;
        assert_eq!(took, Duration::from_secs(1) + LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_whose_body_is_taken_in_time_goes_on() {
        let took = ended_after(|| async {
            let slot = current().expect("a stream's slot");
            for _ in 0..10 {
                slot.waiting();
                tokio::time::sleep(LIMIT - Duration::from_secs(1)).await;
                slot.taken();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert_eq!(
            took,
            (LIMIT - Duration::from_secs(1) + Duration::from_millis(1)) * 10
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_slot_is_lent_only_for_the_stream_s_polls_even_when_one_panics() {
        let (tx, rx) = oneshot::channel();
        Streams {
            send_timeout: LIMIT,
        }
        .execute(async move {
            let inside = current().is_some();
            tokio::task::yield_now().await; // a second poll
            let _ = tx.send(inside && current().is_some());
            panic!("in the middle of a stream's poll");
        });
        assert!(rx.await.unwrap(), "no slot inside the stream's polls");
        tokio::task::yield_now().await; // the stream's task ends in its panic
        assert!(
            current().is_none(),
            "the slot stayed after the stream's poll"
        );
    }
}
