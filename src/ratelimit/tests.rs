use super::*;

fn settings() -> LoginSettings {
    LoginSettings {
        max_failures_per_ip: 3,
        max_failures_per_address: 10,
        max_failures_per_user: 5,
        failure_window: Duration::from_secs(60),
        lockout: Duration::from_secs(60),
        attempts_per_minute_per_ip: 100,
        slowdown_max: Duration::from_secs(5),
        max_concurrent_verifications: 2,
        verification_queue_timeout: Duration::from_millis(50),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_pair_locks_itself_out_but_not_the_user_elsewhere() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
    for _ in 0..3 {
        assert!(t.check_ip(a).await.is_ok());
        assert!(t.check_user(a, "ARCP").await.is_ok());
        t.record_failure(a, Some("ARCP")).await;
    }
    let Err(Refused::Throttled(locked)) = t.check_user(a, "ARCP").await else {
        panic!("the pair is locked")
    };
    assert!(locked.retry_after > Duration::from_secs(50));
    assert!(
        t.check_user(b, "ARCP").await.is_ok(),
        "the same user elsewhere is not locked"
    );
    assert!(
        t.check_user(a, "other").await.is_ok(),
        "another user from there is not locked"
    );
    assert!(
        t.check_ip(a).await.is_ok(),
        "3 failures stay below the address threshold"
    );
}

#[tokio::test]
async fn the_per_user_ceiling_slows_and_never_locks() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    for i in 0..8 {
        t.record_failure(ip(&format!("10.1.0.{i}")), Some("victim"))
            .await;
    }
    assert_eq!(t.user_failures("victim").await, Ok(8));
    assert_eq!(t.slowdown("victim").await, Ok(Duration::from_millis(2000)));
    assert_eq!(t.slowdown("someone-else").await, Ok(Duration::ZERO));
    assert!(t.check_user(ip("10.2.0.1"), "victim").await.is_ok());
    let attempt = t.reserve(ip("10.2.0.1"), "victim").await.unwrap();
    t.right_password(attempt).await;
    assert_eq!(t.slowdown("victim").await, Ok(Duration::ZERO));
}

#[tokio::test]
async fn an_address_spraying_names_locks_itself() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let a = ip("10.0.0.9");
    for i in 0..10 {
        t.record_failure(a, Some(&format!("user{i}"))).await;
    }
    assert!(t.check_ip(a).await.is_err());
    assert!(t.check_ip(ip("10.0.0.10")).await.is_ok());
}

#[test]
fn an_ipv6_slash_64_is_one_client() {
    assert_eq!(
        ClientKey::of(ip("2001:db8:1:2::1")),
        ClientKey::of(ip("2001:db8:1:2:ffff::9"))
    );
    assert_ne!(
        ClientKey::of(ip("2001:db8:1:2::1")),
        ClientKey::of(ip("2001:db8:1:3::1"))
    );
    assert_eq!(
        ClientKey::of(ip("::ffff:10.0.0.1")),
        ClientKey::of(ip("10.0.0.1"))
    );
    assert_ne!(ClientKey::of(ip("10.0.0.1")), ClientKey::of(ip("10.0.0.2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_failures_all_count() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move {
                t.record_failure(ip(&format!("10.3.0.{i}")), Some("raced"))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(t.user_failures("raced").await, Ok(64));
}

#[tokio::test]
async fn verification_slots_are_bounded() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let one = t.verification_slot().await.unwrap();
    let two = t.verification_slot().await.unwrap();
    assert!(
        t.verification_slot().await.is_err(),
        "a third waits, then is refused"
    );
    drop(one);
    assert!(t.verification_slot().await.is_ok());
    drop(two);
}

#[tokio::test]
async fn attempt_rate_is_limited() {
    let mut s = settings();
    s.attempts_per_minute_per_ip = 2;
    let t = LoginThrottle::new(&s, Clock::system());
    let a = ip("10.0.0.1");
    assert!(t.check_ip(a).await.is_ok());
    assert!(t.check_ip(a).await.is_ok());
    assert!(t.check_ip(a).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_attempts_are_counted_before_they_are_checked() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let a = ip("10.4.0.1");
    let tries = (0..16).map(|_| {
        let t = t.clone();
        tokio::spawn(async move { t.reserve(a, "ARCP").await })
    });
    let mut admitted = Vec::new();
    for r in futures_util::future::join_all(tries).await {
        if let Ok(attempt) = r.unwrap() {
            admitted.push(attempt);
        }
    }
    assert_eq!(admitted.len(), 3, "max_failures_per_ip of 16 are checked");
    assert!(matches!(
        t.reserve(a, "ARCP").await,
        Err(Refused::Throttled(_))
    ));
    for attempt in admitted {
        t.wrong_password(attempt).await;
    }
    assert!(
        t.check_user(a, "ARCP").await.is_err(),
        "the pair stays locked"
    );
    assert_eq!(t.user_failures("ARCP").await, Ok(3));
}

#[tokio::test]
async fn an_attempt_never_checked_does_not_count() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let a = ip("10.5.0.1");
    // Saturated verifiers: every attempt is taken back; the pair never locks.
    for _ in 0..10 {
        let attempt = t.reserve(a, "ARCP").await.expect("not locked");
        t.cancel(attempt).await;
    }
    assert!(t.check_user(a, "ARCP").await.is_ok());
    // Two wrong, then the right one whose own count reached the limit: it logs in and
    // lifts the lock its count set.
    for _ in 0..2 {
        let attempt = t.reserve(a, "ARCP").await.unwrap();
        t.wrong_password(attempt).await;
    }
    let third = t.reserve(a, "ARCP").await.unwrap();
    assert!(
        t.check_user(a, "ARCP").await.is_err(),
        "locked while decided"
    );
    t.right_password(third).await;
    assert!(t.check_user(a, "ARCP").await.is_ok());
    assert_eq!(t.user_failures("ARCP").await, Ok(0));
}

#[test]
fn no_ipv6_prefix_shares_a_key_with_an_ipv4_address() {
    assert_ne!(ClientKey::of(ip("::1")), ClientKey::of(ip("0.0.0.1")));
    assert_ne!(ClientKey::of(ip("::")), ClientKey::of(ip("0.0.0.0")));
    assert_eq!(
        ClientKey::of(ip("2001:db8::1")),
        ClientKey::of(ip("2001:db8::ffff:1"))
    );
    assert_eq!(
        ClientKey::of(ip("::ffff:10.0.0.1")),
        ClientKey::of(ip("10.0.0.1"))
    );
}

#[tokio::test]
async fn a_reservation_is_refused_once_its_address_locked() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let a = ip("10.6.0.1");
    // Admitted by check_ip while the address was still open...
    assert!(t.check_ip(a).await.is_ok());
    // ...then other attempts from there lock it before this one is checked.
    for i in 0..10 {
        t.record_failure(a, Some(&format!("name{i}"))).await;
    }
    assert!(matches!(
        t.reserve(a, "ARCP").await,
        Err(Refused::Throttled(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_attempts_under_many_names_are_bounded_by_the_address() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let a = ip("10.7.0.1");
    let tries = (0..40).map(|i| {
        let t = t.clone();
        tokio::spawn(async move { t.reserve(a, &format!("name{i}")).await })
    });
    let mut admitted = Vec::new();
    for r in futures_util::future::join_all(tries).await {
        if let Ok(attempt) = r.unwrap() {
            admitted.push(attempt);
        }
    }
    assert_eq!(
        admitted.len(),
        10,
        "max_failures_per_address of 40 are checked"
    );
    for attempt in admitted {
        t.wrong_password(attempt).await;
    }
    assert!(t.check_ip(a).await.is_err(), "the address is locked");
}

#[tokio::test]
async fn a_right_password_is_no_failure_of_its_address() {
    let t = LoginThrottle::new(&settings(), Clock::system());
    let a = ip("10.8.0.1");
    for _ in 0..12 {
        let attempt = t.reserve(a, "ARCP").await.expect("never locked");
        t.right_password(attempt).await;
    }
    assert!(t.check_ip(a).await.is_ok());
}

#[tokio::test]
async fn taking_an_attempt_back_never_lifts_a_lock_it_does_not_own() {
    let clock = Clock::system();
    let t = LoginThrottle::new(&settings(), clock.clone());
    let a = ip("10.9.0.1");
    for _ in 0..2 {
        let attempt = t.reserve(a, "ARCP").await.unwrap();
        t.wrong_password(attempt).await;
    }
    // The third count sets the pair lock; the attempt is still being decided...
    let slow = t.reserve(a, "ARCP").await.unwrap();
    // ...its lock runs out, and a newer attempt's count locks the pair again.
    clock.advance(61);
    let newer = t.reserve(a, "ARCP").await.unwrap();
    t.wrong_password(newer).await;
    // The slow attempt is taken back: the newer lock stays.
    t.cancel(slow).await;
    assert!(t.check_user(a, "ARCP").await.is_err());
}
