//! The supervisor's timer, polled when set and once fired, under connections that wake their
//! task all the time or run on a multi-thread runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;

use super::super::{supervise, Activity, Closed, Deadlines};
use super::{answer, within};

/// A connection that wakes its task every millisecond for `restless` and then waits quietly,
/// never finishing. When `greedy`, it spends the task's budget in its first poll, so the
/// supervisor's first look at its timer comes with no budget left. (Spending it on every
/// poll would keep the task always runnable, and the paused clock would never move.)
fn restless(restless: Duration, greedy: bool) -> impl Future<Output = Result<(), ()>> {
    let quiet = crate::clock::io_now() + restless;
    let mut tick = Box::pin(tokio::time::sleep(Duration::from_millis(1)));
    let mut first = greedy;
    std::future::poll_fn(move |cx| {
        while tick.deadline() < quiet
            && std::pin::pin!(tokio::task::coop::unconstrained(tick.as_mut()))
                .poll(cx)
                .is_ready()
        {
            let next = tick.deadline() + Duration::from_millis(1);
            tick.as_mut().reset(next);
        }
        if std::mem::take(&mut first) {
            while let Poll::Ready(unit) = tokio::task::coop::poll_proceed(cx) {
                unit.made_progress();
            }
        }
        Poll::Pending
    })
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_wakes_its_task_all_the_time_still_meets_its_deadlines() {
    let deadlines = Deadlines {
        head: Duration::from_millis(50),
        idle: Duration::from_secs(1),
        send: Duration::from_secs(1),
    };
    for greedy in [false, true] {
        let activity = Activity::new();
        let (_tx, stop) = watch::channel(false);
        let a = activity.clone();
        // One request answered at 10 ms, a head begun at 210 ms that never completes.
        let script = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            answer(&a);
            tokio::time::sleep(Duration::from_millis(200)).await;
            a.heads_begun(1);
        });
        let started = crate::clock::io_now();
        // When the supervisor asks the connection to close (it then waits out the grace).
        let asked = std::cell::Cell::new(None);
        let ask = |_: Pin<&mut _>| asked.set(Some(started.elapsed()));
        // Woken every millisecond until the head begins, then only by the supervisor's timer.
        let conn = restless(Duration::from_millis(210), greedy);
        let supervised = supervise(conn, ask, &activity, deadlines, stop);
        let (why, _) = tokio::time::timeout(Duration::from_secs(10), supervised)
            .await
            .expect("the deadline was not kept");
        script.abort();
        assert_eq!(why, Closed::SlowHead, "greedy: {greedy}");
        let expected = Duration::from_millis(210) + deadlines.head;
        let took = asked.get().expect("asked to close");
        assert!(
            within(took, expected),
            "greedy {greedy}: {took:?}, not {expected:?}"
        );
    }
}

/// A supervisor on a multi-thread runtime whose poll read the clock (once per poll, as
/// connection tasks do: `clock::in_turns`) before another worker fired its timer: the fired
/// deadline counts as reached, instead of being set again and firing again without end.
#[test]
fn a_timer_fired_during_a_long_poll_on_another_worker_ends_the_wait() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deadlines = Deadlines {
        head: Duration::from_millis(50),
        idle: Duration::from_secs(1),
        send: Duration::from_secs(1),
    };
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = polls.clone();
    let done = rt.block_on(async move {
        // Another worker keeps turning the time driver.
        let ticker = tokio::spawn(async {
            let mut every = tokio::time::interval(Duration::from_millis(1));
            loop {
                every.tick().await;
            }
        });
        let task = tokio::spawn(async move {
            let activity = Activity::new();
            let (_tx, stop) = watch::channel(false);
            let opened = crate::clock::io_now();
            let mut tick = Box::pin(tokio::time::sleep_until(opened + Duration::from_millis(45)));
            let mut blocked = false;
            let conn = std::future::poll_fn(move |cx| {
                counted.fetch_add(1, Ordering::Relaxed);
                if !blocked && tick.as_mut().poll(cx).is_ready() {
                    blocked = true;
                    let _ = crate::clock::io_now(); // this poll's instant, read at ~45 ms
                    std::thread::sleep(Duration::from_millis(20)); // a slow poll, past 50 ms
                }
                Poll::<Result<(), ()>>::Pending
            });
            let supervised = std::pin::pin!(supervise(conn, |_| {}, &activity, deadlines, stop));
            crate::clock::in_turns(supervised).await.0
        });
        let done = tokio::time::timeout(Duration::from_secs(3), task).await;
        ticker.abort();
        done
    });
    let polls = polls.load(Ordering::Relaxed);
    let Ok(why) = done else {
        // Its worker still spins: shutting the runtime down would wait for it forever.
        std::mem::forget(rt);
        panic!("the supervisor never returned ({polls} polls)");
    };
    let why = why.unwrap();
    assert_eq!(why, Closed::NoRequest);
    assert!(polls < 1000, "the connection was polled {polls} times");
}
