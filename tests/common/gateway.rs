//! The real gateway under test: in-process on `127.0.0.1:0` ([`TestGateway`], optionally on an
//! injected [`Clock`]) or the built binary as a subprocess on a free port ([`GatewayProcess`],
//! for memory, signal and log tests), both with TLS from a throw-away CA and YAML built from
//! [`GatewayOptions`]. Either hands out a [`TlsClient`] that trusts that CA.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use arcp_gateway::clock::Clock;
use arcp_gateway::pipeline::State;
use http::Request;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{within, GatewayOptions, TestBody, TestResponse, TlsClient};

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An upstream URL nothing listens on.
pub fn dead_upstream_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let name = format!(
            "arcp-gateway-test-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The gateway's certificate files and the CA clients trust.
pub struct Pki {
    pub ca_der: CertificateDer<'static>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Pki {
    /// A development CA and a leaf for `localhost` and `127.0.0.1`, written into `dir`.
    pub fn write(dir: &Path) -> Pki {
        let pki = arcp_gateway::tls::generate_dev_pki(&["localhost".into(), "127.0.0.1".into()])
            .expect("generate the test PKI");
        let cert_file = dir.join("cert.pem");
        let key_file = dir.join("key.pem");
        std::fs::write(&cert_file, &pki.leaf_pem).unwrap();
        std::fs::write(&key_file, &pki.key_pem).unwrap();
        Pki {
            ca_der: pki.ca_der,
            cert_file,
            key_file,
        }
    }
}

/// The real gateway served from this test's runtime, deciding token and session lifetimes
/// against [`TestGateway::clock`].
pub struct TestGateway {
    pub addr: SocketAddr,
    /// A client for this gateway; it keeps the CA ([`TlsClient::ca`]).
    pub client: TlsClient,
    /// The clock the gateway reads (the system clock unless the test injected one).
    pub clock: Clock,
    /// The admin listener, when the configuration has an `admin:` section.
    pub admin: Option<SocketAddr>,
    /// The gateway's shared state (handles and snapshot), for tests that look inside.
    pub state: Arc<State>,
    pub yaml: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl TestGateway {
    /// The gateway on the system clock.
    pub async fn start(opts: GatewayOptions) -> TestGateway {
        TestGateway::start_with_clock(opts, Clock::system()).await
    }

    /// The gateway on `clock`, which the test can move forward ([`Clock::advance`]).
    pub async fn start_with_clock(opts: GatewayOptions, clock: Clock) -> TestGateway {
        let dir = TempDir::new();
        let pki = Pki::write(dir.path());
        let yaml = opts.yaml("127.0.0.1:0".parse().unwrap(), &pki);
        let settings = arcp_gateway::config::from_str(&yaml, "test.yaml", dir.path())
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n---\n{yaml}"));
        let gateway = arcp_gateway::Gateway::bind_with_clock(settings, clock.clone())
            .await
            .expect("bind the gateway");
        let addr = gateway.local_addrs()[0];
        let admin = gateway.admin_addr();
        let state = gateway.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(async move {
            let _ = rx.await;
        }));
        TestGateway {
            addr,
            client: TlsClient::new(addr, pki.ca_der),
            clock,
            admin,
            state,
            yaml,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Sends `req` over HTTP/1.1 on a new TLS connection from `source` (any 127/8 address on
    /// Linux), waiting at most `limit` for the whole exchange.
    pub async fn send_from(
        &self,
        source: IpAddr,
        req: Request<TestBody>,
        limit: Duration,
    ) -> TestResponse {
        self.client.send_from(source, req, limit).await
    }

    /// Asks the gateway to stop and waits (bounded) for it to drain.
    pub async fn shutdown(mut self, limit: Duration) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            within(limit, "gateway drain", task).await.unwrap();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Resident memory figures of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

/// The gateway binary (`arcp-gateway run --config FILE`) on a free loopback port.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    pub client: TlsClient,
    pub pid: u32,
    pub child: tokio::process::Child,
    log_file: PathBuf,
    _dir: TempDir,
}

impl GatewayProcess {
    /// Starts the binary and waits (bounded) until its port accepts connections.
    pub async fn start(opts: GatewayOptions) -> GatewayProcess {
        let dir = TempDir::new();
        let pki = Pki::write(dir.path());
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, opts.yaml(addr, &pki)).unwrap();
        let log_file = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_file).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_arcp-gateway"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn arcp-gateway");
        let pid = child.id().expect("child pid");
        let mut process = GatewayProcess {
            addr,
            client: TlsClient::new(addr, pki.ca_der),
            pid,
            child,
            log_file,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!(
                    "arcp-gateway exited early with {status}:\n{}",
                    process.log()
                );
            }
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "arcp-gateway did not listen on {addr} within 20s:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        process
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// `VmRSS` and `VmHWM` from `/proc/<pid>/status`.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let field = |name: &str| -> u64 {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} missing from /proc/{}/status", self.pid));
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("cannot parse {line:?}"));
            kib * 1024
        };
        Memory {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
        }
    }

    /// Resets `VmHWM` to the current `VmRSS` (`/proc/<pid>/clear_refs`, value 5), so a later
    /// [`GatewayProcess::memory`] shows the peak reached since this call.
    pub fn reset_peak_memory(&self) -> std::io::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait()).await;
        match status {
            Ok(s) => s.unwrap(),
            Err(_) => panic!(
                "arcp-gateway did not exit within {limit:?}:\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- arcp-gateway log ---\n{}", self.log());
        }
        let _ = self.child.start_kill();
    }
}
