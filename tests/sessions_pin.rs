//! Session PINs, owned by the gateway (docs/design.md §5 `require_pin`, §7 endpoints): set, verified and enforced on the
//! `require_pin` routes with upstream's problem shapes; a PIN belongs to one session and never
//! reaches upstream.
//!
//! The test runs the real gateway over TLS on `127.0.0.1:0` in front of the ARCP stub
//! ([`common::session_env::Env`]).

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every test binary uses every re-export of the shared harness.
#[allow(unused_imports)]
mod common;

use http::Method;
use serde_json::{json, Value};

use common::arcp_profile::*;
use common::jwt::*;
use common::session_env::*;
use common::{assert_problem, json_key_order};

/// The test PIN: '~' and '!' never occur in a JWT, a hex id or a base64 value, so finding it
/// in what upstream received or in a log line cannot be a coincidence.
const PIN: &str = "48~27!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_set_verified_and_enforced_by_the_gateway() {
    let env = Env::start(ArcpConfig::default()).await;
    let fp = "fp-pin";
    let token = env.login(fp).await;
    let pin_body = |pin: &str| json!({ "pin": pin });
    let post = |path: &'static str, body: Value| {
        env.send(api_request(
            Method::POST,
            path,
            Some(&token),
            Some(fp),
            &[],
            Some(&body),
        ))
    };

    let resp = env.get("/auth/pin_status", &token, fp).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"pin_set": false}));
    let resp = env.get("/auth/session_status", &token, fp).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut keys = json_key_order(&resp.text());
    keys.sort();
    assert_eq!(
        keys,
        [
            "agent_id",
            "expires",
            "is_admin",
            "pin_set",
            "role",
            "session_exists",
            "user_id",
            "valid"
        ]
    );
    let status = resp.json();
    assert_eq!(status["valid"], true);
    assert_eq!(status["user_id"], "ARCP");
    assert_eq!(status["role"], "admin");
    assert_eq!(status["agent_id"], "user_ARCP");
    assert_eq!(status["expires"], claims_of(&token)["exp"]);
    assert_eq!(status["is_admin"], true);
    assert_eq!(status["session_exists"], true);
    assert_eq!(status["pin_set"], false);

    // Before a PIN exists.
    let resp = post("/auth/verify_pin", pin_body(PIN)).await;
    let v = assert_problem(&resp, 400, "pin-not-set", "PIN_NOT_SET", "/auth/verify_pin");
    assert_eq!(v["detail"], "PIN not set for session");
    let resp = env
        .call(Method::DELETE, "/agents/agent-42", Some(&token), Some(fp))
        .await;
    assert_problem(
        &resp,
        400,
        "pin-required",
        "PIN_REQUIRED",
        "/agents/agent-42",
    );
    let resp = env
        .send(api_request(
            Method::DELETE,
            "/agents/agent-42",
            Some(&token),
            Some(fp),
            &[("X-Session-Pin", PIN)],
            None,
        ))
        .await;
    assert_problem(&resp, 400, "pin-not-set", "PIN_NOT_SET", "/agents/agent-42");

    // Setting it.
    let resp = post("/auth/set_pin", pin_body("1234")).await;
    assert_problem(
        &resp,
        422,
        "validation-failed",
        "VALIDATION_FAILED",
        "/auth/set_pin",
    );
    let resp = post("/auth/set_pin", pin_body(PIN)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"status": "success", "message": "PIN set for session"})
    );
    let resp = post("/auth/set_pin", pin_body(PIN)).await;
    let v = assert_problem(
        &resp,
        400,
        "pin-already-set",
        "PIN_ALREADY_SET",
        "/auth/set_pin",
    );
    assert_eq!(v["detail"], "PIN already set for this session");
    let resp = env.get("/auth/pin_status", &token, fp).await;
    assert_eq!(resp.json(), json!({"pin_set": true}));
    assert_eq!(
        env.get("/auth/session_status", &token, fp).await.json()["pin_set"],
        true
    );

    // Verifying it.
    let resp = post("/auth/verify_pin", pin_body("9482")).await;
    let v = assert_problem(
        &resp,
        401,
        "pin-incorrect",
        "PIN_INCORRECT",
        "/auth/verify_pin",
    );
    assert_eq!(v["detail"], "Incorrect PIN");
    assert_challenge(&resp);
    let resp = post("/auth/verify_pin", pin_body(PIN)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"status": "success", "message": "PIN verified"})
    );

    // Enforced on the require_pin routes.
    let mint = json!({"user_id": "bot-1", "agent_id": "agent-42", "scopes": [], "role": "agent"});
    let ui = json!({"ui": {"theme": "dark"}});
    let routes: [(Method, &str, Option<&Value>); 3] = [
        (Method::DELETE, "/agents/agent-42", None),
        (Method::POST, "/tokens/mint", Some(&mint)),
        (Method::POST, "/dashboard/config", Some(&ui)),
    ];
    for (method, path, body) in routes {
        let with_pin = |pin: Option<&str>| {
            let extra: Vec<(&str, &str)> = pin.map(|p| ("X-Session-Pin", p)).into_iter().collect();
            api_request(method.clone(), path, Some(&token), Some(fp), &extra, body)
        };
        let resp = env.send(with_pin(None)).await;
        let v = assert_problem(&resp, 400, "pin-required", "PIN_REQUIRED", path);
        assert_eq!(
            v["detail"],
            "X-Session-Pin header is required for this operation"
        );
        let resp = env.send(with_pin(Some("0000-wrong"))).await;
        assert_problem(&resp, 401, "pin-incorrect", "PIN_INCORRECT", path);
        assert_challenge(&resp);
        assert!(
            env.stub.records_for(path).is_empty(),
            "{method} {path} reached the upstream without the right PIN"
        );
        let resp = env.send(with_pin(Some(PIN))).await;
        assert_eq!(resp.status, 200, "{method} {path}: {}", resp.text());
        assert_eq!(resp.json()["auth"], "admin");
        let seen = env.stub.records_for(path);
        assert_eq!(seen.len(), 1, "{method} {path}");
        assert_eq!(seen[0].method, method);
        assert!(
            seen[0].header("x-session-pin").is_none(),
            "X-Session-Pin is not forwarded"
        );
        if let Some(b) = body {
            assert_eq!(seen[0].body, b.to_string().as_bytes());
        }
    }

    // The PIN belongs to the session, not to the user.
    let other = env.login("fp-pin-2").await;
    assert_eq!(
        env.get("/auth/pin_status", &other, "fp-pin-2").await.json(),
        json!({"pin_set": false})
    );
    for path in [
        "/auth/set_pin",
        "/auth/verify_pin",
        "/auth/pin_status",
        "/auth/session_status",
    ] {
        assert!(
            env.stub.records_for(path).is_empty(),
            "{path} is gateway-owned"
        );
    }
    env.assert_upstream_never_saw(PIN, "PIN");
}
