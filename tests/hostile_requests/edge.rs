//! Edge checks on the request head (docs/design.md §8): ambiguous `token`
//! query parameters, hosts the gateway does not serve, and a stolen session token tried with
//! other fingerprints.

use http::header::{AUTHORIZATION, HOST};
use http::{Method, Request, Version};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::common::arcp_profile::*;
use super::common::jwt::*;
use super::common::{empty, within, Proto, TestBody, TestResponse, STEP};
use super::{assert_refused, Env};

/// A raw request with the WebSocket upgrade fields.
fn upgrade(env: &Env, target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        env.gw.client.authority()
    )
}

/// Two `token` parameters (Starlette takes the last and decodes names; a naive reader takes
/// the first) are refused with 400 on the token oracle and on WebSocket upgrades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_token_query_parameters_are_refused() {
    let env = Env::start().await;
    let a = agent_token("agent-q-a");
    let b = agent_token("agent-q-b");
    let gateway = env.login("fp-q").await;
    let queries = [
        format!("token={a}&token={b}"),
        format!("token={a}&tok%65n={b}"),
        format!("%74oken={a}&token={b}"),
        format!("token={a}&token="),
        format!("token={a}&x=1&t%6Fk%65n={gateway}"),
    ];
    for q in &queries {
        for (method, bearer) in [(Method::POST, None), (Method::GET, Some(a.as_str()))] {
            let path = format!("/tokens/validate?{q}");
            let resp = env.call(method.clone(), &path, bearer).await;
            let v = assert_refused(
                &resp,
                400,
                "request-error",
                "REQUEST_ERROR",
                "/tokens/validate",
            );
            assert_eq!(
                v["detail"],
                "Ambiguous request: the `token` query parameter appears more than once",
                "{method} {q}"
            );
        }
        for socket in ["/dashboard/ws", "/agents/ws"] {
            let resp = env.raw(&upgrade(&env, &format!("{socket}?{q}"))).await;
            assert_refused(&resp, 400, "request-error", "REQUEST_ERROR", socket);
        }
    }
    env.assert_upstream_saw_nothing("duplicate token parameters");

    // One `token` is upstream's business when it is a verified upstream token.
    let resp = env
        .call(Method::POST, &format!("/tokens/validate?token={a}"), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = env.stub.records_for("/tokens/validate");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].query.as_deref(),
        Some(format!("token={a}").as_str())
    );
    assert_eq!(seen[0].header("authorization"), None);
}

/// One request over HTTP/2 with `:authority` = `authority` (and an optional `host` field).
async fn h2_get(env: &Env, authority: &str, host: Option<&str>, token: &str) -> TestResponse {
    let tls = env.gw.client.tls_connect(Proto::H2).await;
    let (mut sender, conn) = within(
        STEP,
        "HTTP/2 handshake",
        hyper::client::conn::http2::handshake::<_, _, TestBody>(
            TokioExecutor::new(),
            TokioIo::new(tls),
        ),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(format!("https://{authority}/agents"))
        .version(Version::HTTP_2)
        .header(AUTHORIZATION, format!("Bearer {token}"));
    if let Some(h) = host {
        req = req.header(HOST, h);
    }
    let resp = within(STEP, "HTTP/2 response", async {
        sender.ready().await.unwrap();
        sender
            .send_request(req.body(empty()).unwrap())
            .await
            .unwrap()
    })
    .await;
    let (parts, body) = resp.into_parts();
    let body = within(STEP, "HTTP/2 body", body.collect())
        .await
        .unwrap()
        .to_bytes();
    TestResponse {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// With `server.server_names` set, a request for another host (in `Host`, an absolute
/// request target, or HTTP/2's `:authority`) is 421 and never reaches upstream, which
/// builds URLs from `Host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_or_authority_is_421() {
    let env = Env::start_with(ArcpConfig::default(), |o| {
        *o = o
            .clone()
            .server("server_names", serde_json::json!(["localhost"]));
    })
    .await;
    let t = agent_token("agent-host");
    let port = env.gw.addr.port();
    let hosts = [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        "127.0.0.1".to_owned(),
        "[::1]".to_owned(),
    ];
    for host in &hosts {
        let raw =
            format!("GET /agents HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {t}\r\n\r\n");
        let resp = env.raw(&raw).await;
        let v = assert_refused(&resp, 421, "request-error", "REQUEST_ERROR", "/agents");
        assert_eq!(
            v["detail"], "This gateway does not serve the requested host",
            "{host}"
        );
    }
    let absolute = format!(
        "GET https://evil.example/agents HTTP/1.1\r\nHost: localhost:{port}\r\n\
         Authorization: Bearer {t}\r\n\r\n"
    );
    assert_refused(
        &env.raw(&absolute).await,
        421,
        "request-error",
        "REQUEST_ERROR",
        "/agents",
    );
    let login = "POST /auth/login HTTP/1.1\r\nHost: evil.example\r\n\
                 Content-Type: application/json\r\nX-Client-Fingerprint: fp\r\n\
                 Content-Length: 37\r\n\r\n{\"username\":\"ARCP\",\"password\":\"ARCP\"}";
    let resp = env.raw(login).await;
    assert_refused(&resp, 421, "request-error", "REQUEST_ERROR", "/auth/login");

    let resp = h2_get(&env, &format!("evil.example:{port}"), None, &t).await;
    assert_eq!(resp.version, Version::HTTP_2);
    assert_refused(&resp, 421, "request-error", "REQUEST_ERROR", "/agents");
    let resp = h2_get(&env, &format!("localhost:{port}"), Some("evil.example"), &t).await;
    assert_refused(&resp, 421, "request-error", "REQUEST_ERROR", "/agents");
    env.assert_upstream_saw_nothing("foreign hosts");

    // The configured name, in any case and with the port, is served.
    for host in [format!("localhost:{port}"), format!("LOCALHOST:{port}")] {
        let raw =
            format!("GET /agents HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {t}\r\n\r\n");
        let resp = env.raw(&raw).await;
        assert_eq!(resp.status, 200, "{host}: {}", resp.text());
    }
    let resp = h2_get(&env, &format!("localhost:{port}"), None, &t).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(env.stub.records_for("/agents").len(), 3);
}

/// A stolen gateway token used with the wrong fingerprint: each try is 401 `session-invalid`
/// and the fifth ends the session, so the sixth, even with the right fingerprint, is refused.
/// Fewer than five leave the session alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_fingerprint_mismatches_end_the_session() {
    let env = Env::start().await;
    let stats = |token: &str, fp: &str| {
        env.send(api_request(
            Method::GET,
            "/agents/stats",
            Some(token),
            Some(fp),
            &[],
            None,
        ))
    };
    let mismatch = "Session fingerprint mismatch - please re-authenticate";

    let survivor = env.login("fp-owner-1").await;
    for i in 0..4 {
        let resp = stats(&survivor, &format!("fp-thief-{i}")).await;
        let v = assert_refused(
            &resp,
            401,
            "session-invalid",
            "SESSION_INVALID",
            "/agents/stats",
        );
        assert_eq!(v["detail"], mismatch);
    }
    let resp = stats(&survivor, "fp-owner-1").await;
    assert_eq!(
        resp.status,
        200,
        "four mismatches do not end it: {}",
        resp.text()
    );

    let victim = env.login("fp-owner-2").await;
    for i in 0..5 {
        let resp = stats(&victim, &format!("fp-thief-{i}")).await;
        let v = assert_refused(
            &resp,
            401,
            "session-invalid",
            "SESSION_INVALID",
            "/agents/stats",
        );
        assert_eq!(v["detail"], mismatch, "attempt {i}");
    }
    let resp = stats(&victim, "fp-owner-2").await;
    let v = assert_refused(
        &resp,
        401,
        "session-invalid",
        "SESSION_INVALID",
        "/agents/stats",
    );
    assert_eq!(
        v["detail"],
        "Session was ended after repeated fingerprint mismatches - please re-authenticate"
    );
    assert_eq!(
        env.stub.records_for("/agents/stats").len(),
        1,
        "only the one admitted request reached upstream"
    );
}
