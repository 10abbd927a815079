//! A connection's life under deadlines: nothing can hold a slot for free.
//!
//! hyper bounds the HTTP/1.1 head (`header_read_timeout`, restarted while a kept-alive
//! connection waits for its next request) and HTTP/2 liveness (PING). It bounds neither the
//! time before the first request (hyper-util's protocol detection, a partial HTTP/2 preface,
//! HTTP/2 with no stream) nor an idle HTTP/2 connection. [`supervise`] adds both, from what the
//! connection's service reports through [`Activity`]: a request is in flight from the moment
//! its head is complete until its response body is finished or dropped. The service only
//! updates counters; the supervisor reads them when its single timer fires.
//!
//! * no request yet: closed `header_read_timeout` after the handshake;
//! * no request in flight: closed after `idle_timeout`;
//! * server shutdown: asked to finish what is in flight (the drain bound is the caller's).
//!
//! Closing is hyper's graceful shutdown (HTTP/2 GOAWAY, HTTP/1.1 close after the response),
//! then, since a client can ignore that too, the connection is dropped [`CLOSE_GRACE`] later
//! unless a request is in flight by then.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{Body, BoxError};

/// How long a connection asked to close gets before it is dropped, when nothing is in flight.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Counters the requests of one connection update and its supervisor reads when its one
/// timer fires: a request costs two counter updates and a clock read, no wake-up and no timer.
#[derive(Debug)]
struct Load {
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// When the last request ended, as nanoseconds since `opened`.
    last_end: AtomicU64,
    opened: Instant,
}

/// What one connection's service is doing, read by its supervisor. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    load: Arc<Load>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            load: Arc::new(Load {
                in_flight: AtomicUsize::new(0),
                started: AtomicU64::new(0),
                last_end: AtomicU64::new(0),
                opened: crate::clock::io_now(),
            }),
        }
    }

    /// A request's head is complete: it is in flight until the returned guard drops.
    pub(crate) fn begin(&self) -> InFlight {
        self.load.started.fetch_add(1, Ordering::Relaxed);
        self.load.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.load.clone())
    }

    fn idle(&self) -> bool {
        self.load.in_flight.load(Ordering::Acquire) == 0
    }

    /// The deadline that applies now and why it closes, or `None` while a request is in flight.
    fn deadline(&self, deadlines: Deadlines) -> Option<(Instant, Closed)> {
        let load = &self.load;
        if load.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if load.started.load(Ordering::Relaxed) == 0 {
            return Some((load.opened + deadlines.first_request, Closed::NoRequest));
        }
        let ended = Duration::from_nanos(load.last_end.load(Ordering::Relaxed));
        Some((load.opened + ended + deadlines.idle, Closed::Idle))
    }
}

/// One request in flight; dropped with its response body.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Load>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let since_open = crate::clock::io_now().saturating_duration_since(self.0.opened);
        let nanos = u64::try_from(since_open.as_nanos()).unwrap_or(u64::MAX);
        self.0.last_end.fetch_max(nanos, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
#[derive(Debug)]
pub(crate) struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub(crate) fn new(body: Body, in_flight: InFlight) -> Self {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The deadlines [`supervise`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub first_request: Duration,
    pub idle: Duration,
}

/// Why a connection was asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    Finished,
    NoRequest,
    Idle,
    Shutdown,
}

/// Drives `conn` to its end under the deadlines; `graceful` asks it to close.
pub(crate) async fn supervise<C, E>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    activity: &Activity,
    deadlines: Deadlines,
    mut stop: watch::Receiver<bool>,
) -> (Closed, Option<E>)
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    // One timer for the connection's life. Requests do not re-arm it: when it fires, the
    // deadline is worked out from the counters and the timer moved to it if it lies ahead
    // (while a request is in flight, it looks again a deadline later).
    let recheck = deadlines.first_request.min(deadlines.idle);
    // First at the earlier of the two deadlines: a quick first request must not stretch a
    // shorter idle deadline to the first-request one.
    let timer = tokio::time::sleep_until(activity.load.opened + recheck);
    let mut timer = std::pin::pin!(timer);
    let why = loop {
        tokio::select! {
            r = conn.as_mut() => return (Closed::Finished, r.err()),
            () = timer.as_mut() => {
                let now = crate::clock::io_now();
                match activity.deadline(deadlines) {
                    Some((due, why)) if due <= now => break why,
                    Some((due, _)) => timer.as_mut().reset(due),
                    None => timer.as_mut().reset(now + recheck),
                }
            }
            _ = stopped(&mut stop) => break Closed::Shutdown,
        }
    };
    graceful(conn.as_mut());
    if why == Closed::Shutdown {
        return (why, conn.await.err());
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => return (why, r.err()),
            _ = tokio::time::sleep(CLOSE_GRACE) => {
                if activity.idle() {
                    return (why, None);
                }
            }
        }
    }
}

/// Resolves once the server is stopping (never, if the signal is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const DEADLINES: Deadlines = Deadlines {
        first_request: Duration::from_secs(5),
        idle: Duration::from_secs(60),
    };

    /// A connection that never ends by itself.
    fn silent() -> impl Future<Output = Result<(), ()>> {
        std::future::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_closes_after_the_first_request_deadline() {
        let activity = Activity::new();
        let (_tx, stop) = watch::channel(false);
        let asked = AtomicBool::new(false);
        let started = crate::clock::io_now();
        let (why, _) = supervise(
            silent(),
            |_| asked.store(true, Ordering::SeqCst),
            &activity,
            DEADLINES,
            stop,
        )
        .await;
        assert_eq!(why, Closed::NoRequest);
        assert!(asked.load(Ordering::SeqCst));
        let took = started.elapsed();
        assert!(took >= DEADLINES.first_request && took <= DEADLINES.first_request + CLOSE_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_response_and_never_cuts_one_in_flight() {
        let activity = Activity::new();
        let (_tx, stop) = watch::channel(false);
        let a = activity.clone();
        let script = tokio::spawn(async move {
            let guard = a.begin();
            tokio::time::sleep(Duration::from_secs(600)).await; // a long response
            drop(guard);
        });
        let started = crate::clock::io_now();
        let (why, _) = supervise(silent(), |_| {}, &activity, DEADLINES, stop).await;
        assert_eq!(why, Closed::Idle);
        let took = started.elapsed();
        let expected = Duration::from_secs(600) + DEADLINES.idle;
        assert!(
            took >= expected && took <= expected + CLOSE_GRACE,
            "{took:?}"
        );
        script.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_deadline_shorter_than_the_first_request_one_holds_from_the_first_request() {
        let deadlines = Deadlines {
            first_request: Duration::from_secs(30),
            idle: Duration::from_secs(5),
        };
        let activity = Activity::new();
        let (_tx, stop) = watch::channel(false);
        let a = activity.clone();
        let script = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(a.begin()); // one quick request
        });
        let started = crate::clock::io_now();
        let (why, _) = supervise(silent(), |_| {}, &activity, deadlines, stop).await;
        assert_eq!(why, Closed::Idle);
        let took = started.elapsed();
        let expected = Duration::from_millis(100) + deadlines.idle;
        assert!(
            took >= expected && took <= expected + CLOSE_GRACE,
            "{took:?}"
        );
        script.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_the_connection_to_finish() {
        let activity = Activity::new();
        let (tx, stop) = watch::channel(false);
        let _guard = activity.begin();
        let asked = AtomicBool::new(false);
        let conn = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<(), ()>(())
        };
        tx.send(true).unwrap();
        let (why, err) = supervise(
            conn,
            |_| asked.store(true, Ordering::SeqCst),
            &activity,
            DEADLINES,
            stop,
        )
        .await;
        assert_eq!((why, err), (Closed::Shutdown, None));
        assert!(asked.load(Ordering::SeqCst));
    }
}
