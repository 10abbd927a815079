//! The response deadline: carried by the connection, moved per request, covering connect.

use super::*;

#[tokio::test]
async fn the_response_deadline_moves_with_each_request_on_a_kept_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TIMEOUT: Duration = Duration::from_millis(1000);
    async fn next_head(stream: &mut tokio::net::TcpStream) {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "connection ended");
            seen.push(byte[0]);
        }
    }
    // One connection only: every request below that succeeds went on the kept one.
    let server = one_connection(|mut stream| async move {
        for delay in [0, 700, 100] {
            next_head(&mut stream).await;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            stream.write_all(OK).await.unwrap();
        }
        // The fourth request is never answered; the connection stays open.
        next_head(&mut stream).await;
        std::future::pending::<()>().await;
    })
    .await;
    let client = client_with("http", &server, Duration::from_secs(2), TIMEOUT);
    assert_eq!(
        text(client.send(get(&client, "/1")).await.unwrap()).await,
        "ok"
    );
    // Sent 600 ms into the first request's deadline and answered 700 ms later, after that
    // deadline and 300 ms before its own: the deadline is the second request's own.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        text(client.send(get(&client, "/2")).await.unwrap()).await,
        "ok"
    );
    // Idle past the deadline (its timer fires in the pool), then used again.
    tokio::time::sleep(TIMEOUT + Duration::from_millis(200)).await;
    assert_eq!(
        text(client.send(get(&client, "/3")).await.unwrap()).await,
        "ok"
    );
    assert_eq!(client.pool.idle_count(), 1);
    // Unanswered: a timeout at the deadline, and the connection is dropped.
    times_out(&client, "/4", TIMEOUT * 4).await;
    assert_eq!(client.pool.idle_count(), 0);
}

/// Sends a GET to `path` and expects the response timeout, no earlier than it and before
/// `within`.
async fn times_out(client: &UpstreamClient, path: &'static str, within: Duration) {
    let started = crate::clock::io_now();
    let failed = client.send(get(client, path)).await;
    let took = started.elapsed();
    let timeout = client.response_timeout;
    assert!(
        matches!(failed, Err(UpstreamError::Timeout(t)) if t == timeout),
        "{failed:?}"
    );
    assert!(took >= timeout && took < within, "timed out after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_flooding_interim_answers_still_meets_the_deadline() {
    use tokio::io::AsyncWriteExt;
    const TIMEOUT: Duration = Duration::from_millis(500);
    // Interim answers without end, as fast as the socket takes them: every poll of the
    // exchange finds more to read and uses up the task's budget.
    let server = one_connection(|mut stream| async move {
        let flood = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(40_000);
        while stream.write_all(&flood).await.is_ok() {}
    })
    .await;
    let client = client_with("http", &server, Duration::from_secs(2), TIMEOUT);
    // The socket is full before the request goes out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = tokio::time::timeout(Duration::from_secs(20), client.send(get(&client, "/flood")));
    let failed = sent
        .await
        .expect("the response deadline was never looked at");
    assert!(
        matches!(failed, Err(UpstreamError::Timeout(t)) if t == TIMEOUT),
        "{failed:?}"
    );
}

#[tokio::test]
async fn the_connection_is_made_within_the_response_deadline() {
    // TCP is accepted, the TLS handshake never answered: the connect timeout (30 s) is not
    // what ends the request, the response deadline is.
    const TIMEOUT: Duration = Duration::from_millis(500);
    let server = one_connection(|stream| async move {
        let _held = stream;
        std::future::pending::<()>().await;
    })
    .await;
    let client = client_with("https", &server, Duration::from_secs(30), TIMEOUT);
    times_out(&client, "/tls", TIMEOUT * 10).await;
}

/// The deadline a kept connection carries wakes the task of the request now on it, not the
/// one before (each request here is its own task, as on the server): the first request's
/// timer registration is still there when the second request begins.
#[tokio::test]
async fn a_kept_connection_times_out_for_the_next_requests_task() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TIMEOUT: Duration = Duration::from_millis(300);
    let server = one_connection(|mut stream| async move {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
            seen.push(byte[0]);
        }
        stream.write_all(OK).await.unwrap();
        // The second request is never answered.
        std::future::pending::<()>().await;
    })
    .await;
    let client = std::sync::Arc::new(client_with(
        "http",
        &server,
        Duration::from_secs(2),
        TIMEOUT,
    ));
    let c = client.clone();
    let first = tokio::spawn(async move { text(c.send(get(&c, "/1")).await.unwrap()).await });
    assert_eq!(first.await.unwrap(), "ok");
    let c = client.clone();
    let second = tokio::spawn(async move { c.send(get(&c, "/2")).await.map(|_| ()) });
    let failed = tokio::time::timeout(TIMEOUT * 10, second)
        .await
        .expect("the second request's deadline never woke its task")
        .unwrap();
    assert!(
        matches!(failed, Err(UpstreamError::Timeout(t)) if t == TIMEOUT),
        "{failed:?}"
    );
}
