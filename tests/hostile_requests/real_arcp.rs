//! The quirks the stub cannot model, against the real, unmodified ARCP 2.1.2 server behind the
//! real gateway binary (the end-to-end harness of tests/e2e_arcp.rs): genuine temp tokens,
//! upstream's fixed-offset `Authorization` slicing, and its unhandled 500s that close the
//! connection. One test, because starting the server costs seconds.

use std::time::Duration;

use serde_json::json;

use super::e2e_client::{problem, Client, Response};
use super::e2e_harness::{random_hex, report, Env, Gateway, RunDir, Upstream};

const UPSTREAM_ADMIN: &str = "admin";
const AGENT_KEY: &str = "hostile-agent-key-0001";

fn upstream_logins(log: &str) -> usize {
    log.matches("\"POST /auth/login HTTP/1.1\"").count()
}

/// A raw `Authorization` value on a request to the real upstream through the gateway.
fn with_authorization(gw: &Client, method: http::Method, path: &str, value: &str) -> Response {
    gw.call(method, path).header("authorization", value).send()
}

#[test]
fn real_arcp_quirks_are_neutralised_through_the_gateway() {
    let mut run = RunDir::create();
    let admin_password = format!("hostile-admin-{}", random_hex(12));
    let jwt_secret = random_hex(32);
    let upstream_env: Env = vec![
        ("ADMIN_USERNAME".into(), UPSTREAM_ADMIN.into()),
        ("ADMIN_PASSWORD".into(), admin_password.clone()),
        ("JWT_SECRET".into(), jwt_secret.clone()),
        ("JWT_ALGORITHM".into(), "HS256".into()),
        ("AGENT_KEYS".into(), AGENT_KEY.into()),
        ("ENVIRONMENT".into(), "development".into()),
    ];
    let upstream = Upstream::start(run.path.join("arcp"), upstream_env);
    let gateway_env: Env = vec![
        ("HOSTILE_ARCP_ADMIN_PASSWORD".into(), admin_password),
        ("HOSTILE_ARCP_JWT_SECRET".into(), jwt_secret),
        ("HOSTILE_GATEWAY_SIGNING_SECRET".into(), random_hex(48)),
    ];
    let hash = arcp_gateway::auth::credentials::hash_password("ARCP").unwrap();
    let ca = run.path.join("ca.pem");
    let yaml = super::e2e_harness::real_arcp_gateway_yaml(
        "tests/hostile_requests/real_arcp.rs",
        upstream.port,
        &ca,
        &hash,
        "HOSTILE",
        "",
        "",
    );
    let gateway = Gateway::start(&run.path, "gateway", &yaml, ca, &gateway_env);
    let gw = Client::new(gateway.addr, &gateway.ca_file);
    upstream.wait_for_log_line("\"POST /auth/login HTTP/1.1\" 200", Duration::from_secs(20));
    let logins = upstream_logins(&upstream.log());

    // §8.9, §8.10: a genuine temp token (for any agent_id, to anyone with an agent key) is
    // accepted by registration only; it cannot act as an agent or be refreshed into one.
    let agent_id = format!("hostile-{}", random_hex(5));
    let temp = gw
        .post("/auth/agent/request_temp_token")
        .json(&json!({"agent_id": agent_id, "agent_type": "testing", "agent_key": AGENT_KEY}))
        .send()
        .expect_json(200, "request_temp_token");
    let temp = temp["temp_token"].as_str().unwrap().to_owned();
    let marker = format!("hostile-{}", random_hex(6));
    for (method, path) in [
        (http::Method::GET, "/agents".to_owned()),
        (http::Method::POST, "/tokens/refresh".to_owned()),
        (http::Method::POST, format!("/agents/{agent_id}/heartbeat")),
        (http::Method::DELETE, "/agents/someone-else".to_owned()),
    ] {
        let resp = gw
            .call(method.clone(), &format!("{path}?{marker}=1"))
            .bearer(&temp)
            .send();
        let p = problem(&resp, 403, "token-invalid", &path);
        assert_eq!(
            p["detail"], "Registration tokens are only accepted by the registration endpoints",
            "{method} {path}"
        );
    }
    let registered = gw
        .post("/agents/register")
        .bearer(&temp)
        .json(&json!({
            "agent_id": agent_id, "name": "Hostile Suite Agent", "agent_type": "testing",
            "endpoint": "http://127.0.0.1:9/hostile", "capabilities": ["testing"],
            "context_brief": "Registered by tests/hostile_requests/real_arcp.rs",
            "version": "1.0.0", "owner": "arcp-gateway-tests",
            "public_key": format!("hostile-public-key-{}", "C".repeat(40)),
            "communication_mode": "remote", "metadata": {"purpose": "hostile"},
        }))
        .send()
        .expect_json(200, "register with the temp token");
    let agent = registered["access_token"].as_str().unwrap().to_owned();

    // §8.1: upstream slices `Authorization[7:]`; these spellings would reach it as a broken
    // token. The gateway rebuilds `Bearer <token>` and upstream accepts it.
    for value in [
        format!("bearer   {agent}"),
        format!("BEARER \t{agent}"),
        format!("Bearer {agent}  "),
    ] {
        let resp = with_authorization(
            &gw,
            http::Method::POST,
            &format!("/agents/{agent_id}/heartbeat"),
            &value,
        );
        let beat = resp.expect_json(200, &format!("heartbeat with {:?}", &value[..9]));
        assert_eq!(beat["status"], "success", "{beat}");
    }

    // §8.11, §8.19: with TPR off, validate_compliance raises (a 500, then upstream drops the
    // connection). The gateway answers it; the next safe requests (GET), which may take the
    // dropped pooled connection, are sent again on another and succeed. (Any other request
    // that takes it gets 502: upstream may have acted on it.)
    let resp = gw
        .post("/auth/agent/validate_compliance")
        .bearer(&temp)
        .json(&json!({"agent_id": agent_id, "agent_type": "testing",
                      "endpoint": "http://127.0.0.1:9/hostile", "capabilities": ["testing"]}))
        .send();
    assert!(resp.status >= 500, "{} {}", resp.status, resp.text());
    report(&format!(
        "validate_compliance with TPR off: gateway answered {} {}",
        resp.status,
        resp.text()
    ));
    for i in 0..5 {
        let agent_info = gw
            .get(&format!("/agents/{agent_id}"))
            .bearer(&agent)
            .send()
            .expect_json(200, &format!("GET {i} after the upstream 500"));
        assert_eq!(agent_info["agent_id"], agent_id.as_str(), "{agent_info}");
    }
    gw.post(&format!("/agents/{agent_id}/heartbeat"))
        .bearer(&agent)
        .send()
        .expect_json(200, "heartbeat after the upstream 500");

    // Nothing refused reached upstream, and no admin session was wiped on the way.
    let log = upstream.log();
    assert!(
        !log.contains(&marker),
        "a refused request reached upstream:\n{}",
        log.lines()
            .filter(|l| l.contains(&marker))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        upstream_logins(&log),
        logins,
        "the gateway had to log in again"
    );
    drop(gateway);
    drop(upstream);
    run.passed();
}
