use super::*;

fn settings(idle_ms: u64, max_per_user: u32) -> SessionSettings {
    SessionSettings {
        idle_timeout: Duration::from_millis(idle_ms),
        absolute_timeout: Duration::from_secs(3600),
        max_per_user,
        max_fingerprint_mismatches: 5,
        capacity: 1000,
    }
}

#[tokio::test]
async fn create_lookup_logout() {
    let store = SessionStore::new(&settings(60_000, 5), Clock::system());
    let s = store.create("ARCP", "fp").await;
    assert!(matches!(store.lookup(&s.id).await, Lookup::Active(_)));
    store.end(&s.id, Ended::LoggedOut).await;
    assert!(matches!(
        store.lookup(&s.id).await,
        Lookup::Ended(Ended::LoggedOut)
    ));
    assert!(matches!(
        store.lookup(&SessionId::random()).await,
        Lookup::Expired
    ));
}

#[tokio::test]
async fn oldest_session_is_evicted_beyond_the_limit() {
    let store = SessionStore::new(&settings(60_000, 2), Clock::system());
    let a = store.create("ARCP", "fp").await;
    let b = store.create("ARCP", "fp").await;
    let c = store.create("ARCP", "fp").await;
    let other = store.create("someone", "fp").await;
    assert!(matches!(
        store.lookup(&a.id).await,
        Lookup::Ended(Ended::Evicted)
    ));
    for s in [&b, &c, &other] {
        assert!(matches!(store.lookup(&s.id).await, Lookup::Active(_)));
    }
}

#[tokio::test]
async fn absolute_cap_uses_the_injected_clock() {
    let clock = Clock::system();
    let store = SessionStore::new(&settings(60_000, 5), clock.clone());
    let s = store.create("ARCP", "fp").await;
    clock.advance(3601);
    assert!(matches!(store.lookup(&s.id).await, Lookup::Expired));
}

#[tokio::test]
async fn idle_sessions_expire_and_activity_keeps_them() {
    let clock = Clock::system();
    let store = SessionStore::new(&settings(300, 5), clock.clone());
    let busy = store.create("ARCP", "a").await;
    let idle = store.create("ARCP", "b").await;
    let other = store.create("ARCP", "c").await;
    for _ in 0..6 {
        clock.advance_by(Duration::from_millis(100));
        match store.lookup(&busy.id).await {
            Lookup::Active(s) => store.touch(&s),
            other => panic!("busy session gone: {other:?}"),
        }
        // Lookups without admission are not activity.
        let _ = store.lookup(&other.id).await;
    }
    assert!(matches!(store.lookup(&idle.id).await, Lookup::Expired));
    assert!(matches!(store.lookup(&other.id).await, Lookup::Expired));
}

#[tokio::test]
async fn ending_a_session_wakes_its_watchers() {
    let store = SessionStore::new(&settings(60_000, 5), Clock::system());
    let s = store.create("ARCP", "fp").await;
    let mut rx = store.watch_end(&s.id);
    assert!(!*rx.borrow());
    store.end(&s.id, Ended::LoggedOut).await;
    tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|ended| *ended))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn idle_expiry_wakes_watchers_after_pending_tasks() {
    let store = SessionStore::new(&settings(200, 5), Clock::system());
    let s = store.create("ARCP", "fp").await;
    let mut rx = store.watch_end(&s.id);
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.run_pending_tasks().await;
    tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|ended| *ended))
        .await
        .unwrap()
        .unwrap();
}
