//! The steps of the end-to-end suite where something goes wrong, in the order the test runs
//! them: 4 a fingerprint mismatch and an idle expiry, 5 an upstream restart, 6 a forged admin
//! token, 7 a login lockout per address. Each asserts content (bodies, problem fields,
//! upstream log lines), not only status codes.

use std::net::IpAddr;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::client::{problem, Client};
use crate::harness::{random_hex, report};
use crate::steps::{admin_agents, claims, curl, AdminSession};
use crate::World;

// ---- 4 ---------------------------------------------------------------------------------

/// Fingerprint mismatch (main gateway) and idle expiry (idle gateway), then a fresh login.
pub fn session_problems(world: &World, idle_secs: u64) {
    let gw = &world.main_http;
    let fingerprint = format!("e2e-fp-{}", random_hex(6));
    let token = gw.login_token(&fingerprint, None);
    let admin = AdminSession { token, fingerprint };
    admin_agents(gw, &admin);
    let stolen = gw
        .get("/agents")
        .admin(&admin.token, "another-machine")
        .send();
    let invalid = problem(&stolen, 401, "session-invalid", "/agents");
    assert_eq!(invalid["title"], "Session Validation Failed", "{invalid}");
    assert_eq!(
        invalid["detail"], "Session fingerprint mismatch - please re-authenticate",
        "{invalid}"
    );
    let sid = claims(&admin.token)["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    assert_eq!(
        invalid["session_id"],
        format!("sess_{}", &sid[..12]),
        "{invalid}"
    );
    assert_eq!(invalid["error_code"], "SESSION_INVALID", "{invalid}");

    let ig = &world.idle_http;
    let fingerprint = format!("e2e-idle-{}", random_hex(6));
    let token = ig.login_token(&fingerprint, None);
    let idle_admin = AdminSession { token, fingerprint };
    admin_agents(ig, &idle_admin);
    sleep(Duration::from_millis(idle_secs * 1000 + 1500));
    let late = ig
        .get("/agents")
        .admin(&idle_admin.token, &idle_admin.fingerprint)
        .send();
    let p = problem(&late, 401, "session-expired", "/agents");
    assert_eq!(p["title"], "Session Expired", "{p}");
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("Admin session has expired after") && detail.ends_with("of inactivity"),
        "{p}"
    );
    assert!(
        p["session_timeout"].is_u64(),
        "integer session_timeout: {p}"
    );
    assert_eq!(p["session_timeout"], idle_secs, "{p}");
    assert_eq!(p["error_code"], "SESSION_EXPIRED", "{p}");

    let token = ig.login_token(&idle_admin.fingerprint, None);
    assert_ne!(token, idle_admin.token, "a new token");
    let fresh = AdminSession {
        token,
        fingerprint: idle_admin.fingerprint,
    };
    let listed = admin_agents(ig, &fresh);
    report(&format!(
        "fingerprint mismatch -> 401 session-invalid ({}); {idle_secs} s idle -> 401 session-expired (session_timeout {}); fresh login -> GET /agents 200 {listed}",
        invalid["session_id"], p["session_timeout"]
    ));
}

// ---- 5 ---------------------------------------------------------------------------------

/// The upstream goes away and comes back on the same port; the client never logs in again.
pub fn upstream_restart(world: &mut World, admin: &AdminSession) {
    let stats = |gw: &Client| {
        gw.get("/agents/stats")
            .admin(&admin.token, &admin.fingerprint)
            .send()
    };
    let before = stats(&world.main_http).expect_json(200, "GET /agents/stats");
    assert!(before["registry_statistics"].is_object(), "{before}");

    world.upstream.stop();
    let down = stats(&world.main_http);
    assert!(
        matches!(down.status, 502 | 503),
        "admin call while upstream is down: {} {}",
        down.status,
        down.text()
    );
    let p = problem(&down, down.status, "endpoint-unreachable", "/agents/stats");

    let log_len = world.upstream.log().len();
    world.upstream.restart();
    let t = Instant::now();
    let after = stats(&world.main_http).expect_json(200, "same token after the restart");
    let took = t.elapsed();
    assert!(after["registry_statistics"].is_object(), "{after}");
    let since_restart = world.upstream.log()[log_len..].to_owned();
    assert!(
        since_restart.contains("\"POST /auth/login HTTP/1.1\" 200"),
        "the gateway's broker logged in to the restarted upstream; its log since the restart:\n{since_restart}"
    );
    report(&format!(
        "upstream down -> {} {}; restarted on port {} -> same token 200 in {:.2} s (broker re-login)",
        down.status,
        p["type"],
        world.upstream.port,
        took.as_secs_f64()
    ));
}

// ---- 6 ---------------------------------------------------------------------------------

/// Forged admin tokens for the upstream admin never reach upstream, so its sessions survive.
pub fn forged_token(world: &World, victim: &AdminSession, upstream_admin: &str) {
    let gw = &world.main_http;
    let logins_before = upstream_logins(&world.upstream.log());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let wrong_key = jsonwebtoken::EncodingKey::from_secret(b"attacker-guessed-secret-0123456789");
    let forge = |kid: Option<&str>, claims: Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &wrong_key).expect("sign the forged token")
    };
    let upstream_style = forge(
        None,
        json!({"sub": upstream_admin, "role": "admin", "agent_id": upstream_admin,
               "scopes": ["admin"], "iat": now, "exp": now + 3600}),
    );
    let gateway_style = forge(
        Some("main"), // the kid of the gateway's key (real_arcp_gateway_yaml)
        json!({"iss": "arcp-gateway", "sub": upstream_admin, "sid": random_hex(16),
               "role": "admin", "agent_id": format!("user_{upstream_admin}"),
               "scopes": ["admin"], "iat": now, "exp": now + 3600}),
    );
    let marker = format!("e2e-forged-{}", random_hex(6));
    for (kind, token) in [("no kid", &upstream_style), ("gateway kid", &gateway_style)] {
        for path in ["/agents/stats", "/agents"] {
            let response = gw
                .get(&format!("{path}?{marker}=1"))
                .bearer(token)
                .fingerprint("attacker-laptop")
                .send();
            let p = problem(&response, 401, "token-invalid", path);
            assert_eq!(
                p["detail"], "Invalid or expired token",
                "{kind} {path}: {p}"
            );
        }
    }

    let victim_marker = format!("e2e-victim-{}", random_hex(6));
    let stats = gw
        .get(&format!("/agents/stats?{victim_marker}=1"))
        .admin(&victim.token, &victim.fingerprint)
        .send()
        .expect_json(200, "the logged-in client after the attack");
    assert!(stats["registry_statistics"].is_object(), "{stats}");
    let line = world
        .upstream
        .wait_for_log_line(&victim_marker, Duration::from_secs(10));
    assert!(line.contains("\" 200"), "upstream answered 200: {line}");
    let log = world.upstream.log();
    assert!(
        !log.contains(&marker),
        "a forged request reached upstream: {}",
        log.lines()
            .filter(|l| l.contains(&marker))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        upstream_logins(&log),
        logins_before,
        "the gateway had to log in upstream again: upstream's admin sessions were wiped"
    );
    report(&format!(
        "4 forged requests -> 401 token-invalid at the gateway, none in upstream's log; victim 200 on the same upstream session ({logins_before} upstream logins before and after)"
    ));
}

// ---- 7 ---------------------------------------------------------------------------------

/// Wrong passwords lock 127.0.0.2; 127.0.0.3 still logs in, and upstream logs 127.0.0.3.
pub fn lockout_and_forwarded_for(world: &World, max_failures: u32) {
    let login_url = world.main.url("/auth/login");
    let attempt = |name: &str, password: &str| {
        let body = json!({"username": "ARCP", "password": password}).to_string();
        curl(
            world,
            name,
            &[
                "--interface",
                "127.0.0.2",
                "-X",
                "POST",
                &login_url,
                "-H",
                "Content-Type: application/json",
                "-H",
                "X-Client-Fingerprint: e2e-attacker",
                "-d",
                &body,
            ],
        )
    };
    for i in 1..=max_failures {
        let r = attempt(&format!("curl-wrong-{i}"), "wrong-password");
        assert_eq!(r.status, 401, "wrong password #{i}: {}", r.body);
        assert_eq!(
            r.json()["type"],
            "https://arcp.0x001.tech/docs/problems/authentication-failed"
        );
    }
    let locked = attempt("curl-wrong-locked", "wrong-password");
    assert_eq!(
        locked.status, 429,
        "after {max_failures} failures: {}",
        locked.body
    );
    let body = locked.json();
    assert_eq!(
        body["type"], "https://arcp.0x001.tech/docs/problems/rate-limit-exceeded",
        "{body}"
    );
    let retry_after: u64 = locked
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!(retry_after > 0);
    let right = attempt("curl-right-locked", "ARCP");
    assert_eq!(
        right.status, 429,
        "the locked address, right password: {}",
        right.body
    );

    let gw = &world.main_http;
    let other: IpAddr = [127, 0, 0, 3].into();
    let fingerprint = format!("e2e-other-{}", random_hex(6));
    let token = gw.login_token(&fingerprint, Some(other));
    let marker = format!("e2e-xff-{}", random_hex(6));
    let path = format!("/agents?{marker}=1");
    let listed = gw
        .get(&path)
        .admin(&token, &fingerprint)
        .header("x-forwarded-for", "10.6.6.6")
        .from(other)
        .send()
        .expect_json(200, "admin call from 127.0.0.3");
    assert!(listed.is_array(), "{listed}");
    let line = world
        .upstream
        .wait_for_log_line(&marker, Duration::from_secs(10));
    assert!(
        line.contains(&format!("127.0.0.3:0 - \"GET {path} HTTP/1.1\" 200")),
        "upstream logs the real client address: {line}"
    );
    assert!(
        !line.contains("10.6.6.6"),
        "a spoofed X-Forwarded-For passed: {line}"
    );
    report(&format!(
        "127.0.0.2: {max_failures} x 401 then 429 (Retry-After {retry_after}); 127.0.0.3: login 200; upstream log: {}",
        line.trim()
    ));
}

// ---- helpers ---------------------------------------------------------------------------

fn upstream_logins(log: &str) -> usize {
    log.matches("\"POST /auth/login HTTP/1.1\"").count()
}
