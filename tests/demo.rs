//! `scripts/demo.sh` as a user runs it, with a non-default `ADMIN_USERNAME`: the real ARCP
//! 2.1.2 server (started by the script through `scripts/arcp-upstream.sh`) must accept the
//! gateway's upstream login under that name, so an admin request through the gateway answers
//! 200 (before the fix every admin request answered 503).
//!
//! The script runs with this build's binary (`DEMO_GATEWAY_BIN`) on a free loopback port.
//! It keeps its state in `target/demo/` like a manual run, so do not run the demo by hand
//! while this test runs. SIGTERM ends the script, which stops the gateway and ARCP itself.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The first run installs ARCP into a venv (pip); later runs take seconds.
const START_LIMIT: Duration = Duration::from_secs(900);
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// The login the demo's embedded config ships (docs/design.md §7).
const USER_LOGIN: &str = r#"{"username":"ARCP","password":"ARCP"}"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The running script; SIGTERM (its own cleanup) on drop, SIGKILL if that does not end it.
struct Demo {
    child: Child,
}

impl Demo {
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the script to exit, polling its status under a deadline.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
            if self.wait_exit(STOP_LIMIT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(root().join("target/demo/ca.pem"))
        .args(args)
        .output()
        .expect("run curl")
}

#[test]
fn demo_with_a_non_default_admin_username_serves_admin_requests() {
    let username = format!("ops-{}", random_hex(4));
    let listen = format!("127.0.0.1:{}", free_port());
    let stderr_file = root().join("target/demo-test.stderr");
    std::fs::create_dir_all(root().join("target")).unwrap();
    let mut cmd = Command::new(root().join("scripts/demo.sh"));
    for var in [
        "ADMIN_PASSWORD",
        "JWT_SECRET",
        "ARCP_GATEWAY_SIGNING_SECRET",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        .env("ADMIN_USERNAME", &username)
        .env("GATEWAY_LISTEN", &listen)
        .env("DEMO_GATEWAY_BIN", env!("CARGO_BIN_EXE_arcp-gateway"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .expect("start scripts/demo.sh");
    let mut demo = Demo { child };

    // The script prints its instructions once the gateway answers; read them on a thread so
    // the wait is bounded.
    let stdout = demo.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let banner = format!("arcp-gateway is listening on https://{listen}");
    let deadline = Instant::now() + START_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(&banner) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "the demo did not come up ({e}); its stderr:\n{}",
                std::fs::read_to_string(&stderr_file).unwrap_or_default()
            ),
        }
    }

    let login = curl(&[
        "-X",
        "POST",
        &format!("https://{listen}/auth/login"),
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Client-Fingerprint: demo-test",
        "-d",
        USER_LOGIN,
    ]);
    let body: serde_json::Value = serde_json::from_slice(&login.stdout)
        .unwrap_or_else(|_| panic!("login answer: {}", String::from_utf8_lossy(&login.stdout)));
    let token = body["access_token"].as_str().expect("an access token");

    // An admin route: the gateway swaps in its upstream session, logged in as `username`.
    let agents = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://{listen}/agents/stats"),
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "X-Client-Fingerprint: demo-test",
    ]);
    let gateway_log =
        std::fs::read_to_string(root().join("target/demo/gateway.log")).unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&agents.stdout),
        "200",
        "GET /agents/stats through the demo gateway; gateway log:\n{gateway_log}"
    );

    demo.terminate();
    let status = demo
        .wait_exit(STOP_LIMIT)
        .expect("the demo stops on SIGTERM");
    assert_eq!(
        status.code(),
        Some(143),
        "the demo's exit status on SIGTERM"
    );
    let refused = std::net::TcpStream::connect(&listen).is_err();
    assert!(refused, "the demo left its gateway running on {listen}");
}
