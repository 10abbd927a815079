//! Logs: setup, the per-request access event, and error chains.
//!
//! What is never logged: `Authorization`, cookies, fingerprints, PINs, passwords, and query
//! strings (the dashboard puts its token in `?token=`). The access event carries the path
//! only; headers are never logged at all.

mod access;
mod batch;

pub use batch::{flush_thread as flush_worker_logs, FLUSH_EVERY as LOG_FLUSH_EVERY};

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use http::{Method, StatusCode};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

#[derive(Debug, Clone)]
pub struct LoggingSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (the default, for log collectors).
    #[default]
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

/// Keeps the background log writer alive; dropping it flushes what is buffered.
pub struct LogGuard {
    _flush_on_drop: Option<tracing_appender::non_blocking::WorkerGuard>,
    level: Option<LevelHandle>,
}

impl LogGuard {
    /// Changes the level of the installed subscriber (a configuration reload).
    pub fn level_handle(&self) -> Option<LevelHandle> {
        self.level.clone()
    }
}

/// Swaps the level filter of the running subscriber.
#[derive(Clone)]
pub struct LevelHandle {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it keeps overriding the file.
    from_env: bool,
}

impl LevelHandle {
    /// Applies a level directive (`logging.level`), unless `RUST_LOG` overrides it.
    pub fn set(&self, level: &str) {
        if self.from_env {
            tracing::info!("logging.level changed; RUST_LOG keeps overriding it");
            return;
        }
        match log_filter(&directive(level)) {
            Ok(filter) => match self.handle.reload(filter) {
                Ok(()) => tracing::info!(level, "log level changed"),
                Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
            },
            Err(e) => tracing::warn!(error = %e, "invalid log level ignored"),
        }
    }
}

/// The filter for `level`. WebSocket libraries log whole frames (tokens included) at trace
/// level: they stay at info unless the directive names them explicitly. rustls warns about
/// what a client sent (an IP address as SNI, an alert): a line per handshake that any client
/// can cause, so it logs errors only unless the directive names it. Audit events (target
/// `audit`) are kept at info unless the directive names that target.
fn directive(level: &str) -> String {
    let mut d = level.to_owned();
    if !level.contains("tungstenite") {
        d.push_str(",tungstenite=info,tokio_tungstenite=info");
    }
    if !level.contains("rustls") {
        d.push_str(",rustls=error");
    }
    if !level.contains("audit") {
        d.push_str(",audit=info");
    }
    d
}

/// Parses an `EnvFilter` directive. Both guards were found by the `config_parse` fuzz target:
/// * field values are matched literally: as regular expressions they are compiled to a DFA
///   whose size is exponential in the pattern (`[{a=.*a` and 20 dots took minutes);
/// * only ASCII is accepted (targets are Rust module paths): tracing-subscriber slices a
///   directive with offsets taken from its trimmed copy, so blank space before a non-ASCII
///   character (`info, ƌ=debug`) panicked inside the parser.
pub(crate) fn log_filter(directive: &str) -> Result<EnvFilter, String> {
    if !directive.is_ascii() {
        return Err("log filters are ASCII".into());
    }
    EnvFilter::builder()
        .with_regex(false)
        .parse(directive)
        .map_err(|e| e.to_string())
}

/// Installs the global subscriber (once, from `main`). `RUST_LOG` overrides the level.
///
/// Lines are formatted on the request's thread, gathered per worker thread
/// ([`batch`]: handed over every 32 KiB or 100 ms) and written to stdout by a background
/// thread (one `write` for many lines instead of one per request). The writer blocks when
/// its buffer is full rather than drop lines. Keep the returned guard until exit.
pub fn init(settings: &LoggingSettings) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(batch::QUEUED_BATCHES)
        .finish(std::io::stdout());
    let writer = batch::Batched::install(writer);
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| log_filter(&directive(&l)).ok());
    let env_set = from_env.is_some();
    let filter = from_env
        .or_else(|| log_filter(&directive(&settings.level)).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) is harmless and ignored.
    let installed = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .compact()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_writer(writer),
            )
            .try_init(),
    };
    let installed = installed.is_ok();
    if installed && settings.format == LogFormat::Json {
        let _ = JSON_ACCESS_LINES.set(());
    }
    LogGuard {
        _flush_on_drop: installed.then_some(guard),
        level: installed.then_some(LevelHandle {
            handle,
            from_env: env_set,
        }),
    }
}

/// One access-log event per request.
pub struct AccessLog<'a> {
    pub method: &'a Method,
    /// The request path without its query.
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub duration: Duration,
    pub request_id: &'a str,
    pub user: Option<&'a str>,
    pub peer: SocketAddr,
}

/// Set when the installed subscriber writes JSON: the access line is then formatted by
/// [`access`] into the same writer, in the same shape.
static JSON_ACCESS_LINES: OnceLock<()> = OnceLock::new();

pub fn access_log(a: &AccessLog<'_>) {
    if JSON_ACCESS_LINES.get().is_some() {
        if tracing::enabled!(target: "arcp_gateway::access", tracing::Level::INFO) {
            batch::append(|line| access::format_json(line, a, crate::clock::log_time()));
        }
        return;
    }
    access_event(a);
}

/// The access line as a tracing event (the pretty format; the JSON shape's reference).
fn access_event(a: &AccessLog<'_>) {
    tracing::info!(
        target: "arcp_gateway::access",
        method = %a.method,
        path = a.path,
        route = a.route.unwrap_or("-"),
        status = a.status,
        upstream_status = a.upstream_status,
        duration_ms = a.duration.as_secs_f64() * 1000.0,
        request_id = a.request_id,
        user = a.user,
        peer = %a.peer.ip(),
        "request"
    );
}

/// Logs an error with its whole source chain, once, at a level fitting its status.
pub fn log_error(err: &(dyn StdError + 'static), request_id: &str, status: StatusCode) {
    let chain = error_chain(err);
    if status.is_server_error() {
        tracing::warn!(request_id, status = status.as_u16(), error = %chain, "request failed");
    } else {
        tracing::debug!(request_id, status = status.as_u16(), error = %chain, "request refused");
    }
}

/// `outer: middle: root`.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::Layer;

    use super::{directive, log_filter};

    /// Counts the events that pass the filter below it.
    struct Count(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (rustls warnings, the gateway's warnings) that pass `logging.level: level`.
    fn passed(level: &str) -> (usize, usize) {
        let run = |emit: fn()| {
            let n = Arc::new(AtomicUsize::new(0));
            let filter = log_filter(&directive(level)).unwrap();
            let subscriber = tracing_subscriber::registry()
                .with(filter)
                .with(Count(n.clone()));
            tracing::subscriber::with_default(subscriber, emit);
            n.load(Ordering::Relaxed)
        };
        (
            run(|| {
                tracing::warn!(target: "rustls::msgs::handshake", "Illegal SNI extension");
            }),
            run(|| tracing::warn!(target: "arcp_gateway::server", "a warning")),
        )
    }

    /// A client can make rustls warn once per handshake (an IP address as SNI): those lines
    /// stay out of the log at the default levels, unless the level names rustls.
    #[test]
    fn rustls_warnings_about_clients_are_not_logged_unless_asked_for() {
        assert_eq!(passed("info"), (0, 1));
        assert_eq!(passed("warn"), (0, 1));
        assert_eq!(passed("warn,rustls=warn"), (1, 1));
        assert_eq!(passed("error"), (0, 0));
    }
}
