//! Tokens at the edge (docs/design.md §5, §8): the gateway forwards exactly the
//! token it verified, and only where it belongs.

use http::header::AUTHORIZATION;
use http::Method;

use super::common::arcp_profile::*;
use super::common::jwt::*;
use super::{agent_token_expiring, assert_refused, temp_token, validated_token, Env};

/// Registration-phase tokens (temp, validated) pass on `POST /agents/register` (and temp
/// tokens on the `temp` routes) and nowhere else: 403 `token-invalid`, never forwarded, so
/// neither can act as an agent nor be laundered by `/tokens/refresh` (contract §8.9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_tokens_work_only_on_registration_routes() {
    let env = Env::start().await;
    let temp = temp_token("agent-reg-1");
    let validated = validated_token("agent-reg-1");
    let refused: [(Method, &str); 6] = [
        (Method::GET, "/agents"),
        (Method::DELETE, "/agents/other-agent"),
        (Method::DELETE, "/agents/agent-reg-1"),
        (Method::POST, "/agents/x/heartbeat"),
        (Method::POST, "/agents/report-metrics/agent-reg-1"),
        (Method::POST, "/tokens/refresh"),
    ];
    for (kind, token) in [("temp", &temp), ("validated", &validated)] {
        for (method, path) in &refused {
            let resp = env.call(method.clone(), path, Some(token)).await;
            let v = assert_refused(&resp, 403, "token-invalid", "TOKEN_INVALID", path);
            assert_eq!(
                v["detail"], "Registration tokens are only accepted by the registration endpoints",
                "{kind} on {method} {path}"
            );
        }
    }
    // A validated token is no temp token.
    let resp = env
        .call(
            Method::POST,
            "/auth/agent/validate_compliance",
            Some(&validated),
        )
        .await;
    assert_refused(
        &resp,
        403,
        "token-invalid",
        "TOKEN_INVALID",
        "/auth/agent/validate_compliance",
    );
    env.assert_upstream_saw_nothing("registration tokens off their routes");

    // Where upstream needs them, they are forwarded exactly as verified.
    for (n, token) in [&temp, &validated].into_iter().enumerate() {
        let resp = env
            .call(Method::POST, "/agents/register", Some(token))
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let auth = env.forwarded_once("/agents/register", n);
        assert_eq!(auth, Some(format!("Bearer {token}")));
    }
    let resp = env
        .call(Method::POST, "/auth/agent/validate_compliance", Some(&temp))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let auth = env.forwarded_once("/auth/agent/validate_compliance", 0);
    assert_eq!(auth, Some(format!("Bearer {temp}")));
}

/// On `own_agent` routes an agent token acts on the agent its `agent_id` names, whatever
/// spelling of the path is used; another agent's id is 403 `insufficient-permissions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_act_on_their_own_agent_only() {
    let env = Env::start().await;
    let a = agent_token("agent-a");
    // The problem's `instance` is the path as sent.
    let refused: [(Method, &str); 8] = [
        (Method::DELETE, "/agents/agent-b"),
        (Method::POST, "/agents/agent-b/heartbeat"),
        (Method::PUT, "/agents/agent-b/status"),
        (Method::POST, "/agents/report-metrics/agent-b"),
        (Method::PATCH, "/agents/agent-b/config"),
        // Percent-encoded spellings of the other id.
        (Method::DELETE, "/agents/%61gent-b"),
        (Method::DELETE, "/agents/agent%2Db"),
        (Method::POST, "/agents/report-metrics/%61gent-b"),
    ];
    for (method, path) in &refused {
        let resp = env.call(method.clone(), path, Some(&a)).await;
        let v = assert_refused(
            &resp,
            403,
            "insufficient-permissions",
            "INSUFFICIENT_PERMISSIONS",
            path,
        );
        assert_eq!(
            v["detail"], "Access denied: an agent token acts on its own agent only",
            "{method} {path}"
        );
    }
    // A dot segment cannot walk from the own id to another one.
    let resp = env
        .call(Method::DELETE, "/agents/agent-a/../agent-b", Some(&a))
        .await;
    assert_refused(
        &resp,
        400,
        "request-error",
        "REQUEST_ERROR",
        "/agents/agent-a/../agent-b",
    );
    env.assert_upstream_saw_nothing("agent token on another agent");

    // Its own id, plain or percent-encoded, is forwarded (on the normalised path).
    let own: [(Method, &str, &str); 4] = [
        (
            Method::POST,
            "/agents/agent-a/heartbeat",
            "/agents/agent-a/heartbeat",
        ),
        (
            Method::POST,
            "/agents/report-metrics/agent-a",
            "/agents/report-metrics/agent-a",
        ),
        (
            Method::POST,
            "/agents/%61gent%2Da/heartbeat",
            "/agents/agent-a/heartbeat",
        ),
        (Method::DELETE, "/agents/agent-a", "/agents/agent-a"),
    ];
    for (method, path, upstream_path) in &own {
        let before = env.stub.records_for(upstream_path).len();
        let resp = env.call(method.clone(), path, Some(&a)).await;
        assert_eq!(resp.status, 200, "{method} {path}: {}", resp.text());
        let auth = env.forwarded_once(upstream_path, before);
        assert_eq!(auth, Some(format!("Bearer {a}")), "{method} {path}");
    }
}

/// A raw `GET /agents` with `authorization` as the field line's value.
fn get_agents(env: &Env, authorization_lines: &[&str]) -> String {
    let mut r = format!(
        "GET /agents HTTP/1.1\r\nHost: {}\r\n",
        env.gw.client.authority()
    );
    for line in authorization_lines {
        r.push_str(line);
        r.push_str("\r\n");
    }
    r.push_str("Connection: close\r\n\r\n");
    r
}

/// Upstream slices `Authorization` at a fixed offset (`[7:]`), so any other spelling than
/// `Bearer <token>` would reach it as a different, unverifiable token (contract §8.1). The
/// gateway accepts the scheme in any case with extra spaces, and forwards exactly
/// `Bearer <token>`; duplicated decision headers are refused (400) before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_receives_exactly_bearer_and_the_verified_token() {
    let env = Env::start().await;
    let t = agent_token("agent-spell");
    let expected = format!("Bearer {t}");
    let spellings = [
        format!("Authorization: bearer  {t}"),
        format!("Authorization: BEARER {t}"),
        format!("Authorization: Bearer \t{t}"),
        format!("Authorization: BEARER \t {t}\t "),
        format!("authorization: bEaReR     {t}"),
    ];
    for (n, line) in spellings.iter().enumerate() {
        let resp = env.raw(&get_agents(&env, &[line.as_str()])).await;
        assert_eq!(resp.status, 200, "{line:?}: {}", resp.text());
        let seen = env.stub.records_for("/agents");
        assert_eq!(seen.len(), n + 1, "{line:?}");
        let got: Vec<&[u8]> = seen[n]
            .headers
            .get_all(AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(got, [expected.as_bytes()], "{line:?}");
    }
    let forwarded = env.upstream_requests().len();

    // No single space after the scheme: not a bearer credential at all (RFC 6750 §2.1).
    let resp = env
        .raw(&get_agents(&env, &[&format!("Authorization: Bearer\t{t}")]))
        .await;
    assert_refused(
        &resp,
        401,
        "authentication-failed",
        "INVALID_CREDENTIALS",
        "/agents",
    );

    // Two of a decision field: 400, whatever the values.
    let last = if t.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &t[..t.len() - 1]);
    let gateway = env.login("fp-dup").await;
    let duplicates: Vec<(&str, Vec<String>)> = vec![
        (
            "two equal Authorization",
            vec![
                format!("Authorization: Bearer {t}"),
                format!("Authorization: Bearer {t}"),
            ],
        ),
        (
            "valid then forged Authorization",
            vec![
                format!("Authorization: Bearer {t}"),
                format!("Authorization: Bearer {forged}"),
            ],
        ),
        (
            "forged then valid Authorization",
            vec![
                format!("Authorization: Bearer {forged}"),
                format!("Authorization: Bearer {t}"),
            ],
        ),
        (
            "two X-Client-Fingerprint",
            vec![
                format!("Authorization: Bearer {gateway}"),
                "X-Client-Fingerprint: fp-dup".into(),
                "X-Client-Fingerprint: fp-other".into(),
            ],
        ),
        (
            "two equal X-Client-Fingerprint",
            vec![
                format!("Authorization: Bearer {gateway}"),
                "X-Client-Fingerprint: fp-dup".into(),
                "X-Client-Fingerprint: fp-dup".into(),
            ],
        ),
        (
            "two X-Session-Pin",
            vec![
                format!("Authorization: Bearer {gateway}"),
                "X-Client-Fingerprint: fp-dup".into(),
                "X-Session-Pin: 1111".into(),
                "X-Session-Pin: 2222".into(),
            ],
        ),
        ("two Host", vec!["Host: localhost".into()]),
    ];
    for (what, lines) in &duplicates {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let resp = env.raw(&get_agents(&env, &lines)).await;
        let v = assert_refused(&resp, 400, "request-error", "REQUEST_ERROR", "/agents");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .starts_with("Ambiguous request: the "),
            "{what}: {v}"
        );
    }
    assert_eq!(
        env.upstream_requests().len(),
        forwarded,
        "refused requests reached upstream: {:?}",
        env.upstream_requests()
    );
}

/// Upstream tokens are refused from `expiry_margin` (10 s) before `exp`, and so are tokens
/// past `exp` that upstream's 60 s leeway would still take: none can expire between the
/// gateway's check and upstream's, where an expired token wipes sessions (contract §8.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_about_to_expire_or_inside_upstream_leeway_are_refused() {
    let env = Env::start().await;
    let cases = [
        ("expires in 5 s", agent_token_expiring("agent-exp", 5)),
        ("expires in 1 s", agent_token_expiring("agent-exp", 1)),
        ("expired 30 s ago", agent_token_expiring("agent-exp", -30)),
        ("expired 59 s ago", agent_token_expiring("agent-exp", -59)),
    ];
    let routes: [(Method, &str); 4] = [
        (Method::GET, "/agents"),
        (Method::POST, "/agents/agent-exp/heartbeat"),
        (Method::DELETE, "/agents/agent-exp"),
        (Method::POST, "/tokens/refresh"),
    ];
    for (what, token) in &cases {
        for (method, path) in &routes {
            let resp = env.call(method.clone(), path, Some(token)).await;
            let v = assert_refused(&resp, 401, "token-invalid", "TOKEN_EXPIRED", path);
            assert_eq!(
                v["detail"], "Invalid or expired token",
                "{what} {method} {path}"
            );
        }
        // The token oracle answers for it itself.
        let resp = env.call(Method::GET, "/tokens/validate", Some(token)).await;
        assert!(resp.json().get("stub").is_none(), "{what}: {}", resp.text());
    }
    env.assert_upstream_saw_nothing("tokens inside the expiry margin");

    let fresh = agent_token_expiring("agent-exp", 120);
    let resp = env.call(Method::GET, "/agents", Some(&fresh)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        env.forwarded_once("/agents", 0),
        Some(format!("Bearer {fresh}"))
    );
}

/// The agent socket takes the same tokens as the agent routes: a registration-phase token
/// in the first frame closes it with 1008 and upstream never receives the frame (before the
/// fix it was relayed, so a temp token for any `agent_id` opened that agent's socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_tokens_cannot_open_an_agent_socket() {
    use super::common::ws_client::WsClient;
    use super::common::ws_stub::WsStub;
    const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);
    let is_type = |t: &'static str| move |v: &serde_json::Value| v["type"] == t;

    let stub = WsStub::start().await;
    let keys = Keys::new();
    let gw = super::common::TestGateway::start_with_clock(
        keys.options(&stub.url(), &ArcpConfig::default()),
        arcp_gateway::clock::Clock::system(),
    )
    .await;
    stub.arcp
        .wait_for_logins(1, std::time::Duration::from_secs(20))
        .await;
    let cases = [
        ("temp", temp_token("victim-agent")),
        ("validated", validated_token("victim-agent")),
    ];
    for (case, token) in &cases {
        let mut ws = WsClient::connect(&gw.client, &format!("/agents/ws?case={case}")).await;
        ws.recv_json(SETTLE, is_type("auth_required")).await;
        ws.send_json(&serde_json::json!({ "token": token })).await;
        let (code, _) = ws.expect_close(SETTLE).await;
        assert_eq!(code, Some(1008), "{case}");
        // Upstream is contacted only after the first frame is accepted: a
        // refused one leaves no upstream connection at all, so no frame either.
        let conns = stub.connections();
        assert!(
            conns.iter().all(|c| c.param("case") != Some(case)),
            "{case}: upstream got a connection: {conns:?}"
        );
    }
    // An agent token still opens its socket.
    let mut ws = WsClient::connect(&gw.client, "/agents/ws?case=agent").await;
    ws.recv_json(SETTLE, is_type("auth_required")).await;
    ws.send_json(&serde_json::json!({ "token": agent_token("victim-agent") }))
        .await;
    ws.recv_json(SETTLE, is_type("auth_success")).await;
}
