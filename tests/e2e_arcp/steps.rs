//! The steps of the end-to-end suite that use the system as intended, in the order the test
//! runs them (1–3: the seeds' curl, the real Python client, an agent's life), and the helpers
//! every step shares (curl, JWT claims, the admin's agent list). Steps 4–7, where something
//! goes wrong, are [`crate::steps_failures`]. Each asserts content (bodies, problem fields,
//! upstream log lines), not only status codes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

// ---- helpers ---------------------------------------------------------------------------

pub struct Curl {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Curl {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("curl body is not JSON ({e}): {}", self.body))
    }

    /// A header of the last response head curl dumped.
    pub fn header(&self, name: &str) -> Option<String> {
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
pub fn curl(world: &World, name: &str, args: &[&str]) -> Curl {
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
pub fn claims(token: &str) -> Value {
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

pub fn admin_agents(gw: &Client, admin: &AdminSession) -> Value {
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
