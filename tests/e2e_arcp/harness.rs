//! Processes of the end-to-end suite and their guards: the real ARCP server
//! (`scripts/arcp-upstream.sh`), the real `arcp-gateway` binary, and one-shot commands (curl,
//! Python) run under a deadline. Every guard stops its process on drop, so a failing step
//! (a panic) never leaves a server behind.
//!
//! Progress and per-step timings go straight to the process's stderr (not through the test
//! harness's output capture), so `cargo test` shows them even when the test passes.

use std::fs::{self, File};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Writes one line to stderr, bypassing the test harness's capture.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "e2e_arcp: {line}");
}

/// Random lowercase hex of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Times named steps and prints a summary at the end.
pub struct Steps {
    started: Instant,
    done: Vec<(String, Duration)>,
}

impl Steps {
    pub fn start() -> Self {
        Steps {
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    pub fn run<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        report(&format!("{name}: started"));
        let t = Instant::now();
        let value = f();
        let took = t.elapsed();
        report(&format!("{name}: ok in {:.1} s", took.as_secs_f64()));
        self.done.push((name.to_owned(), took));
        value
    }

    pub fn summary(&self) {
        for (name, took) in &self.done {
            report(&format!("  {:>6.1} s  {name}", took.as_secs_f64()));
        }
        report(&format!(
            "  {:>6.1} s  total",
            self.started.elapsed().as_secs_f64()
        ));
    }
}

/// The repository root (the crate's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory under `target/e2e/`, removed at the end only if the run passed.
pub struct RunDir {
    pub path: PathBuf,
    passed: bool,
}

impl RunDir {
    pub fn create() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path = repo_root()
            .join("target/e2e")
            .join(format!("run-{}-{millis}", std::process::id()));
        fs::create_dir_all(&path).expect("create the run directory");
        report(&format!("state and logs in {}", path.display()));
        RunDir {
            path,
            passed: false,
        }
    }

    pub fn passed(&mut self) {
        self.passed = true;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.passed {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            report(&format!(
                "kept {} (server logs, gateway logs, command output)",
                self.path.display()
            ));
        }
    }
}

/// Output of a command run to completion.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Fails the test with both outputs unless the command exited 0.
    pub fn success(self, what: &str) -> Self {
        assert!(
            self.status.success(),
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Kills a child on drop (a panic while it runs leaves nothing behind).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with stdout and stderr in files under `dir` (`<name>.out`, `<name>.err`),
/// killing it and failing the test after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, dir: &Path, name: &str, timeout: Duration) -> Finished {
    let out_path = dir.join(format!("{name}.out"));
    let err_path = dir.join(format!("{name}.err"));
    let out = File::create(&out_path).expect("create the stdout file");
    let err = File::create(&err_path).expect("create the stderr file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name} ({cmd:?}): {e}"));
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            panic!(
                "{name} did not finish within {timeout:?}; stdout so far:\n{}\nstderr:\n{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Environment variables a child process gets (never set in the test process).
pub type Env = Vec<(String, String)>;

/// The real ARCP server, run by `scripts/arcp-upstream.sh` with its state in `state_dir`.
pub struct Upstream {
    pub state_dir: PathBuf,
    pub port: u16,
    env: Env,
    runs: u32,
}

impl Upstream {
    /// Starts the server on a free port (installs the venv on first use).
    pub fn start(state_dir: PathBuf, env: Env) -> Upstream {
        // The guard exists before the script runs: if the test fails while the server is
        // starting, dropping the guard still stops whatever the script launched.
        let mut upstream = Upstream {
            state_dir,
            port: 0,
            env,
            runs: 0,
        };
        upstream.port = upstream.launch(None);
        upstream
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        let port = self.launch(Some(self.port));
        assert_eq!(port, self.port, "the server came back on another port");
    }

    fn launch(&mut self, port: Option<u16>) -> u16 {
        fs::create_dir_all(&self.state_dir).expect("create the upstream state directory");
        self.runs += 1;
        let mut cmd = Command::new(repo_root().join("scripts/arcp-upstream.sh"));
        cmd.arg("start").arg("--state-dir").arg(&self.state_dir);
        if let Some(port) = port {
            cmd.arg("--port").arg(port.to_string());
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // The first run may create the venv (pip install); the script bounds the start itself.
        let done = run_with_timeout(
            &mut cmd,
            self.state_dir.parent().expect("state dir has a parent"),
            &format!("arcp-upstream-start-{}", self.runs),
            Duration::from_secs(900),
        )
        .success("scripts/arcp-upstream.sh start");
        let port = done
            .stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no port on the script's stdout: {:?}", done.stdout));
        port
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s; see the script).
    pub fn stop(&self) {
        let mut cmd = Command::new(repo_root().join("scripts/arcp-upstream.sh"));
        cmd.arg("stop").arg("--state-dir").arg(&self.state_dir);
        let _ = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The server's log (uvicorn's access lines included).
    pub fn log(&self) -> String {
        fs::read_to_string(self.state_dir.join("arcp.log")).unwrap_or_default()
    }

    /// Polls the log until a line contains `needle`; returns that line.
    pub fn wait_for_log_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?} in {} within {timeout:?}",
                self.state_dir.join("arcp.log").display()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The python interpreter of the venv `scripts/arcp-venv.sh` maintains.
pub fn venv_python(dir: &Path) -> PathBuf {
    let mut cmd = Command::new(repo_root().join("scripts/arcp-venv.sh"));
    let done = run_with_timeout(&mut cmd, dir, "arcp-venv", Duration::from_secs(900))
        .success("scripts/arcp-venv.sh");
    let venv = done
        .stdout
        .lines()
        .last()
        .expect("the venv path on stdout")
        .trim()
        .to_owned();
    PathBuf::from(venv).join("bin/python")
}

/// The real gateway binary, running with a config written by the test.
pub struct Gateway {
    child: Child,
    pub name: String,
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    pub log_file: PathBuf,
}

impl Gateway {
    /// Writes `<dir>/<name>.yaml`, starts `arcp-gateway run --config` with `env`, and waits
    /// for the development CA file and the `listening` log line.
    pub fn start(dir: &Path, name: &str, yaml: &str, ca_file: PathBuf, env: &Env) -> Gateway {
        let config = dir.join(format!("{name}.yaml"));
        fs::write(&config, yaml).expect("write the gateway config");
        let _ = fs::remove_file(&ca_file);
        let log_file = dir.join(format!("{name}.log"));
        let log = File::create(&log_file).expect("create the gateway log");
        let child = Command::new(env!("CARGO_BIN_EXE_arcp-gateway"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // The config's log level applies and the `listening` line is always logged.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start arcp-gateway");
        let mut gateway = Gateway {
            child,
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ca_file,
            log_file,
        };
        gateway.addr = gateway.wait_ready(Duration::from_secs(30));
        gateway
    }

    fn wait_ready(&mut self, timeout: Duration) -> SocketAddr {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the gateway") {
                panic!("{} exited ({status}); log:\n{}", self.name, self.log());
            }
            let ca_ready = fs::metadata(&self.ca_file).is_ok_and(|m| m.len() > 0);
            if let (true, Some(addr)) = (ca_ready, self.listening_addr()) {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {timeout:?}; log:\n{}",
                self.name,
                self.log()
            );
            sleep(Duration::from_millis(25));
        }
    }

    /// The address of the first `listening` event of the JSON log.
    fn listening_addr(&self) -> Option<SocketAddr> {
        self.log().lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["message"] == "listening").then(|| v["addr"].as_str()?.parse().ok())?
        })
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

impl Drop for Gateway {
    /// SIGTERM (graceful drain), then SIGKILL if it is still running after 10 s.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                sleep(Duration::from_millis(25));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A gateway in front of the real ARCP server on `upstream_port` (upstream admin user
/// `admin`): TLS with a development CA written to `ca_file`, the ARCP route profile, one user
/// `ARCP` with `hash`, JSON logs at info. Secrets come from the environment variables
/// `{env}_ARCP_ADMIN_PASSWORD`, `{env}_ARCP_JWT_SECRET` and `{env}_GATEWAY_SIGNING_SECRET`.
/// `auth_extra` is added inside `auth:` (indented by two), `extra` at the top level.
pub fn real_arcp_gateway_yaml(
    written_by: &str,
    upstream_port: u16,
    ca_file: &std::path::Path,
    hash: &str,
    env: &str,
    auth_extra: &str,
    extra: &str,
) -> String {
    format!(
        r#"# written by {written_by}
listeners:
  - address: 127.0.0.1:0
    tls:
      development:
        write_ca_to: "{ca}"
        names: [localhost, 127.0.0.1]
upstream:
  url: http://127.0.0.1:{upstream_port}
  service_account:
    username: admin
    password_env: {env}_ARCP_ADMIN_PASSWORD
  token_verification:
    algorithm: HS256
    secret_env: {env}_ARCP_JWT_SECRET
logging:
  format: json
  level: info
auth:
  signing_key: main
  keys:
    - kid: main
      algorithm: HS256
      secret_env: {env}_GATEWAY_SIGNING_SECRET
  users:
    - name: ARCP
      password_hash: "{hash}"
{auth_extra}routes:
  profile: arcp
{extra}"#,
        ca = ca_file.display(),
    )
}
