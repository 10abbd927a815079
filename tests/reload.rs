//! Configuration reload: under steady load, reloads alternating two valid
//! configurations and an invalid one drop no request and each valid one decides the next
//! request; an invalid file is refused with the text `check-config` prints; a change to
//! what is built once is refused with its location; a renewed certificate is served to new
//! connections while an open one keeps working; the file watch (a Kubernetes-style
//! `..data` symlink swap) and SIGHUP trigger reloads.
//!
//! The real gateway runs in-process over TLS on `127.0.0.1:0` in front of the recording stub.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_imports)]
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arcp_gateway::reload::{Loader, ReloadError};
use arcp_gateway::{Gateway, Reloader};
use common::{get, within, Pki, Proto, Stub, TempDir, TlsClient, STEP};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// How `/probe` is routed in a configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Probe {
    Public,
    Deny,
}

struct Env {
    dir: TempDir,
    pki: Pki,
    stub: Stub,
    config: PathBuf,
    client: TlsClient,
    reloader: Reloader,
    gateway: Arc<arcp_gateway::pipeline::State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Env {
    async fn start() -> Env {
        let dir = TempDir::new();
        let pki = Pki::write(dir.path());
        let stub = Stub::start().await;
        let config = dir.path().join("gateway.yaml");
        let env_yaml = yaml(&stub.url(), &pki, Probe::Public, "");
        std::fs::write(&config, &env_yaml).unwrap();
        let settings = arcp_gateway::config::load(&config).unwrap();
        let gateway = Gateway::bind(settings).await.unwrap();
        let client = TlsClient::new(gateway.local_addrs()[0], pki.ca_der.clone());
        let reloader = gateway.reloader();
        let state = gateway.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(async move {
            let _ = rx.await;
        }));
        Env {
            dir,
            pki,
            stub,
            config,
            client,
            reloader,
            gateway: state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    fn loader(&self) -> Loader {
        let path = self.config.clone();
        Arc::new(move || arcp_gateway::config::load(&path))
    }

    /// Writes `text` as the config file and reloads it (off the async workers, as the
    /// triggers do).
    async fn reload_text(&self, text: &str) -> Result<(), ReloadError> {
        std::fs::write(&self.config, text).unwrap();
        let (reloader, loader) = (self.reloader.clone(), self.loader());
        tokio::task::spawn_blocking(move || reloader.reload_with(&loader))
            .await
            .unwrap()
    }

    fn valid(&self, probe: Probe) -> String {
        yaml(&self.stub.url(), &self.pki, probe, "")
    }

    async fn probe_status(&self) -> u16 {
        self.client
            .send(Proto::H1, get("/probe"))
            .await
            .status
            .as_u16()
    }

    fn metrics(&self) -> String {
        self.gateway.handles.metrics.encode()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            within(STEP, "gateway shutdown", task).await.unwrap();
        }
    }
}

fn yaml(upstream: &str, pki: &Pki, probe: Probe, extra: &str) -> String {
    let q = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
    let probe = match probe {
        Probe::Public => "public",
        Probe::Deny => "deny",
    };
    format!(
        "listeners:\n\
         \x20 - address: \"127.0.0.1:0\"\n\
         \x20   tls:\n\
         \x20     cert_file: {cert}\n\
         \x20     key_file: {key}\n\
         upstream:\n\
         \x20 url: \"{upstream}\"\n\
         logging:\n\
         \x20 level: warn\n\
         routes:\n\
         \x20 profile: none\n\
         \x20 default_access: deny\n\
         \x20 rules:\n\
         \x20   - {{name: steady, path: /steady, access: public}}\n\
         \x20   - {{name: probe, path: /probe, access: {probe}}}\n\
         {extra}",
        cert = q(&pki.cert_file),
        key = q(&pki.key_file),
    )
}

/// Not valid: an access kind that does not exist, on line 14.
fn invalid(valid: &str) -> String {
    valid.replace("access: public}", "access: everyone}")
}

/// The value of the sample `name` (with its labels) in a metrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_drop_no_request_and_each_valid_one_decides_the_next() {
    let env = Env::start().await;
    assert_eq!(env.probe_status().await, 200);

    // Steady load: two bounded client loops, each on a kept-alive connection renewed every
    // 10 requests (so handshakes happen during reloads too).
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (client, stop, ok) = (env.client.clone(), stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for round in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut conn = client.connect(Proto::H1).await;
                for _ in 0..10 {
                    let resp = conn.send(get(&format!("/steady?r={round}"))).await;
                    if resp.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.push(resp.status);
                    }
                }
            }
            failed
        }));
    }

    let mut expected = Probe::Public;
    let (mut valid_reloads, mut invalid_reloads) = (0, 0);
    for i in 0..20 {
        match i % 3 {
            2 => {
                let text = invalid(&env.valid(expected));
                let err = env.reload_text(&text).await.expect_err("invalid config");
                assert!(matches!(err, ReloadError::Invalid(_)), "{err:?}");
                // The same text check-config prints.
                let check = arcp_gateway::config::load(&env.config).unwrap_err();
                assert_eq!(err.to_string(), check.to_string());
                assert!(
                    err.to_string()
                        .starts_with(&format!("{}:14:", env.config.display())),
                    "{err}"
                );
                invalid_reloads += 1;
            }
            n => {
                expected = if n == 0 { Probe::Deny } else { Probe::Public };
                env.reload_text(&env.valid(expected))
                    .await
                    .unwrap_or_else(|e| panic!("reload {i}: {e}"));
                valid_reloads += 1;
            }
        }
        let want = if expected == Probe::Public { 200 } else { 403 };
        assert_eq!(env.probe_status().await, want, "after reload {i}");
    }

    stop.store(true, Ordering::Relaxed);
    let mut failed = Vec::new();
    for c in clients {
        failed.extend(
            within(Duration::from_secs(60), "client loop", c)
                .await
                .unwrap(),
        );
    }
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(ok.load(Ordering::Relaxed) >= 20, "the load ran");

    let m = env.metrics();
    assert_eq!(
        sample(&m, r#"arcp_gateway_reloads_total{result="ok"}"#),
        valid_reloads as f64
    );
    assert_eq!(
        sample(&m, r#"arcp_gateway_reloads_total{result="invalid"}"#),
        invalid_reloads as f64
    );
    env.stop().await;
}

#[tokio::test]
async fn the_check_config_command_prints_the_same_message_as_a_refused_reload() {
    let env = Env::start().await;
    let err = env
        .reload_text(&invalid(&env.valid(Probe::Public)))
        .await
        .expect_err("invalid config");
    let config = env.config.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_arcp-gateway"))
            .arg("check-config")
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        err.to_string()
    );
    env.stop().await;
}

#[tokio::test]
async fn changes_to_what_is_built_once_are_refused_with_their_location() {
    let env = Env::start().await;
    let base = env.valid(Probe::Deny);
    let port = common::free_port();
    let cases = [
        (
            base.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
            "listeners[0].address",
            2,
        ),
        (
            format!("{base}admin:\n  address: \"127.0.0.1:{port}\"\n"),
            "admin.address",
            17,
        ),
        (
            format!("{base}sessions:\n  max_per_user: 3\n"),
            "sessions.max_per_user",
            17,
        ),
        (
            base.replace(&env.stub.url(), &format!("http://127.0.0.1:{port}")),
            "upstream.url",
            7,
        ),
        (
            base.replace(
                "    tls:\n",
                "    proxy_protocol: {trusted: [10.0.0.1]}\n    tls:\n",
            ),
            "listeners[0].proxy_protocol",
            3,
        ),
        (
            format!("{base}server:\n  workers: 3\n"),
            "server.workers",
            17,
        ),
    ];
    for (text, path, line) in cases {
        let err = env.reload_text(&text).await.expect_err(path);
        let ReloadError::Refused(e) = &err else {
            panic!("{path}: {err:?}")
        };
        assert_eq!(e.path, path, "{err}");
        assert_eq!(e.line, line, "{path}: {err}");
        assert!(e.file.ends_with("gateway.yaml"), "{err}");
        assert!(
            err.to_string()
                .contains("cannot change while the gateway runs"),
            "{err}"
        );
        // The running configuration stays: /probe is still public.
        assert_eq!(env.probe_status().await, 200, "{path}");
    }
    assert_eq!(
        sample(
            &env.metrics(),
            r#"arcp_gateway_reloads_total{result="refused"}"#
        ),
        6.0
    );
    env.stop().await;
}

/// A TLS client trusting `roots`; returns the connection and the leaf the server sent.
async fn leaf_of(
    addr: std::net::SocketAddr,
    roots: &[CertificateDer<'static>],
) -> CertificateDer<'static> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let tls = within(STEP, "TLS handshake", async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    })
    .await;
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn leaf_in(pem_file: &Path) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(pem_file)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_and_open_ones_keep_working() {
    let env = Env::start().await;
    let old_leaf = leaf_in(&env.pki.cert_file);
    let roots = [env.pki.ca_der.clone()];
    assert_eq!(leaf_of(env.client.addr, &roots).await, old_leaf);
    let mut open = env.client.connect(Proto::H1).await;
    assert_eq!(open.send(get("/steady")).await.status, 200);

    // Renewed in place (as cert-manager or certbot do), then reloaded.
    let renewed_dir = env.dir.path().join("renewed");
    std::fs::create_dir_all(&renewed_dir).unwrap();
    let renewed = Pki::write(&renewed_dir);
    std::fs::copy(&renewed.cert_file, &env.pki.cert_file).unwrap();
    std::fs::copy(&renewed.key_file, &env.pki.key_file).unwrap();
    env.reload_text(&env.valid(Probe::Public)).await.unwrap();

    let new_leaf = leaf_in(&renewed.cert_file);
    assert_ne!(new_leaf, old_leaf);
    let roots = [env.pki.ca_der.clone(), renewed.ca_der.clone()];
    assert_eq!(leaf_of(env.client.addr, &roots).await, new_leaf);
    // The connection opened before the reload keeps its session and keeps working.
    for _ in 0..3 {
        assert_eq!(open.send(get("/steady")).await.status, 200);
    }

    // A key that does not match its certificate is refused; the renewed one stays.
    let third = Pki::write(&env.dir.path().join("renewed"));
    std::fs::copy(&third.key_file, &env.pki.key_file).unwrap();
    let err = env
        .reload_text(&env.valid(Probe::Public))
        .await
        .expect_err("mismatched key");
    assert!(
        matches!(err, ReloadError::Tls { listener: 0, .. }),
        "{err:?}"
    );
    assert_eq!(leaf_of(env.client.addr, &roots).await, new_leaf);
    env.stop().await;
}

/// The Kubernetes layout: `gateway.yaml -> ..data/gateway.yaml`, `..data -> ..vN`.
fn write_version(dir: &Path, n: u32, text: &str) {
    let version = dir.join(format!("..v{n}"));
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(version.join("gateway.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{n}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swap_in_the_config_directory_and_sighup_reload() {
    let env = Env::start().await;
    let k8s = env.dir.path().join("config");
    std::fs::create_dir_all(&k8s).unwrap();
    write_version(&k8s, 1, &env.valid(Probe::Public));
    let file = k8s.join("gateway.yaml");
    std::os::unix::fs::symlink("..data/gateway.yaml", &file).unwrap();
    let loader: Loader = {
        let file = file.clone();
        Arc::new(move || arcp_gateway::config::load(&file))
    };
    let mut attempts = env.reloader.subscribe();
    let triggers =
        arcp_gateway::reload::spawn_triggers(env.reloader.clone(), loader, Some(file.clone()));

    // The swap Kubernetes does when a ConfigMap changes.
    write_version(&k8s, 2, &env.valid(Probe::Deny));
    within(
        Duration::from_secs(10),
        "a reload after the swap",
        attempts.changed(),
    )
    .await
    .unwrap();
    assert_eq!(env.probe_status().await, 403);

    // A change of something else in the directory with the same content: no reload.
    std::fs::write(k8s.join("unrelated"), "x").unwrap();
    let quiet = tokio::time::timeout(arcp_gateway::reload::DEBOUNCE * 8, attempts.changed()).await;
    assert!(
        quiet.is_err(),
        "the content did not change, nothing reloads"
    );

    // SIGHUP reloads even when the content did not change.
    let before = *attempts.borrow_and_update();
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    within(
        Duration::from_secs(10),
        "a reload after SIGHUP",
        attempts.changed(),
    )
    .await
    .unwrap();
    assert_eq!(*attempts.borrow(), before + 1);
    assert_eq!(env.probe_status().await, 403);
    triggers.abort();
    env.stop().await;
}
