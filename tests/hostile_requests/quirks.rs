//! The upstream quirks of docs/arcp-upstream-contract.md §8 that a client can trigger, each
//! triggered through the gateway against the recording ARCP stub and shown neutralised
//! (docs/security.md, upstream quirks). Items the stub cannot model are in [`super::real_arcp`]; items covered
//! elsewhere or not triggerable are listed in docs/security.md.

use std::time::Duration;

use http::Method;
use serde_json::json;

use super::common::arcp_profile::*;
use super::common::arcp_stub::*;
use super::common::assert_problem;
use super::common::jwt::*;
use super::{assert_refused, loopback, upstream_token, Env};

const STEP: Duration = Duration::from_secs(30);

/// §8.1: a forged or expired token whose `sub` is upstream's admin reaching any
/// authenticated route would wipe every upstream session of that admin, the gateway's
/// brokered one included. None reaches upstream, on agent, admin, temp and token routes,
/// and the brokered session is the first one still.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q1_tokens_naming_the_upstream_admin_never_reach_upstream() {
    let env = Env::start().await;
    let fp = "fp-q1";
    let admin = env.login(fp).await;
    let now = now();
    let wrong = b"attacker-guessed-secret-0123456789abcdef";
    let victim = |role: &str, iat: i64, exp: i64, key: &[u8]| {
        hs256(
            None,
            &json!({"sub": SERVICE_USER, "agent_id": SERVICE_USER, "role": role, "scopes": ["admin"],
                    "iat": iat, "exp": exp}),
            key,
        )
    };
    let aaaa = {
        let t = victim("admin", now, now + 600, wrong);
        format!("{}.AAAA", t.rsplit_once('.').unwrap().0)
    };
    let tokens = [
        ("forged admin", victim("admin", now, now + 600, wrong)),
        ("forged agent", victim("agent", now, now + 600, wrong)),
        (".AAAA signature", aaaa),
        (
            "expired agent",
            victim("agent", now - 7200, now - 3600, UPSTREAM_SECRET.as_bytes()),
        ),
        (
            "genuine upstream admin",
            victim("admin", now, now + 600, UPSTREAM_SECRET.as_bytes()),
        ),
    ];
    let routes: [(Method, &str); 6] = [
        (Method::GET, "/agents"),
        (Method::GET, "/agents/stats"),
        (Method::POST, "/auth/agent/validate_compliance"),
        (Method::GET, "/auth/agent/validation/v-1"),
        (Method::POST, "/tokens/refresh"),
        (Method::POST, "/security/report"),
    ];
    for (what, token) in &tokens {
        for (method, path) in &routes {
            let resp = env.call(method.clone(), path, Some(token)).await;
            assert_eq!(
                resp.status,
                401,
                "{what} on {method} {path}: {}",
                resp.text()
            );
            assert_eq!(
                resp.json()["type"],
                "https://arcp.0x001.tech/docs/problems/token-invalid",
                "{what} on {method} {path}"
            );
        }
    }
    env.assert_upstream_saw_nothing("tokens naming the upstream admin");
    assert_eq!(env.stub.logins(), 1);
    let resp = env
        .send(api_request(
            Method::GET,
            "/agents/stats",
            Some(&admin),
            Some(fp),
            &[],
            None,
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(env.stub.session_rejections(), 0);
}

/// §8.5 and §8.6: upstream keeps 5 sessions per user (the 6th login evicts), keys sessions by
/// the token's last 10 characters (same-second logins merge), and records every failed
/// login. Through the gateway, logins never reach upstream: seven sessions of one user at
/// once, logged in within the same second with the same fingerprint, are seven independent
/// sessions, and failed logins leave upstream untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q5_q6_many_same_second_logins_stay_apart_and_never_reach_upstream() {
    let env = Env::start().await;
    let fp = "fp-same-browser";
    let mut tokens = Vec::new();
    for _ in 0..7 {
        tokens.push(env.login(fp).await);
    }
    let bad = json!({"username": ADMIN_USER, "password": "wrong"}).to_string();
    for _ in 0..3 {
        let resp = env.send(login_request(&bad, Some(fp))).await;
        assert_eq!(resp.status, 401);
    }
    let tails: std::collections::HashSet<&str> =
        tokens.iter().map(|t| &t[t.len() - 10..]).collect();
    assert_eq!(tails.len(), 7, "every token has its own tail");
    // Logging one out (and setting a PIN on another) leaves the rest alone.
    let logout = env
        .send(api_request(
            Method::POST,
            "/auth/logout",
            Some(&tokens[0]),
            Some(fp),
            &[],
            None,
        ))
        .await;
    assert_eq!(logout.status, 200, "{}", logout.text());
    let pin = env
        .send(api_request(
            Method::POST,
            "/auth/set_pin",
            Some(&tokens[1]),
            Some(fp),
            &[],
            Some(&json!({"pin": "4827"})),
        ))
        .await;
    assert_eq!(pin.status, 200, "{}", pin.text());
    for (i, token) in tokens.iter().enumerate() {
        let resp = env
            .send(api_request(
                Method::GET,
                "/auth/pin_status",
                Some(token),
                Some(fp),
                &[],
                None,
            ))
            .await;
        match i {
            0 => assert_eq!(resp.status, 401, "logged out"),
            1 => assert_eq!(resp.json(), json!({"pin_set": true})),
            _ => assert_eq!(resp.json(), json!({"pin_set": false}), "session {i}"),
        }
    }
    assert_eq!(
        env.stub.login_attempts(),
        1,
        "only the broker's login reached upstream"
    );
    env.assert_upstream_saw_nothing("gateway-owned session endpoints");
}

/// §8.9: upstream's `/tokens/refresh` re-mints any valid token, admin tokens included. An
/// upstream-signed admin token is refused at the edge; a gateway token is refreshed by the
/// gateway; the brokered upstream token is never shown to a client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q9_refresh_never_mints_upstream_admin_tokens() {
    let env = Env::start().await;
    let upstream_admin = upstream_token(
        json!({"sub": ADMIN_USER, "agent_id": "user_ARCP", "role": "admin",
               "scopes": ["admin", "agent_management"]}),
        600,
    );
    let resp = env
        .call(Method::POST, "/tokens/refresh", Some(&upstream_admin))
        .await;
    let v = assert_refused(
        &resp,
        401,
        "token-invalid",
        "TOKEN_INVALID",
        "/tokens/refresh",
    );
    assert_eq!(
        v["detail"],
        "Admin tokens are issued by the gateway; log in at /auth/login"
    );
    let fp = "fp-q9";
    let token = env.login(fp).await;
    let resp = env
        .send(api_request(
            Method::POST,
            "/tokens/refresh",
            Some(&token),
            Some(fp),
            &[],
            None,
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let broker = env.stub.last_issued().unwrap().token;
    assert!(
        !resp.text().contains(&broker),
        "the upstream admin token was shown"
    );
    env.assert_upstream_saw_nothing("refresh of admin tokens");
}

/// §8.12: upstream resets an address's login failures on every successful temp-token
/// request (and keys on the peer address). The gateway owns the login: a temp-token request
/// in between does not reset its count, and upstream is told the client's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q12_a_temp_token_request_does_not_reset_login_failures() {
    let cfg = ArcpConfig {
        max_failures_per_ip: 3,
        ..ArcpConfig::default()
    };
    let env = Env::start_with(cfg, |_| {}).await;
    let ip = loopback(7, 1);
    let bad = json!({"username": ADMIN_USER, "password": "wrong"}).to_string();
    let temp_request = || {
        api_request(
            Method::POST,
            "/auth/agent/request_temp_token",
            None,
            None,
            &[],
            Some(&json!({"agent_id": "agent-q12", "agent_type": "testing", "agent_key": "k"})),
        )
    };
    for _ in 0..2 {
        let resp = env
            .gw
            .send_from(ip, login_request(&bad, Some("fp")), STEP)
            .await;
        assert_eq!(resp.status, 401);
        let resp = env.gw.send_from(ip, temp_request(), STEP).await;
        assert_eq!(resp.status, 200, "forwarded: {}", resp.text());
    }
    let resp = env
        .gw
        .send_from(ip, login_request(&bad, Some("fp")), STEP)
        .await;
    assert_eq!(resp.status, 401);
    let resp = env.gw.send_from(ip, admin_login("fp"), STEP).await;
    assert_problem(
        &resp,
        429,
        "rate-limit-exceeded",
        "RATE_LIMIT_EXCEEDED",
        "/auth/login",
    );
    let seen = env.stub.records_for("/auth/agent/request_temp_token");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.7.1"));
}

/// §8.14: upstream's idempotency cache (TPR mode) runs before authentication, so a replay of
/// a registration needs no token there. Through the gateway the registration routes demand a
/// verified token first: with none or a forged one, nothing reaches the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q14_idempotent_replays_need_a_verified_token() {
    let env = Env::start().await;
    let forged = hs256(
        None,
        &json!({"sub": "temp_agent-x", "agent_id": "agent-x", "role": "agent",
                "token_type": "temp", "aud": "arcp:validate", "temp_registration": true,
                "iat": now(), "exp": now() + 600}),
        b"attacker-guessed-secret-0123456789abcdef",
    );
    let body = json!({"agent_id": "agent-x", "name": "x"});
    for path in ["/agents/register", "/auth/agent/validate_compliance"] {
        for token in [None, Some(forged.as_str())] {
            let resp = env
                .send(api_request(
                    Method::POST,
                    path,
                    token,
                    None,
                    &[("Idempotency-Key", "replay-key-0001")],
                    Some(&body),
                ))
                .await;
            assert_eq!(resp.status, 401, "{path} {token:?}: {}", resp.text());
        }
    }
    env.assert_upstream_saw_nothing("idempotent replays without a token");
}

/// §8.17 and §8.18: upstream logs client fingerprints unmasked and PIN events, and trusts
/// client-certificate and forwarding headers from anyone. The admin's own fingerprint and PIN
/// never reach upstream (the brokered ones replace them), and the spoofable fields are
/// replaced by facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q17_q18_client_fingerprints_pins_and_certificate_headers_stay_at_the_edge() {
    let env = Env::start().await;
    let fp = "fp-secret-browser-7c21";
    let token = env.login(fp).await;
    let spoofed: [(&str, &str); 7] = [
        ("X-Client-Cert", "-----BEGIN CERTIFICATE-----forged"),
        ("X-SSL-Client-Cert", "forged"),
        ("X-Forwarded-Client-Cert", "Hash=forged"),
        ("X-Client-Certificate", "forged"),
        ("X-Forwarded-For", "10.9.9.9"),
        ("X-Real-IP", "10.9.9.9"),
        ("X-Session-Pin", "4827"),
    ];
    let resp = env
        .send(api_request(
            Method::GET,
            "/agents/stats",
            Some(&token),
            Some(fp),
            &spoofed,
            None,
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let agent = agent_token("agent-q18");
    let resp = env
        .send(api_request(
            Method::GET,
            "/agents",
            Some(&agent),
            None,
            &spoofed,
            None,
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let broker = env.stub.last_issued().unwrap();
    for r in env.stub.non_login_records() {
        for (name, _) in &spoofed[..4] {
            assert_eq!(r.header(name), None, "{name} reached {}", r.path);
        }
        assert_eq!(r.header("x-session-pin"), None, "{}", r.path);
        assert_eq!(r.header("x-real-ip"), None, "{}", r.path);
        assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"), "{}", r.path);
        assert!(
            !r.contains(fp),
            "the client's fingerprint reached {}",
            r.path
        );
        assert!(
            !r.contains("10.9.9.9"),
            "a spoofed address reached {}",
            r.path
        );
    }
    let admin = &env.stub.records_for("/agents/stats")[0];
    assert_eq!(
        admin.header("x-client-fingerprint"),
        Some(broker.fingerprint.as_str())
    );
}
