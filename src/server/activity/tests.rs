//! The supervisor: deadlines, the grace after asking to close, and the stop signal.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body::Frame;

use super::*;

mod busy;
mod reset;

const DEADLINES: Deadlines = Deadlines {
    head: Duration::from_secs(5),
    idle: Duration::from_secs(60),
    send: Duration::from_secs(20),
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
    assert!(took >= DEADLINES.head && took <= DEADLINES.head + CLOSE_GRACE);
}

/// Runs `script` beside a supervised silent connection; returns why and when it closed.
async fn closes<F>(deadlines: Deadlines, script: impl FnOnce(Activity) -> F) -> (Closed, Duration)
where
    F: Future<Output = ()> + Send + 'static,
{
    let activity = Activity::new();
    let (_tx, stop) = watch::channel(false);
    let task = tokio::spawn(script(activity.clone()));
    let started = crate::clock::io_now();
    let (why, _) = supervise(silent(), |_| {}, &activity, deadlines, stop).await;
    let took = started.elapsed();
    task.abort();
    (why, took)
}

/// One request as a connection reports it: its head begins, completes, is answered.
fn answer(a: &Activity) {
    a.heads_begun(1);
    drop(a.begin());
}

/// At `expected`, give or take the timer's millisecond.
fn within(took: Duration, expected: Duration) -> bool {
    took >= expected && took <= expected + Duration::from_millis(2)
}

fn within_grace(took: Duration, expected: Duration) -> bool {
    took >= expected && took <= expected + CLOSE_GRACE
}

#[tokio::test(start_paused = true)]
async fn idle_counts_from_the_end_of_the_last_response_and_never_cuts_one_in_flight() {
    let (why, took) = closes(DEADLINES, |a| async move {
        a.heads_begun(1);
        let guard = a.begin();
        tokio::time::sleep(Duration::from_secs(600)).await; // a long response
        drop(guard);
    })
    .await;
    assert_eq!(why, Closed::Idle);
    let expected = Duration::from_secs(600) + DEADLINES.idle;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_deadline_shorter_than_the_first_request_one_holds_from_the_first_request() {
    let deadlines = Deadlines {
        head: Duration::from_secs(30),
        idle: Duration::from_secs(5),
        send: Duration::from_secs(60),
    };
    let (why, took) = closes(deadlines, |a| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer(&a); // one quick request
    })
    .await;
    assert_eq!(why, Closed::Idle);
    let expected = Duration::from_millis(100) + deadlines.idle;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_waiting_for_its_next_head_lasts_the_idle_deadline() {
    let (why, took) = closes(DEADLINES, |a| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer(&a);
    })
    .await;
    assert_eq!(why, Closed::Idle);
    let expected = Duration::from_millis(100) + DEADLINES.idle;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_head_begun_on_a_kept_alive_connection_is_cut_at_the_head_deadline() {
    let (why, took) = closes(DEADLINES, |a| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer(&a);
        tokio::time::sleep(Duration::from_secs(20)).await;
        a.heads_begun(1); // and the rest of it never comes
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(why, Closed::SlowHead);
    let expected = Duration::from_millis(20_100) + DEADLINES.head;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_complete_head_stops_the_head_deadline() {
    let (why, took) = closes(DEADLINES, |a| async move {
        answer(&a);
        tokio::time::sleep(Duration::from_secs(20)).await;
        a.heads_begun(1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(a.begin()); // complete and answered
    })
    .await;
    assert_eq!(why, Closed::Idle);
    let expected = Duration::from_secs(22) + DEADLINES.idle;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_head_is_timed_from_the_response_before_it() {
    let (why, took) = closes(DEADLINES, |a| async move {
        a.heads_begun(1);
        let first = a.begin();
        a.heads_begun(1); // pipelined behind a long response, then stalled
        tokio::time::sleep(Duration::from_secs(600)).await;
        drop(first);
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(why, Closed::SlowHead);
    let expected = Duration::from_secs(600) + DEADLINES.head;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
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

/// A connection that does nothing until asked to close, then ends; `greedy` spends tokio's
/// whole budget in its first poll (as a burst of reads and writes would), the poll in which
/// the supervisor registers for the stop signal.
fn obliging(asked: Arc<AtomicBool>, greedy: bool) -> impl Future<Output = Result<(), ()>> {
    let mut first = greedy;
    std::future::poll_fn(move |cx| {
        if std::mem::take(&mut first) {
            while let Poll::Ready(unit) = tokio::task::coop::poll_proceed(cx) {
                unit.made_progress();
            }
        }
        if asked.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
}

/// Supervises a connection with a request in flight (so no deadline closes it) while
/// `script` runs with the stop signal's sender; returns why and when it closed, and whether
/// the connection was asked to close. A stop that is not heard fails the test at 60 s
/// instead of hanging it.
async fn stopped_by<F>(
    greedy: bool,
    script: impl FnOnce(watch::Sender<bool>) -> F,
) -> (Closed, Duration)
where
    F: Future<Output = ()> + Send + 'static,
{
    let activity = Activity::new();
    let (tx, stop) = watch::channel(false);
    let _guard = activity.begin();
    let asked = Arc::new(AtomicBool::new(false));
    let conn = obliging(asked.clone(), greedy);
    let task = tokio::spawn(script(tx));
    let started = crate::clock::io_now();
    let ask = |_: Pin<&mut _>| asked.store(true, Ordering::SeqCst);
    let supervised = supervise(conn, ask, &activity, DEADLINES, stop);
    let (why, _) = tokio::time::timeout(Duration::from_secs(60), supervised)
        .await
        .expect("the stop signal was not heard");
    let took = started.elapsed();
    task.abort();
    assert!(
        asked.load(Ordering::SeqCst),
        "the connection was not asked to close"
    );
    (why, took)
}

/// A stop sent 7 s in is heard then; `keep_sender` holds the sender past the send (so a
/// dropped sender cannot be what ends the wait), else drops it right after.
async fn heard_at_seven(greedy: bool, keep_sender: bool) {
    let (why, took) = stopped_by(greedy, move |tx| async move {
        tokio::time::sleep(Duration::from_secs(7)).await;
        tx.send(true).unwrap();
        if keep_sender {
            std::future::pending::<()>().await;
        }
    })
    .await;
    assert_eq!(why, Closed::Shutdown);
    assert!(within(took, Duration::from_secs(7)), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stop_given_while_the_supervisor_waits_is_heard_at_once() {
    heard_at_seven(false, true).await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_is_heard_when_the_connection_spent_the_task_budget_first() {
    heard_at_seven(true, true).await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_whose_sender_is_dropped_at_once_is_heard() {
    heard_at_seven(false, false).await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_accepted_after_the_stop_stops_at_once() {
    let activity = Activity::new();
    let (tx, _first) = watch::channel(false);
    tx.send(true).unwrap();
    // Subscribed after the stop: this receiver has seen the stop's version already, so only
    // the value can tell it.
    let stop = tx.subscribe();
    let _guard = activity.begin();
    let asked = Arc::new(AtomicBool::new(false));
    let conn = obliging(asked.clone(), false);
    let ask = |_: Pin<&mut _>| asked.store(true, Ordering::SeqCst);
    let started = crate::clock::io_now();
    let supervised = supervise(conn, ask, &activity, DEADLINES, stop);
    let (why, _) = tokio::time::timeout(Duration::from_secs(60), supervised)
        .await
        .expect("the stop signal was not heard");
    assert_eq!(why, Closed::Shutdown);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_stop_signal_whose_sender_is_gone_never_stops_the_connection() {
    let activity = Activity::new();
    let (tx, stop) = watch::channel(false);
    drop(tx);
    let started = crate::clock::io_now();
    let (why, _) = supervise(silent(), |_| {}, &activity, DEADLINES, stop).await;
    // Not a shutdown: the first-request deadline closed it (the silent connection is then
    // dropped after the grace).
    assert_eq!(why, Closed::NoRequest);
    let took = started.elapsed();
    assert!(within_grace(took, DEADLINES.head), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_response_its_client_stops_reading_is_dropped_at_the_send_deadline() {
    let (why, took) = closes(DEADLINES, |a| async move {
        a.heads_begun(1);
        let _in_flight = a.begin();
        tokio::time::sleep(Duration::from_secs(3)).await;
        a.write_waited(); // and the client never reads again
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(why, Closed::SlowReader);
    // Dropped at the deadline: a graceful close would wait for the request in flight forever.
    let expected = Duration::from_secs(3) + DEADLINES.send;
    assert!(within(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn writes_that_wait_less_than_the_send_deadline_keep_a_long_response() {
    let (why, took) = closes(DEADLINES, |a| async move {
        a.heads_begun(1);
        let in_flight = a.begin();
        for _ in 0..10 {
            a.write_waited();
            tokio::time::sleep(DEADLINES.send - Duration::from_secs(1)).await;
            a.write_moved();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        drop(in_flight);
    })
    .await;
    assert_eq!(why, Closed::Idle);
    let expected = DEADLINES.send * 10 + DEADLINES.idle;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_write_still_waiting_after_the_response_ended_is_left_to_the_idle_deadline() {
    let (why, took) = closes(DEADLINES, |a| async move {
        a.heads_begun(1);
        let in_flight = a.begin();
        a.write_waited();
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(in_flight); // its last bytes are still waiting for the client
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(why, Closed::Idle);
    let expected = Duration::from_secs(1) + DEADLINES.idle;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_send_deadline_shorter_than_the_others_is_kept_to() {
    let deadlines = Deadlines {
        head: Duration::from_secs(30),
        idle: Duration::from_secs(60),
        send: Duration::from_secs(5),
    };
    let (why, took) = closes(deadlines, |a| async move {
        a.heads_begun(1);
        let _in_flight = a.begin();
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.write_waited();
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(why, Closed::SlowReader);
    let expected = Duration::from_secs(1) + deadlines.send;
    assert!(within(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_begun_during_the_close_grace_is_held_to_the_send_deadline() {
    let deadlines = Deadlines {
        head: Duration::from_secs(5),
        idle: Duration::from_secs(10),
        send: Duration::from_secs(3),
    };
    let (why, took) = closes(deadlines, |a| async move {
        answer(&a); // idle from here: asked to close at 10 s, which this connection ignores
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        a.heads_begun(1);
        let _in_flight = a.begin(); // taken during the grace
        a.write_waited(); // and its client reads nothing
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(why, Closed::SlowReader);
    let expected = Duration::from_millis(13_500);
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

/// A response body as hyper would be handed it.
fn tracked<B>(a: &Activity, body: B) -> Tracked<B> {
    a.heads_begun(1);
    Tracked::new(body, a.begin())
}

/// A streamed body whose frames the test sends.
type Frames = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, crate::body::BoxError>>;

fn streamed() -> (
    Frames,
    impl http_body::Body<Data = Bytes, Error = crate::body::BoxError> + Unpin,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    (tx, http_body_util::StreamBody::new(Box::pin(frames)))
}

#[tokio::test(start_paused = true)]
async fn a_body_whose_first_frame_is_never_taken_is_dropped_at_the_send_deadline() {
    let (why, took) = closes(DEADLINES, |a| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Handed to hyper, which never polls it: an HTTP/2 stream the client grants no window.
        let _body = tracked(&a, crate::body::Body::full("never sent"));
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(why, Closed::SlowReader);
    let expected = Duration::from_secs(2) + DEADLINES.send;
    assert!(within(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_body_taken_frame_by_frame_within_the_deadline_is_kept() {
    use http_body_util::BodyExt;
    let (why, took) = closes(DEADLINES, |a| async move {
        let (tx, rx) = streamed();
        let mut body = tracked(&a, rx);
        for _ in 0..10 {
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            assert!(body.frame().await.is_some()); // handed out...
            tokio::time::sleep(DEADLINES.send - Duration::from_secs(1)).await; // ...taken late
        }
        drop(tx);
        assert!(body.frame().await.is_none());
        drop(body);
    })
    .await;
    assert_eq!(why, Closed::Idle);
    let expected = (DEADLINES.send - Duration::from_secs(1)) * 10 + DEADLINES.idle;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_body_waiting_for_upstream_is_not_waiting_for_the_client() {
    use http_body_util::BodyExt;
    let (why, took) = closes(DEADLINES, |a| async move {
        let (tx, rx) = streamed();
        let mut body = tracked(&a, rx);
        // Polled and pending: upstream is slow, for far longer than the send deadline.
        let next = tokio::time::timeout(DEADLINES.send * 5, body.frame()).await;
        assert!(next.is_err());
        drop(tx);
        drop(body);
    })
    .await;
    assert_eq!(why, Closed::Idle);
    let expected = DEADLINES.send * 5 + DEADLINES.idle;
    assert!(within_grace(took, expected), "{took:?}, not {expected:?}");
}
