//! Tokens at the gateway (docs/design.md §3, and §5 for the two token endpoints): forged, tampered, `alg: none`, key-confused,
//! expired and foreign tokens are refused and never reach upstream; agent tokens pass to agent
//! routes unchanged; `/tokens/refresh` renews gateway tokens within their cap, and the
//! `/tokens/validate` oracle never sees a gateway token.
//!
//! Every test runs the real gateway over TLS on `127.0.0.1:0` in front of the ARCP stub
//! ([`common::session_env::Env`]).

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use http::Method;
use serde_json::json;

use common::arcp_profile::*;
use common::arcp_stub::*;
use common::jwt::*;
use common::session_env::*;
use common::{assert_problem, json_key_order};

// ---------------------------------------------------------------------------------------------
// Tokens the gateway must never forward.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_tokens_are_refused_and_never_reach_upstream() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-forgery";
    let real = env.login(fp).await;
    let claims = claims_of(&real);
    let now = now();

    let forged_signature = hs256(
        Some("main"),
        &claims,
        b"not-the-gateway-secret-0123456789abcdef",
    );
    let tampered = {
        let parts: Vec<&str> = real.split('.').collect();
        let mut c = claims.clone();
        c["sub"] = json!("root");
        let payload = assemble_jwt(&json!({}), &c, b"");
        let payload = payload.split('.').nth(1).unwrap().to_owned();
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let alg_none = assemble_jwt(
        &json!({"alg": "none", "typ": "JWT", "kid": "main"}),
        &claims,
        b"",
    );
    let alg_none_agent = assemble_jwt(
        &json!({"alg": "none", "typ": "JWT"}),
        &json!({"sub": "agent-1", "role": "agent", "iat": now, "exp": now + 600}),
        b"",
    );
    // HS256 "signed" with the EdDSA key's public material, under the EdDSA key's kid.
    let confused_pem = hs256(Some("ed"), &claims, env.keys.ed_public_pem.as_bytes());
    let confused_raw = hs256(Some("ed"), &claims, env.keys.ed25519.public_key_raw());
    let unknown_kid = hs256(Some("retired-2020"), &claims, GATEWAY_SECRET.as_bytes());
    let upstream_admin = hs256(
        None,
        &json!({"sub": "ARCP", "agent_id": "user_ARCP", "scopes": ["admin", "agent_management"],
                "role": "admin", "iat": now, "exp": now + 600}),
        UPSTREAM_SECRET.as_bytes(),
    );
    let expired_agent = hs256(
        None,
        &json!({"sub": "agent-1", "agent_id": "agent-1", "scopes": [], "role": "agent",
                "iat": now - 7200, "exp": now - 3600}),
        UPSTREAM_SECRET.as_bytes(),
    );
    let wrong_secret_agent = hs256(
        None,
        &json!({"sub": "agent-1", "role": "agent", "iat": now, "exp": now + 600}),
        b"not-the-upstream-secret-0123456789abcdef",
    );

    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "forged signature",
            forged_signature.as_str(),
            "TOKEN_INVALID",
        ),
        ("tampered payload", tampered.as_str(), "TOKEN_INVALID"),
        ("alg none (gateway kid)", alg_none.as_str(), "TOKEN_INVALID"),
        (
            "alg none (agent shape)",
            alg_none_agent.as_str(),
            "TOKEN_INVALID",
        ),
        (
            "HS256 with the EdDSA public key PEM",
            confused_pem.as_str(),
            "TOKEN_INVALID",
        ),
        (
            "HS256 with the raw EdDSA public key",
            confused_raw.as_str(),
            "TOKEN_INVALID",
        ),
        ("unknown kid", unknown_kid.as_str(), "TOKEN_INVALID"),
        (
            "admin token signed with the upstream secret",
            upstream_admin.as_str(),
            "TOKEN_INVALID",
        ),
        (
            "expired agent token",
            expired_agent.as_str(),
            "TOKEN_EXPIRED",
        ),
        (
            "agent token with a wrong secret",
            wrong_secret_agent.as_str(),
            "TOKEN_INVALID",
        ),
        ("garbage", "not-a-jwt", "TOKEN_INVALID"),
    ];
    for (what, token, code) in &cases {
        for path in ["/agents/stats", "/agents"] {
            let resp = env.get(path, token, fp).await;
            assert_eq!(resp.status, 401, "{what} on {path}: {}", resp.text());
            let v = assert_token_invalid(&resp, path, code);
            if *what == "admin token signed with the upstream secret" {
                assert_eq!(
                    v["detail"],
                    "Admin tokens are issued by the gateway; log in at /auth/login"
                );
            }
        }
    }

    // A correctly signed EdDSA token proves the key works: it is refused only because its
    // session does not exist, not because the signature check failed.
    let mut ed_claims = claims.clone();
    ed_claims["sid"] = json!(common::hex(&rand::random::<[u8; 16]>()));
    let signing_input = format!(
        "{}.{}",
        base64_url(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed"}).to_string()),
        base64_url(&ed_claims.to_string())
    );
    let signature = rcgen::SigningKey::sign(&env.keys.ed25519, signing_input.as_bytes()).unwrap();
    let genuine_ed = format!("{signing_input}.{}", base64_url_bytes(&signature));
    let resp = env.get("/agents/stats", &genuine_ed, fp).await;
    assert_idle_expired(&resp, "/agents/stats", 600);

    // A validly signed gateway token past its `exp`: the absolute cap.
    let mut old = claims.clone();
    old["iat"] = json!(now - 7200);
    old["exp"] = json!(now - 3600);
    let expired_gateway = hs256(Some("main"), &old, GATEWAY_SECRET.as_bytes());
    let resp = env.get("/agents/stats", &expired_gateway, fp).await;
    assert_cap_expired(&resp, "/agents/stats", 3600);

    // No credential at all.
    let resp = env.call(Method::GET, "/agents/stats", None, Some(fp)).await;
    let v = assert_problem(
        &resp,
        401,
        "authentication-failed",
        "INVALID_CREDENTIALS",
        "/agents/stats",
    );
    assert_eq!(v["detail"], "Authentication required for admin endpoint");
    assert_challenge(&resp);

    env.assert_upstream_saw_only_logins();
    assert_eq!(env.stub.logins(), 1);
    // The real session is untouched by all of this (upstream would have wiped it, §8.1).
    assert_eq!(env.get("/agents/stats", &real, fp).await.status, 200);
}

fn base64_url(text: &str) -> String {
    base64_url_bytes(text.as_bytes())
}

fn base64_url_bytes(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_pass_unchanged_to_agent_routes_and_are_refused_on_admin_routes() {
    let env = Env::start(ArcpConfig::default()).await;
    let token = agent_token("agent-007");
    let authorization = format!("Bearer {token}");

    let resp = env.call(Method::GET, "/agents", Some(&token), None).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["auth"], "agent");
    let seen = env.stub.records_for("/agents");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("authorization").unwrap().as_bytes(),
        authorization.as_bytes(),
        "the agent token is forwarded byte for byte"
    );

    let resp = env
        .call(Method::GET, "/agents/stats", Some(&token), None)
        .await;
    let v = assert_problem(
        &resp,
        403,
        "insufficient-permissions",
        "INSUFFICIENT_PERMISSIONS",
        "/agents/stats",
    );
    assert_eq!(
        v["detail"],
        "Access denied: agent role cannot access admin endpoint"
    );
    assert!(env.stub.records_for("/agents/stats").is_empty());

    // Agents unregister themselves without a PIN (the PIN guards admin sessions only).
    let resp = env
        .call(Method::DELETE, "/agents/agent-007", Some(&token), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = env.stub.records_for("/agents/agent-007");
    assert_eq!(
        seen[0].header("authorization"),
        Some(authorization.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// /tokens/refresh and /tokens/validate.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_renews_gateway_tokens_and_validate_never_sees_them() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-refresh";
    let token = env.login(fp).await;

    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&token), Some(fp))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut keys = json_key_order(&resp.text());
    keys.sort();
    assert_eq!(keys, ["access_token", "token_type"]);
    let v = resp.json();
    assert_eq!(v["token_type"], "bearer");
    let renewed = v["access_token"].as_str().unwrap().to_owned();
    let (old, new) = (claims_of(&token), claims_of(&renewed));
    assert_eq!(new["sid"], old["sid"], "same session");
    assert_eq!(new["sub"], old["sub"]);
    assert_eq!(new["exp"], old["exp"], "never past the absolute cap");
    assert!(new["iat"].as_i64() >= old["iat"].as_i64());
    assert_eq!(header_of(&renewed)["kid"], "main");
    let resp = env.get("/agents/stats", &renewed, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&token), None)
        .await;
    assert_session_invalid(
        &resp,
        "/tokens/refresh",
        &token,
        "Session fingerprint missing - please re-authenticate",
    );
    let resp = env
        .call(
            Method::POST,
            "/tokens/refresh",
            Some(&token),
            Some("fp-other"),
        )
        .await;
    assert_session_invalid(
        &resp,
        "/tokens/refresh",
        &token,
        "Session fingerprint mismatch - please re-authenticate",
    );
    assert!(env.stub.records_for("/tokens/refresh").is_empty());

    // A verified agent token is upstream's business: forwarded unchanged.
    let agent = agent_token("agent-9");
    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&agent), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = env.stub.records_for("/tokens/refresh");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {agent}").as_str())
    );

    // The token oracle never receives a gateway token, in the header or the query: the
    // gateway refuses it or answers it itself (docs/design.md §5).
    let query = format!("/tokens/validate?token={token}");
    let attempts = [
        (
            "GET, gateway bearer",
            Method::GET,
            "/tokens/validate",
            Some(&token),
            Some(fp),
        ),
        (
            "POST, gateway token in the query",
            Method::POST,
            query.as_str(),
            None,
            None,
        ),
        (
            "POST, gateway token in both",
            Method::POST,
            query.as_str(),
            Some(&token),
            Some(fp),
        ),
        (
            "GET, agent bearer + gateway token in the query",
            Method::GET,
            query.as_str(),
            Some(&agent),
            None,
        ),
        (
            "POST, agent bearer + gateway token in the query",
            Method::POST,
            query.as_str(),
            Some(&agent),
            None,
        ),
    ];
    for (what, method, path, bearer, fingerprint) in attempts {
        let resp = env
            .call(method, path, bearer.map(String::as_str), fingerprint)
            .await;
        assert!(
            resp.status.is_success() || resp.status.is_client_error(),
            "{what}: {} {}",
            resp.status,
            resp.text()
        );
        for r in env.stub.records() {
            assert!(
                !r.contains(&token),
                "{what}: upstream saw the gateway token in {} {}{}",
                r.method,
                r.path,
                r.query
                    .as_deref()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default()
            );
        }
    }
    let resp = env.call(Method::GET, "/tokens/validate", None, None).await;
    assert_eq!(resp.status, 401, "no token: {}", resp.text());
    // An agent token may ask the oracle, unchanged.
    let before = env.stub.records_for("/tokens/validate").len();
    let resp = env
        .call(Method::GET, "/tokens/validate", Some(&agent), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["stub"], "arcp", "answered by the upstream");
    let seen = env.stub.records_for("/tokens/validate");
    assert_eq!(seen.len(), before + 1);
    assert_eq!(
        seen.last().unwrap().header("authorization"),
        Some(format!("Bearer {agent}").as_str())
    );

    env.assert_upstream_never_saw(&token, "gateway token");
    env.assert_upstream_never_saw(&renewed, "refreshed gateway token");
}
