//! The steps of the end-to-end suite, in the order the test runs them. Each asserts content
//! (bodies, problem fields, upstream log lines), not only status codes.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};

use crate::client::{problem, Client};
use crate::harness::{random_hex, repo_root, report, run_with_timeout};
use crate::World;

/// An admin session of the main gateway that later steps keep using.
pub struct AdminSession {
    pub token: String,
    pub fingerprint: String,
}

// ---- 1 ---------------------------------------------------------------------------------

/// The seed's two curl commands, verbatim, plus `--cacert` and output options.
pub fn curl_seed(world: &World) {
    let base = world.main.url("");
    let fp = format!("e2e-curl-{}", random_hex(6));
    let login_url = format!("{base}/auth/login");
    let fp_header = format!("X-Client-Fingerprint: {fp}");
    let login = curl(
        world,
        "curl-login",
        &[
            "-X",
            "POST",
            &login_url,
            "-H",
            "Content-Type: application/json",
            "-H",
            &fp_header,
            "-d",
            r#"{"username":"ARCP","password":"ARCP"}"#,
        ],
    );
    assert_eq!(login.status, 200, "curl login: {}", login.body);
    let body = login.json();
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert_eq!(body["token_type"], "bearer", "{body}");
    assert_eq!(body["agent_id"], "user_ARCP", "{body}");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{body}");

    let agents_url = format!("{base}/agents");
    let auth_header = format!("Authorization: Bearer {token}");
    let agents = curl(
        world,
        "curl-agents",
        &[&agents_url, "-H", &auth_header, "-H", &fp_header],
    );
    assert_eq!(agents.status, 200, "curl GET /agents: {}", agents.body);
    let list = agents.json();
    assert!(list.is_array(), "GET /agents returns a JSON array: {list}");
    // Answered by ARCP itself (uvicorn), through the gateway.
    assert_eq!(agents.header("server").as_deref(), Some("uvicorn"));
    assert_eq!(
        agents.header("content-type").as_deref(),
        Some("application/json")
    );
    report(&format!(
        "curl: login -> token ({} chars); GET /agents -> 200 {} from upstream",
        token.len(),
        list
    ));
}

// ---- 2 ---------------------------------------------------------------------------------

/// Steps of arcp_client_flow.py that must have run and passed (not skipped).
const REQUIRED_FLOW_STEPS: [&str; 22] = [
    "health_check",
    "list_agents_without_login",
    "login_admin",
    "list_agents",
    "get_system_stats",
    "get_system_metrics",
    "admin_health_check",
    "validate_token",
    "request_temp_token",
    "register_agent",
    "update_heartbeat",
    "get_agent_admin",
    "list_agents_filtered",
    "discover_agents_finds_agent",
    "request_agent_connection",
    "refresh_authentication_agent",
    "set_pin",
    "unregister_agent_with_pin",
    "list_agents_after_unregister",
    "login_admin_wrong_password",
    // The relayed sockets: the agent socket's greeting (sent by the gateway), its token and
    // ARCP's answer; the public socket's first message.
    "websocket_agent_raw_wss",
    "websocket_public_raw_wss",
];

/// Skipped by design: none (the raw wss steps check the relayed agent and public sockets).
const SKIPPED_FLOW_STEPS: [&str; 0] = [];

/// The real ARCPClient through the main gateway.
pub fn python_flow(world: &World, agent_key: &str) {
    let base = world.main.url("");
    let mut cmd = Command::new(&world.python);
    cmd.current_dir(repo_root())
        .arg("tests/e2e/arcp_client_flow.py")
        .args(["--base-url", &base, "--ca-file"])
        .arg(&world.main.ca_file)
        .args(["--username", "ARCP", "--password", "ARCP"])
        .args(["--agent-key", agent_key]);
    for step in SKIPPED_FLOW_STEPS {
        cmd.args(["--skip", step]);
    }
    let done = run_with_timeout(
        &mut cmd,
        &world.dir,
        "arcp_client_flow",
        Duration::from_secs(300),
    );
    let lines = json_lines(&done.stdout);
    let failed: Vec<&Value> = lines.iter().filter(|l| l["ok"] != true).collect();
    assert!(
        done.status.success() && failed.is_empty(),
        "arcp_client_flow.py exited {}; failed steps: {failed:#?}\n--- stderr\n{}",
        done.status,
        done.stderr
    );
    let step = |name: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["step"] == name)
            .unwrap_or_else(|| panic!("step {name} did not run; output:\n{}", done.stdout))
    };
    let mut skipped: Vec<&str> = lines
        .iter()
        .filter(|l| l["detail"] == "skipped (--skip)")
        .filter_map(|l| l["step"].as_str())
        .collect();
    skipped.sort_unstable();
    assert_eq!(
        skipped, SKIPPED_FLOW_STEPS,
        "only the raw wss steps are skipped"
    );
    for name in REQUIRED_FLOW_STEPS {
        assert!(
            step(name)["detail"].get("result").is_some()
                || step(name)["detail"]["raised"].is_string(),
            "step {name} ran: {}",
            step(name)
        );
    }
    assert_eq!(
        step("login_admin")["detail"]["result"]["agent_id"],
        "user_ARCP"
    );
    let unregistered = &step("unregister_agent_with_pin")["detail"]["result"];
    assert_eq!(
        unregistered["unregistered_by"],
        format!("admin ({})", crate::UPSTREAM_ADMIN),
        "the admin unregistered the agent through the gateway's swapped credentials"
    );
    report(&format!(
        "ARCPClient flow: {} steps passed, {} skipped ({})",
        lines.len() - skipped.len(),
        skipped.len(),
        skipped.join(", ")
    ));
}

/// A session manager loop through the idle gateway: idle expiry, 401, new login, carry on.
pub fn session_manager(world: &World, idle_secs: u64) {
    let idle_sleep = format!("{:.1}", idle_secs as f64 + 1.5);
    let mut cmd = Command::new(&world.python);
    cmd.current_dir(repo_root())
        .arg("tests/e2e/session_manager_loop.py")
        .args(["--base-url", &world.idle.url(""), "--ca-file"])
        .arg(&world.idle.ca_file)
        .args(["--username", "ARCP", "--password", "ARCP"])
        .args(["--iterations", "6", "--sleep-after", "2"])
        .args(["--idle-sleep", &idle_sleep]);
    let done = run_with_timeout(
        &mut cmd,
        &world.dir,
        "session_manager_loop",
        Duration::from_secs(120),
    )
    .success("session_manager_loop.py");
    let events = json_lines(&done.stdout);
    let position = |event: &str| events.iter().position(|e| e["event"] == event);
    let all =
        |event: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == event).collect() };
    let expired = all("expired");
    assert_eq!(expired.len(), 1, "one idle expiry: {}", done.stdout);
    assert_eq!(expired[0]["status"], 401, "{}", expired[0]);
    assert_eq!(
        expired[0]["type"], "https://arcp.0x001.tech/docs/problems/session-expired",
        "{}",
        expired[0]
    );
    let recovered = all("recovered");
    assert_eq!(recovered.len(), 1, "one recovery: {}", done.stdout);
    assert_eq!(recovered[0]["relogins"], 1);
    let finished = all("done");
    assert_eq!(finished.len(), 1, "{}", done.stdout);
    assert_eq!(finished[0]["iterations"], 6);
    assert!(
        position("idle") < position("expired") && position("expired") < position("recovered"),
        "idle, then expired, then recovered: {}",
        done.stdout
    );
    report(&format!(
        "session manager: {} -> re-login -> {}",
        expired[0]["type"], recovered[0]
    ));
}

// ---- 3 ---------------------------------------------------------------------------------

/// An agent registers with a temp token and heartbeats; the admin sees it, sets a PIN and
/// unregisters it. Returns the admin session for later steps.
pub fn agent_flow(world: &World, agent_key: &str) -> AdminSession {
    let gw = &world.main_http;
    let agent_id = format!("e2e-rust-{}", random_hex(5));

    let temp = gw
        .post("/auth/agent/request_temp_token")
        .json(&json!({"agent_id": agent_id, "agent_type": "testing", "agent_key": agent_key}))
        .send()
        .expect_json(200, "request_temp_token");
    let temp_token = temp["temp_token"].as_str().expect("temp_token").to_owned();
    assert_eq!(temp["token_type"], "bearer", "{temp}");
    assert_eq!(claims(&temp_token)["token_type"], "temp", "a temp token");

    let registered = gw
        .post("/agents/register")
        .bearer(&temp_token)
        .json(&registration(&agent_id))
        .send()
        .expect_json(200, "register with the temp token");
    assert_eq!(registered["status"], "success", "{registered}");
    assert_eq!(registered["agent_id"], agent_id.as_str(), "{registered}");
    let agent_token = registered["access_token"]
        .as_str()
        .expect("agent access_token")
        .to_owned();

    let beat = gw
        .post(&format!("/agents/{agent_id}/heartbeat"))
        .bearer(&agent_token)
        .send()
        .expect_json(200, "heartbeat with the agent token");
    assert_eq!(beat["agent_id"], agent_id.as_str(), "{beat}");
    assert_eq!(beat["status"], "success", "{beat}");

    let fingerprint = format!("e2e-admin-{}", random_hex(6));
    let token = gw.login_token(&fingerprint, None);
    let admin = AdminSession { token, fingerprint };
    let listed = admin_agents(gw, &admin);
    let entry =
        find_agent(&listed, &agent_id).unwrap_or_else(|| panic!("{agent_id} not in {listed}"));
    assert_eq!(entry["name"], "E2E Rust Agent", "{entry}");
    assert_eq!(entry["agent_type"], "testing", "{entry}");
    assert_eq!(entry["status"], "alive", "{entry}");
    let discovered = public_discover(gw);
    assert!(
        find_agent(&discovered, &agent_id).is_some(),
        "{agent_id} not discovered: {discovered}"
    );

    let path = format!("/agents/{agent_id}");
    let refused = gw
        .delete(&path)
        .admin(&admin.token, &admin.fingerprint)
        .send();
    problem(&refused, 400, "pin-required", &path);
    let pin = format!("e2e-{}", random_hex(4));
    let set = gw
        .post("/auth/set_pin")
        .admin(&admin.token, &admin.fingerprint)
        .json(&json!({"pin": pin}))
        .send()
        .expect_json(200, "set_pin");
    assert_eq!(set["status"], "success", "{set}");
    let status = gw
        .get("/auth/pin_status")
        .admin(&admin.token, &admin.fingerprint)
        .send()
        .expect_json(200, "pin_status");
    assert_eq!(status["pin_set"], true, "{status}");
    let wrong = gw
        .delete(&path)
        .admin(&admin.token, &admin.fingerprint)
        .header("x-session-pin", "not-the-pin")
        .send();
    problem(&wrong, 401, "pin-incorrect", &path);
    let deleted = gw
        .delete(&path)
        .admin(&admin.token, &admin.fingerprint)
        .header("x-session-pin", &pin)
        .send()
        .expect_json(200, "DELETE with X-Session-Pin");
    assert_eq!(deleted["status"], "success", "{deleted}");
    assert_eq!(
        deleted["unregistered_by"],
        format!("admin ({})", crate::UPSTREAM_ADMIN),
        "{deleted}"
    );

    let listed = admin_agents(gw, &admin);
    assert!(
        find_agent(&listed, &agent_id).is_none(),
        "still listed: {listed}"
    );
    let discovered = public_discover(gw);
    assert!(
        find_agent(&discovered, &agent_id).is_none(),
        "still discovered: {discovered}"
    );
    let gone = gw.get(&path).admin(&admin.token, &admin.fingerprint).send();
    assert_eq!(
        gone.status,
        404,
        "GET {path} after unregistering: {}",
        gone.text()
    );
    report(&format!(
        "agent {agent_id}: registered, heartbeat, listed and discovered, PIN-unregistered, gone"
    ));
    admin
}

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
        Some("e2e"),
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

struct Curl {
    status: u16,
    headers: String,
    body: String,
}

impl Curl {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("curl body is not JSON ({e}): {}", self.body))
    }

    /// A header of the last response head curl dumped.
    fn header(&self, name: &str) -> Option<String> {
        let last = self
            .headers
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()?;
        last.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Runs the real curl with `args` (as a user would type them) plus `--cacert` for the main
/// gateway's CA and options that only direct its output.
fn curl(world: &World, name: &str, args: &[&str]) -> Curl {
    let body = world.dir.join(format!("{name}.body"));
    let headers = world.dir.join(format!("{name}.headers"));
    let mut cmd = Command::new("curl");
    cmd.args(args)
        .arg("--cacert")
        .arg(&world.main.ca_file)
        .arg("-sS")
        .arg("-o")
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(["-w", "%{http_code}"])
        .env("NO_PROXY", "*")
        .env("no_proxy", "*");
    let done = run_with_timeout(&mut cmd, &world.dir, name, Duration::from_secs(60))
        .success(&format!("curl ({name})"));
    Curl {
        status: done
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl ({name}) printed no status: {:?}", done.stdout)),
        headers: read(&headers),
        body: read(&body),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// JSON objects printed one per line (other lines ignored).
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The claims of a JWT (not verified: the test only reads its own tokens).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn registration(agent_id: &str) -> Value {
    json!({
        "agent_id": agent_id,
        "name": "E2E Rust Agent",
        "agent_type": "testing",
        "endpoint": "http://127.0.0.1:9/e2e-rust-agent",
        "capabilities": ["e2e", "testing"],
        "context_brief": "Agent registered by tests/e2e_arcp.rs through the gateway",
        "version": "1.0.0",
        "owner": "arcp-gateway-e2e",
        "public_key": format!("e2e-public-key-{}", "B".repeat(40)),
        "communication_mode": "remote",
        "metadata": {"purpose": "e2e"},
    })
}

fn admin_agents(gw: &Client, admin: &AdminSession) -> Value {
    let listed = gw
        .get("/agents")
        .admin(&admin.token, &admin.fingerprint)
        .send()
        .expect_json(200, "admin GET /agents");
    assert!(listed.is_array(), "{listed}");
    listed
}

fn public_discover(gw: &Client) -> Value {
    let listed = gw
        .get("/public/discover?agent_type=testing")
        .send()
        .expect_json(200, "GET /public/discover");
    assert!(listed.is_array(), "{listed}");
    listed
}

fn find_agent<'a>(list: &'a Value, agent_id: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|a| a["agent_id"] == agent_id)
}

fn upstream_logins(log: &str) -> usize {
    log.matches("\"POST /auth/login HTTP/1.1\"").count()
}
