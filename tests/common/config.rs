//! The gateway's configuration for a test, built from typed values ([`serde_json::Value`],
//! usually written with `json!`) and rendered to YAML by serde-saphyr, the library the gateway
//! parses it with: no hand-made quoting, escaping or indentation.
//!
//! A test states only what differs from the base: a TLS listener with the test PKI, the
//! upstream URL, `logging.level: info` and every route public. It does not check the
//! configuration; the gateway does, and a rejected file is printed whole by the starter.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

use super::Pki;

/// What goes into the gateway's YAML besides the listener.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    upstream_url: String,
    /// `server:` keys (`drain_timeout` …).
    server: Map<String, Value>,
    /// `upstream:` keys besides `url` (`response_timeout`, `service_account` …).
    upstream: Map<String, Value>,
    /// `limits:` keys (`max_body_bytes` …).
    limits: Map<String, Value>,
    /// `logging:` keys; `level` is always set.
    logging: Map<String, Value>,
    /// The `routes:` section.
    routes: Value,
    /// Further top-level sections (`auth`, `sessions` …).
    sections: Map<String, Value>,
    /// Keys of the listener besides `address` and `tls` (`proxy_protocol`).
    listener: Map<String, Value>,
}

impl GatewayOptions {
    /// No profile, every route public, logging at `info`.
    pub fn new(upstream_url: impl Into<String>) -> Self {
        GatewayOptions {
            upstream_url: upstream_url.into(),
            server: Map::new(),
            upstream: Map::new(),
            limits: Map::new(),
            logging: json_map(json!({"level": "info"})),
            routes: json!({"profile": "none", "default_access": "public"}),
            sections: Map::new(),
            listener: Map::new(),
        }
    }

    /// Sets `listeners[0].<key>`, e.g. `("proxy_protocol", json!({"trusted": ["127.0.0.1"]}))`.
    pub fn listener(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.listener.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `server.<key>`, e.g. `("drain_timeout", "10s")`.
    pub fn server(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.server.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `upstream.<key>`, e.g. `("response_timeout", "500ms")`.
    pub fn upstream(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.upstream.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `limits.<key>`, e.g. `("max_body_bytes", "64KiB")`.
    pub fn limit(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.limits.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `logging.<key>`, e.g. `("level", "debug")` or `("format", "json")`.
    pub fn logging(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.logging.insert(key.to_owned(), value.into());
        self
    }

    /// Replaces the `routes:` section.
    pub fn routes(mut self, routes: Value) -> Self {
        self.routes = routes;
        self
    }

    /// Sets a further top-level section, e.g. `("sessions", json!({"idle_timeout": "2s"}))`.
    pub fn section(mut self, name: &str, body: Value) -> Self {
        self.sections.insert(name.to_owned(), body);
        self
    }

    /// The further top-level section `name`, to change in place (e.g. `auth.login` keys).
    pub fn section_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.sections.get_mut(name)
    }

    /// The configuration file for a TLS listener on `listen`.
    pub fn yaml(&self, listen: SocketAddr, pki: &Pki) -> String {
        let mut upstream = self.upstream.clone();
        upstream.insert("url".to_owned(), self.upstream_url.clone().into());
        let mut listener = json_map(json!({
            "address": listen.to_string(),
            "tls": {"cert_file": pki.cert_file, "key_file": pki.key_file},
        }));
        listener.extend(self.listener.clone());
        let mut doc = json_map(json!({
            "listeners": [listener],
            "upstream": upstream,
            "logging": self.logging,
            "routes": self.routes,
        }));
        for (name, section) in [("server", &self.server), ("limits", &self.limits)] {
            if !section.is_empty() {
                doc.insert(name.to_owned(), Value::Object(section.clone()));
            }
        }
        doc.extend(self.sections.clone());
        serde_saphyr::to_string(&doc).expect("render the test configuration as YAML")
    }
}

/// The object inside `value` (a `json!({...})` literal).
fn json_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}
