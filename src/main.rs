//! `arcp-gateway` command line: run, check-config, schema, healthcheck, hash-password.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc's per-thread free lists suit the gateway's pattern (every request allocates and
/// frees small blocks on its worker thread); measured in `docs/performance.md`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "arcp-gateway",
    version,
    about = "TLS authentication gateway for ARCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// YAML configuration file (default: the embedded config/default.yaml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Replace the address of the first listener.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Replace the upstream URL (scheme and authority, e.g. http://127.0.0.1:8001).
        #[arg(long, value_name = "URL")]
        upstream: Option<String>,
        /// Replace the upstream service account's user name (ARCP's ADMIN_USERNAME).
        #[arg(long, value_name = "NAME")]
        upstream_username: Option<String>,
        /// Let the embedded demo configuration (with its well-known demo user) listen on a
        /// non-loopback address. Without `--config` the gateway otherwise refuses to.
        #[arg(long)]
        danger_demo_on_network: bool,
    },
    /// Validate configuration files; prints each error with file:line:column and exits 1.
    CheckConfig {
        /// Check everything except what the file refers to: read no environment variable
        /// and no secret, key or certificate file (for pipelines without the secrets).
        #[arg(long)]
        structure_only: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema (draft-07) of the configuration file.
    Schema,
    /// Ask the readiness endpoint once: exit 0 on 200, 1 otherwise (for images without curl).
    Healthcheck {
        /// Plain-HTTP URL of the admin listener's readiness endpoint.
        #[arg(long, default_value = arcp_gateway::admin::DEFAULT_HEALTHCHECK_URL)]
        url: String,
    },
    /// Read a password from standard input and print its argon2id PHC hash.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            listen,
            upstream,
            upstream_username,
            danger_demo_on_network,
        } => match run(
            config,
            listen,
            upstream,
            upstream_username,
            danger_demo_on_network,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("arcp-gateway: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig {
            structure_only,
            files,
        } => check_config(&files, structure_only),
        Command::Schema => {
            print!("{}", arcp_gateway::config::schema::json_schema());
            ExitCode::SUCCESS
        }
        Command::Healthcheck { url } => {
            match arcp_gateway::admin::healthcheck(&url, std::time::Duration::from_secs(5)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("arcp-gateway healthcheck: {:#}", anyhow::Error::from(e));
                    ExitCode::FAILURE
                }
            }
        }
        Command::HashPassword => match hash_password() {
            Ok(phc) => {
                println!("{phc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("arcp-gateway: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    upstream: Option<String>,
    upstream_username: Option<String>,
    danger_demo_on_network: bool,
) -> anyhow::Result<()> {
    // The same loader serves the start and every reload, so CLI overrides survive a reload.
    let loader: arcp_gateway::reload::Loader = {
        let config = config.clone();
        std::sync::Arc::new(move || {
            load_settings(
                config.as_deref(),
                listen,
                upstream.as_deref(),
                upstream_username.as_deref(),
            )
        })
    };
    let settings = loader().map_err(|e| anyhow::anyhow!("{e}"))?;
    if config.is_none() {
        let exposed: Vec<String> = settings
            .listeners
            .iter()
            .filter(|l| !l.address.ip().is_loopback())
            .map(|l| l.address.to_string())
            .collect();
        if !exposed.is_empty() && !danger_demo_on_network {
            anyhow::bail!(
                "the embedded demo configuration (user ARCP, password ARCP) would listen on {}; \
                 use --config with your own users, or pass --danger-demo-on-network",
                exposed.join(", ")
            );
        }
        if !exposed.is_empty() {
            eprintln!("arcp-gateway: warning: the demo configuration with its well-known user is listening on {}", exposed.join(", "));
        }
    }
    let log_guard = arcp_gateway::observability::init(&settings.logging);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let gateway = arcp_gateway::Gateway::bind(settings)
            .await
            .context("cannot start the gateway")?;
        for addr in gateway.local_addrs() {
            tracing::info!(%addr, "listening");
        }
        let reloader = gateway.reloader();
        if let Some(level) = log_guard.level_handle() {
            reloader.set_log_level_handle(level);
        }
        let triggers = arcp_gateway::reload::spawn_triggers(reloader, loader, config);
        gateway.serve(shutdown_signal()).await;
        triggers.abort();
        Ok(())
    })
}

/// Loads the file (or the embedded default) and applies the command-line overrides.
fn load_settings(
    config: Option<&std::path::Path>,
    listen: Option<std::net::SocketAddr>,
    upstream: Option<&str>,
    upstream_username: Option<&str>,
) -> Result<arcp_gateway::config::Settings, arcp_gateway::config::ConfigError> {
    let mut settings = match config {
        Some(path) => arcp_gateway::config::load(path),
        None => arcp_gateway::config::load_default(),
    }?;
    let flag_error = |flag: &str, message: String| arcp_gateway::config::ConfigError {
        file: flag.to_owned(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
        hint: None,
    };
    if let Some(addr) = listen {
        if let Some(first) = settings.listeners.first_mut() {
            first.address = addr;
        }
    }
    if let Some(url) = upstream {
        settings
            .upstream
            .set_url(url)
            .map_err(|e| flag_error("--upstream", e.to_string()))?;
    }
    if let Some(name) = upstream_username {
        settings
            .upstream
            .set_service_username(name)
            .map_err(|e| flag_error("--upstream-username", e.to_string()))?;
    }
    Ok(settings)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // Without a SIGTERM handler, Ctrl-C still works.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn check_config(files: &[PathBuf], structure_only: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        let checked = if structure_only {
            arcp_gateway::config::check_structure(file)
        } else {
            arcp_gateway::config::load(file).map(drop)
        };
        match checked {
            Ok(_) => println!("{}: ok", file.display()),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn hash_password() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the password from standard input")?;
    let password = input.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("empty password on standard input");
    }
    arcp_gateway::auth::credentials::hash_password(password).map_err(|e| anyhow::anyhow!(e))
}
