//! Every route of ARCP 2.1.2 (contract §1.3) gets the access kind docs/design.md §5 and the built-in
//! profile (`config/routes/arcp.yaml`) give it, including `require_pin` on the destructive
//! admin operations. Looked up through the real configuration loader and policy.
//!
//! A third test parses the route table of docs/arcp-upstream-contract.md §1.3 and checks that
//! no row of it is missing here.

// Tests bound their waits and measure with the real clocks; the clock rule is for src/.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use arcp_gateway::policy::Access;
use http::Method;

/// One row of contract §1.3: method, the path as the contract writes it, a concrete
/// request path, the expected access kind and whether the gateway demands a PIN.
struct Row {
    method: &'static str,
    template: &'static str,
    example: &'static str,
    access: Access,
    /// A second acceptable kind, where docs/design.md §5 leaves the choice open.
    or: Option<Access>,
    pin: bool,
}

const fn row(
    method: &'static str,
    template: &'static str,
    example: &'static str,
    access: Access,
) -> Row {
    Row {
        method,
        template,
        example,
        access,
        or: None,
        pin: false,
    }
}

const fn pin(
    method: &'static str,
    template: &'static str,
    example: &'static str,
    access: Access,
) -> Row {
    Row {
        method,
        template,
        example,
        access,
        or: None,
        pin: true,
    }
}

const fn either(method: &'static str, path: &'static str, access: Access, or: Access) -> Row {
    Row {
        method,
        template: path,
        example: path,
        access,
        or: Some(or),
        pin: false,
    }
}

use arcp_gateway::policy::Endpoint;
use Access::{Admin, Agent, AgentOnly, Gateway, Passthrough, Public, Temp};

/// Contract §1.3, row by row (a row naming several paths is split; `WS` is the `GET`
/// upgrade request).
const TABLE: &[Row] = &[
    row("GET", "/", "/", Public),
    row("OPTIONS", "/", "/", Public),
    row("GET", "/dashboard", "/dashboard", Public),
    row("GET", "/static/{path}", "/static/js/dashboard.js", Public),
    row("GET", "/docs", "/docs", Public),
    row("GET", "/redoc", "/redoc", Public),
    row("GET", "/openapi.json", "/openapi.json", Public),
    row("GET", "/metrics", "/metrics", Admin),
    row("GET", "/metrics/scrape", "/metrics/scrape", Passthrough),
    row("WS", "/agents/ws", "/agents/ws", Agent),
    row("POST", "/agents/register", "/agents/register", Agent),
    row("POST", "/agents/search", "/agents/search", Agent),
    row("GET", "/agents/search", "/agents/search", Agent),
    row(
        "POST",
        "/agents/{agent_id}/heartbeat",
        "/agents/weather-bot/heartbeat",
        Agent,
    ),
    row(
        "POST",
        "/agents/{agent_id}/metrics",
        "/agents/weather-bot/metrics",
        Agent,
    ),
    row(
        "GET",
        "/agents/{agent_id}/metrics",
        "/agents/weather-bot/metrics",
        Agent,
    ),
    row(
        "POST",
        "/agents/report-metrics/{agent_id}",
        "/agents/report-metrics/weather-bot",
        Agent,
    ),
    row(
        "POST",
        "/agents/{agent_id}/metrics/compat",
        "/agents/weather-bot/metrics/compat",
        Agent,
    ),
    row("GET", "/agents", "/agents", Agent),
    row("GET", "/agents/stats", "/agents/stats", Admin),
    row("GET", "/agents/{agent_id}", "/agents/weather-bot", Agent),
    pin("DELETE", "/agents/{agent_id}", "/agents/weather-bot", Agent),
    row(
        "POST",
        "/agents/{agent_id}/connection/notify",
        "/agents/weather-bot/connection/notify",
        Agent,
    ),
    pin("POST", "/tokens/mint", "/tokens/mint", Admin),
    // "never sees gateway tokens": refused (`agent_only`) or answered by the gateway.
    either(
        "POST",
        "/tokens/validate",
        AgentOnly,
        Gateway(Endpoint::TokenValidate),
    ),
    either(
        "GET",
        "/tokens/validate",
        AgentOnly,
        Gateway(Endpoint::TokenValidate),
    ),
    row(
        "POST",
        "/tokens/refresh",
        "/tokens/refresh",
        Gateway(Endpoint::TokenRefresh),
    ),
    row(
        "POST",
        "/auth/agent/request_temp_token",
        "/auth/agent/request_temp_token",
        Public,
    ),
    row(
        "POST",
        "/auth/agent/validate_compliance",
        "/auth/agent/validate_compliance",
        Temp,
    ),
    row(
        "GET",
        "/auth/agent/validation/{validation_id}",
        "/auth/agent/validation/val_0123456789",
        Temp,
    ),
    row(
        "POST",
        "/auth/login",
        "/auth/login",
        Gateway(Endpoint::Login),
    ),
    row(
        "POST",
        "/auth/logout",
        "/auth/logout",
        Gateway(Endpoint::Logout),
    ),
    row(
        "POST",
        "/auth/set_pin",
        "/auth/set_pin",
        Gateway(Endpoint::SetPin),
    ),
    row(
        "POST",
        "/auth/verify_pin",
        "/auth/verify_pin",
        Gateway(Endpoint::VerifyPin),
    ),
    row(
        "GET",
        "/auth/pin_status",
        "/auth/pin_status",
        Gateway(Endpoint::PinStatus),
    ),
    row(
        "GET",
        "/auth/session_status",
        "/auth/session_status",
        Gateway(Endpoint::SessionStatus),
    ),
    row("WS", "/dashboard/ws", "/dashboard/ws", Admin),
    row("GET", "/dashboard/config", "/dashboard/config", Admin),
    pin("POST", "/dashboard/config", "/dashboard/config", Admin),
    row("GET", "/health", "/health", Public),
    row("GET", "/health/detailed", "/health/detailed", Admin),
    row("GET", "/health/config", "/health/config", Admin),
    row("GET", "/health/redis", "/health/redis", Admin),
    row("GET", "/health/azure", "/health/azure", Admin),
    row("GET", "/public/discover", "/public/discover", Public),
    row("POST", "/public/search", "/public/search", Public),
    row(
        "GET",
        "/public/agent/{agent_id}",
        "/public/agent/weather-bot",
        Public,
    ),
    row(
        "POST",
        "/public/connect/{agent_id}",
        "/public/connect/weather-bot",
        Public,
    ),
    row("WS", "/public/ws", "/public/ws", Public),
    row("GET", "/public/info", "/public/info", Public),
    row("GET", "/public/stats", "/public/stats", Public),
    row("GET", "/public/agent_types", "/public/agent_types", Public),
    row(
        "GET",
        "/.well-known/jwks.json",
        "/.well-known/jwks.json",
        Public,
    ),
    row(
        "OPTIONS",
        "/.well-known/jwks.json",
        "/.well-known/jwks.json",
        Public,
    ),
    row(
        "GET",
        "/.well-known/arcp-configuration",
        "/.well-known/arcp-configuration",
        Public,
    ),
    row(
        "OPTIONS",
        "/.well-known/arcp-configuration",
        "/.well-known/arcp-configuration",
        Public,
    ),
    row(
        "POST",
        "/security/sbom/verify",
        "/security/sbom/verify",
        Agent,
    ),
    row(
        "POST",
        "/security/container/scan",
        "/security/container/scan",
        Agent,
    ),
    row(
        "POST",
        "/security/attestation/challenge",
        "/security/attestation/challenge",
        Public,
    ),
    row(
        "POST",
        "/security/attestation/verify",
        "/security/attestation/verify",
        Agent,
    ),
    row(
        "GET",
        "/security/attestation/status/{agent_id}",
        "/security/attestation/status/weather-bot",
        Agent,
    ),
    row("GET", "/security/health", "/security/health", Public),
];

/// FastAPI's defaults and other paths the contract names outside the table (§1.1).
const EXTRA: &[Row] = &[
    row(
        "GET",
        "/docs/oauth2-redirect",
        "/docs/oauth2-redirect",
        Public,
    ),
    // Unknown paths default to admin (docs/design.md §5), so a new upstream route is never public.
    row("GET", "/not-in-arcp", "/not-in-arcp", Admin),
];

fn settings() -> arcp_gateway::config::Settings {
    let yaml = r#"
listeners:
  - address: "127.0.0.1:0"
    tls:
      development: {}
upstream:
  url: "http://127.0.0.1:8001"
routes:
  profile: arcp
  default_access: admin
"#;
    arcp_gateway::config::from_str(yaml, "route_table.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("minimal config rejected: {e}"))
}

fn method(name: &str) -> Method {
    match name {
        "WS" => Method::GET,
        other => Method::from_bytes(other.as_bytes()).unwrap(),
    }
}

#[test]
fn every_arcp_route_has_the_designed_access_kind() {
    let settings = settings();
    let mut wrong = Vec::new();
    for r in TABLE.iter().chain(EXTRA) {
        let route = settings.policy.route(&method(r.method), r.example);
        let access_ok = route.access == r.access || Some(route.access) == r.or;
        if !access_ok || route.require_pin != r.pin {
            wrong.push(format!(
                "{} {} ({}): got {:?} require_pin={} (rule `{}`), want {:?}{} require_pin={}",
                r.method,
                r.example,
                r.template,
                route.access,
                route.require_pin,
                route.name,
                r.access,
                r.or.map(|o| format!(" or {o:?}")).unwrap_or_default(),
                r.pin
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "routes with the wrong access:\n{}",
        wrong.join("\n")
    );
}

/// PINs are demanded only where docs/design.md §5 puts them.
#[test]
fn pins_are_only_on_the_three_destructive_operations() {
    let settings = settings();
    let pinned: BTreeSet<(String, &str)> = TABLE
        .iter()
        .filter(|r| r.pin)
        .map(|r| (r.method.to_owned(), r.template))
        .collect();
    let want: BTreeSet<(String, &str)> = [
        ("DELETE".to_owned(), "/agents/{agent_id}"),
        ("POST".to_owned(), "/tokens/mint"),
        ("POST".to_owned(), "/dashboard/config"),
    ]
    .into_iter()
    .collect();
    assert_eq!(pinned, want);
    // The read side of the same paths needs no PIN.
    for (m, p) in [
        (Method::GET, "/agents/weather-bot"),
        (Method::GET, "/dashboard/config"),
    ] {
        assert!(!settings.policy.route(&m, p).require_pin, "{m} {p}");
    }
}

/// The table above covers every row of the contract's §1.3 (docs/arcp-upstream-contract.md).
#[test]
fn the_table_covers_every_row_of_the_contract() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/arcp-upstream-contract.md"
    );
    let text =
        std::fs::read_to_string(path).expect("docs/arcp-upstream-contract.md is in the repository");
    let section = text
        .split("### 1.3 Route table")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the contract has a §1.3 route table");
    let mut in_contract = BTreeSet::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let verb = cells[1];
        if !matches!(
            verb,
            "GET" | "POST" | "DELETE" | "OPTIONS" | "WS" | "PUT" | "PATCH"
        ) {
            continue;
        }
        // "`/docs`, `/redoc`, `/openapi.json`" names several paths.
        for quoted in cells[2].split('`').skip(1).step_by(2) {
            let template = quoted.split('?').next().unwrap().to_owned();
            in_contract.insert((verb.to_owned(), template));
        }
    }
    assert!(
        in_contract.len() >= 50,
        "parsed only {} rows from §1.3",
        in_contract.len()
    );
    let here: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|r| (r.method.to_owned(), r.template.to_owned()))
        .collect();
    let missing: Vec<_> = in_contract.difference(&here).collect();
    assert!(
        missing.is_empty(),
        "contract rows missing here: {missing:?}"
    );
    let extra: Vec<_> = here.difference(&in_contract).collect();
    assert!(
        extra.is_empty(),
        "rows here that the contract lacks: {extra:?}"
    );
}
