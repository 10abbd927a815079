//! Prometheus metrics, served as text on the admin listener (`GET /metrics`).
//!
//! Built once per gateway ([`Metrics::new`], held in the pipeline's `Handles`); no global
//! registry. Every handle is resolved when the registry is built: a label set maps to a slot
//! of a small fixed array (route kind × status class, problem type, outcome), so the request
//! path increments an atomic and never looks a label set up in a `Family` (that is a map
//! under a lock). Only the latency histogram takes a short mutex per observation.
//!
//! Labels are closed sets chosen here (route kinds, status classes, problem slugs, fixed
//! outcome names): never a path, a user, a token or anything a client chose.
//!
//! Families (all prefixed `arcp_gateway_`):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `requests_total` | counter | `route_kind`, `status_class` |
//! | `admission_total` | counter | `outcome` (`admitted` or the refusing problem type) |
//! | `problems_total` | counter | `type` (problem slug of every problem document) |
//! | `sessions_live` | gauge | — |
//! | `logins_total` | counter | `outcome` (`success`, `invalid_credentials`, `throttled`, `rejected`) |
//! | `upstream_logins_total` | counter | `kind` (`login`, `refresh`), `result` (`ok`, `error`) |
//! | `upstream_response_seconds` | histogram | — (time to upstream response headers) |
//! | `websockets_open` | gauge | — |
//! | `reloads_total` | counter | `result` (`ok`, `invalid`, `refused`) |
//! | `redis_errors_total` | counter | — (failed or timed-out commands to the shared session store) |

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::policy::Access;
use crate::problem::ProblemKind;

/// `Content-Type` of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, &'static str)>;

/// Route kinds as labelled, in [`route_kind_index`] order; the last is "no route decided"
/// (the request was refused while framing).
const ROUTE_KINDS: [&str; 9] = [
    "public",
    "gateway",
    "admin",
    "agent",
    "agent_only",
    "temp",
    "passthrough",
    "deny",
    "none",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const PROBLEMS: usize = ProblemKind::ALL.len();

/// How a login at the gateway ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    InvalidCredentials,
    Throttled,
    /// Malformed body, missing fingerprint, agent fields…
    Rejected,
}

impl LoginOutcome {
    const ALL: [LoginOutcome; 4] = [
        Self::Success,
        Self::InvalidCredentials,
        Self::Throttled,
        Self::Rejected,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Throttled => "throttled",
            Self::Rejected => "rejected",
        }
    }

    /// The outcome a login answer's status stands for.
    pub fn from_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Success,
            401 => Self::InvalidCredentials,
            429 => Self::Throttled,
            _ => Self::Rejected,
        }
    }
}

/// How a configuration reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Ok,
    /// The new file does not load (`check-config` would print the same error).
    Invalid,
    /// It loads, but changes something that cannot change while running.
    Refused,
}

impl ReloadResult {
    const ALL: [ReloadResult; 3] = [Self::Ok, Self::Invalid, Self::Refused];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Invalid => "invalid",
            Self::Refused => "refused",
        }
    }
}

/// Cheap-to-clone handle on the registry and its pre-resolved metrics.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: [[Counter; 5]; 9],
    /// Slot 0: admitted; slot 1 + i: refused with `ProblemKind::ALL[i]`.
    admission: [Counter; PROBLEMS + 1],
    problems: [Counter; PROBLEMS],
    sessions_live: Gauge,
    logins: [Counter; 4],
    /// `[login ok, login error, refresh ok, refresh error]`.
    upstream_logins: [Counter; 4],
    upstream_latency: Histogram,
    websockets_open: Gauge,
    reloads: [Counter; 3],
    redis_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and every label set resolved.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("arcp_gateway");

        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route kind and status class",
            requests.clone(),
        );
        let requests = std::array::from_fn(|k| {
            std::array::from_fn(|s| {
                requests
                    .get_or_create(&vec![
                        ("route_kind", ROUTE_KINDS[k]),
                        ("status_class", STATUS_CLASSES[s]),
                    ])
                    .clone()
            })
        });

        let admission = Family::<Labels, Counter>::default();
        registry.register(
            "admission",
            "Requests by how admission ended: admitted, or the problem type that refused them",
            admission.clone(),
        );
        let admission = std::array::from_fn(|i| {
            let outcome = match i {
                0 => "admitted",
                i => ProblemKind::ALL[i - 1].slug(),
            };
            admission.get_or_create(&vec![("outcome", outcome)]).clone()
        });

        let problems = Family::<Labels, Counter>::default();
        registry.register(
            "problems",
            "Problem documents the gateway answered, by problem type",
            problems.clone(),
        );
        let problems = std::array::from_fn(|i| {
            problems
                .get_or_create(&vec![("type", ProblemKind::ALL[i].slug())])
                .clone()
        });

        let sessions_live = Gauge::default();
        registry.register(
            "sessions_live",
            "Gateway admin sessions held (updated when scraped)",
            sessions_live.clone(),
        );

        let logins = Family::<Labels, Counter>::default();
        registry.register(
            "logins",
            "Logins of people at the gateway, by outcome",
            logins.clone(),
        );
        let logins = std::array::from_fn(|i| {
            logins
                .get_or_create(&vec![("outcome", LoginOutcome::ALL[i].as_str())])
                .clone()
        });

        let upstream_logins = Family::<Labels, Counter>::default();
        registry.register(
            "upstream_logins",
            "Logins of the brokered upstream admin session: first logins and refreshes/re-logins",
            upstream_logins.clone(),
        );
        let upstream_logins = std::array::from_fn(|i| {
            let kind = if i < 2 { "login" } else { "refresh" };
            let result = if i % 2 == 0 { "ok" } else { "error" };
            upstream_logins
                .get_or_create(&vec![("kind", kind), ("result", result)])
                .clone()
        });

        let upstream_latency = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "upstream_response_seconds",
            "Time from sending a request upstream to its response headers",
            upstream_latency.clone(),
        );

        let websockets_open = Gauge::default();
        registry.register(
            "websockets_open",
            "WebSockets relayed right now",
            websockets_open.clone(),
        );

        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads (SIGHUP or file change), by result",
            reloads.clone(),
        );
        let reloads = std::array::from_fn(|i| {
            reloads
                .get_or_create(&vec![("result", ReloadResult::ALL[i].as_str())])
                .clone()
        });

        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Errors talking to the shared Redis session store",
            redis_errors.clone(),
        );

        Metrics(Arc::new(Inner {
            registry,
            requests,
            admission,
            problems,
            sessions_live,
            logins,
            upstream_logins,
            upstream_latency,
            websockets_open,
            reloads,
            redis_errors,
        }))
    }

    /// One answered request. `access` is `None` when no route was decided.
    pub fn request(&self, access: Option<Access>, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0.requests[route_kind_index(access)][class].inc();
    }

    /// A request got past admission.
    pub fn admitted(&self) {
        self.0.admission[0].inc();
    }

    /// A request was refused before or at admission with a problem of `kind`.
    pub fn refused(&self, kind: ProblemKind) {
        self.0.admission[1 + kind as usize].inc();
    }

    /// A problem document of `kind` was answered.
    pub fn problem(&self, kind: ProblemKind) {
        self.0.problems[kind as usize].inc();
    }

    pub fn login(&self, outcome: LoginOutcome) {
        self.0.logins[outcome as usize].inc();
    }

    /// A login of the brokered upstream session; `refresh` when it replaced one.
    pub fn upstream_login(&self, refresh: bool, ok: bool) {
        self.0.upstream_logins[usize::from(refresh) * 2 + usize::from(!ok)].inc();
    }

    /// Time to the upstream's response headers.
    pub fn upstream_latency(&self, took: Duration) {
        self.0.upstream_latency.observe(took.as_secs_f64());
    }

    /// A relayed WebSocket; the gauge goes down when the guard drops.
    pub fn websocket_opened(&self) -> OpenSocket {
        self.0.websockets_open.inc();
        OpenSocket(self.clone())
    }

    pub fn reload(&self, result: ReloadResult) {
        self.0.reloads[result as usize].inc();
    }

    /// One failed exchange with Redis (for the shared session store to call).
    pub fn redis_error(&self) {
        self.0.redis_errors.inc();
    }

    /// Sets the live-session gauge (read from the store when scraped).
    pub fn set_sessions_live(&self, n: u64) {
        self.0
            .sessions_live
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.0.registry);
        text
    }
}

/// Decrements `websockets_open` when dropped.
pub struct OpenSocket(Metrics);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0 .0.websockets_open.dec();
    }
}

fn route_kind_index(access: Option<Access>) -> usize {
    match access {
        Some(Access::Public) => 0,
        Some(Access::Gateway(_)) => 1,
        Some(Access::Admin) => 2,
        Some(Access::Agent) => 3,
        Some(Access::AgentOnly) => 4,
        Some(Access::Temp) => 5,
        Some(Access::Passthrough) => 6,
        Some(Access::Deny) => 7,
        None => 8,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn slots_follow_the_declaration_order() {
        for (i, kind) in ProblemKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
        for (i, o) in LoginOutcome::ALL.into_iter().enumerate() {
            assert_eq!(o as usize, i);
        }
        for (i, r) in ReloadResult::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        for access in [Access::Public, Access::Admin, Access::Deny, Access::Temp] {
            assert_eq!(ROUTE_KINDS[route_kind_index(Some(access))], access.as_str());
        }
    }

    #[test]
    fn counters_show_in_the_text() {
        let m = Metrics::new();
        m.request(Some(Access::Admin), 204);
        m.request(None, 400);
        m.refused(ProblemKind::PinRequired);
        m.upstream_login(true, false);
        m.reload(ReloadResult::Invalid);
        m.redis_error();
        {
            let _s = m.websocket_opened();
            assert!(m.encode().contains("arcp_gateway_websockets_open 1\n"));
        }
        let text = m.encode();
        for line in [
            r#"arcp_gateway_requests_total{route_kind="admin",status_class="2xx"} 1"#,
            r#"arcp_gateway_requests_total{route_kind="none",status_class="4xx"} 1"#,
            r#"arcp_gateway_admission_total{outcome="pin-required"} 1"#,
            r#"arcp_gateway_upstream_logins_total{kind="refresh",result="error"} 1"#,
            r#"arcp_gateway_reloads_total{result="invalid"} 1"#,
            "arcp_gateway_redis_errors_total 1",
            "arcp_gateway_websockets_open 0",
            "# HELP arcp_gateway_redis_errors Errors talking to the shared Redis session store.",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
