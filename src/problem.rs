//! RFC 9457 problem documents in ARCP's catalogue.
//!
//! Every response the gateway makes up itself on an error path is one of these. The
//! catalogue is closed ([`ProblemKind`]): slugs, titles and default statuses are ARCP's own
//! (`ARCPProblemTypes`), so clients that already understand the upstream understand the
//! gateway. Field order on the wire is fixed: `type, title, status, detail, instance,
//! timestamp, request_id`, then extensions in insertion order, then `error_code`.
//!
//! This module renders; it never decides. Turning a module error into a [`Problem`] happens
//! in the `pipeline` (one place), and `detail` texts are fixed strings chosen there, never
//! the `Display` of an internal error.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::body::Body;

/// Base URI of ARCP's problem types (contract §4.1).
pub const TYPE_BASE: &str = "https://arcp.0x001.tech/docs/problems/";

/// Media type of every problem document (RFC 9457 §3).
pub const CONTENT_TYPE_PROBLEM: &str = "application/problem+json";

/// The closed catalogue of problem types the gateway emits (contract §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    AuthenticationFailed,
    TokenInvalid,
    SessionInvalid,
    SessionExpired,
    InsufficientPermissions,
    PinRequired,
    PinAlreadySet,
    PinNotSet,
    PinIncorrect,
    ValidationFailed,
    InvalidInput,
    RequiredHeaderMissing,
    RateLimitExceeded,
    RequestTooLarge,
    HeadersTooLarge,
    RequestError,
    Forbidden,
    NotFound,
    InternalError,
    EndpointUnreachable,
    ConnectionTimeout,
}

impl ProblemKind {
    /// Every kind, for exhaustive tests and documentation.
    pub const ALL: [ProblemKind; 21] = [
        Self::AuthenticationFailed,
        Self::TokenInvalid,
        Self::SessionInvalid,
        Self::SessionExpired,
        Self::InsufficientPermissions,
        Self::PinRequired,
        Self::PinAlreadySet,
        Self::PinNotSet,
        Self::PinIncorrect,
        Self::ValidationFailed,
        Self::InvalidInput,
        Self::RequiredHeaderMissing,
        Self::RateLimitExceeded,
        Self::RequestTooLarge,
        Self::HeadersTooLarge,
        Self::RequestError,
        Self::Forbidden,
        Self::NotFound,
        Self::InternalError,
        Self::EndpointUnreachable,
        Self::ConnectionTimeout,
    ];

    /// The slug appended to [`TYPE_BASE`].
    pub fn slug(self) -> &'static str {
        match self {
            Self::AuthenticationFailed => "authentication-failed",
            Self::TokenInvalid => "token-invalid",
            Self::SessionInvalid => "session-invalid",
            Self::SessionExpired => "session-expired",
            Self::InsufficientPermissions => "insufficient-permissions",
            Self::PinRequired => "pin-required",
            Self::PinAlreadySet => "pin-already-set",
            Self::PinNotSet => "pin-not-set",
            Self::PinIncorrect => "pin-incorrect",
            Self::ValidationFailed => "validation-failed",
            Self::InvalidInput => "invalid-input",
            Self::RequiredHeaderMissing => "required-header-missing",
            Self::RateLimitExceeded => "rate-limit-exceeded",
            Self::RequestTooLarge => "request-too-large",
            Self::HeadersTooLarge => "headers-too-large",
            Self::RequestError => "request-error",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::InternalError => "internal-error",
            Self::EndpointUnreachable => "endpoint-unreachable",
            Self::ConnectionTimeout => "connection-timeout",
        }
    }

    /// ARCP's title for the type.
    pub fn title(self) -> &'static str {
        match self {
            Self::AuthenticationFailed => "Authentication Failed",
            Self::TokenInvalid => "Invalid or Expired Token",
            Self::SessionInvalid => "Session Validation Failed",
            Self::SessionExpired => "Session Expired",
            Self::InsufficientPermissions => "Insufficient Permissions",
            Self::PinRequired => "PIN Required",
            Self::PinAlreadySet => "PIN Already Set",
            Self::PinNotSet => "PIN Not Set",
            Self::PinIncorrect => "Incorrect PIN",
            Self::ValidationFailed => "Request Validation Failed",
            Self::InvalidInput => "Invalid Input Data",
            Self::RequiredHeaderMissing => "Required Header Missing",
            Self::RateLimitExceeded => "Rate Limit Exceeded",
            Self::RequestTooLarge => "Request Too Large",
            Self::HeadersTooLarge => "Request Headers Too Large",
            Self::RequestError => "Request Processing Error",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Resource Not Found",
            Self::InternalError => "Internal Server Error",
            Self::EndpointUnreachable => "Endpoint Unreachable",
            Self::ConnectionTimeout => "Connection Timeout",
        }
    }

    /// ARCP's default status for the type.
    pub fn default_status(self) -> StatusCode {
        match self {
            Self::AuthenticationFailed
            | Self::TokenInvalid
            | Self::SessionInvalid
            | Self::SessionExpired
            | Self::PinIncorrect => StatusCode::UNAUTHORIZED,
            Self::InsufficientPermissions | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::PinRequired
            | Self::PinAlreadySet
            | Self::PinNotSet
            | Self::InvalidInput
            | Self::RequiredHeaderMissing
            | Self::RequestError => StatusCode::BAD_REQUEST,
            Self::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTooLarge | Self::HeadersTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::EndpointUnreachable => StatusCode::BAD_GATEWAY,
            Self::ConnectionTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The documented `error_code` (ARCP's `docs/problems/*.md`); the upper-cased slug
    /// where the docs name none.
    pub fn error_code(self) -> &'static str {
        match self {
            Self::AuthenticationFailed => "INVALID_CREDENTIALS",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::SessionInvalid => "SESSION_INVALID",
            Self::SessionExpired => "SESSION_EXPIRED",
            Self::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            Self::PinRequired => "PIN_REQUIRED",
            Self::PinAlreadySet => "PIN_ALREADY_SET",
            Self::PinNotSet => "PIN_NOT_SET",
            Self::PinIncorrect => "PIN_INCORRECT",
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::InvalidInput => "INVALID_INPUT",
            Self::RequiredHeaderMissing => "REQUIRED_HEADER_MISSING",
            Self::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Self::RequestTooLarge => "REQUEST_TOO_LARGE",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Self::RequestError => "REQUEST_ERROR",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::InternalError => "INTERNAL_ERROR",
            Self::EndpointUnreachable => "ENDPOINT_UNREACHABLE",
            Self::ConnectionTimeout => "CONNECTION_TIMEOUT",
        }
    }
}

/// One problem, ready to be rendered for a request.
#[derive(Debug, Clone)]
pub struct Problem {
    kind: ProblemKind,
    status: StatusCode,
    title: Option<&'static str>,
    detail: Cow<'static, str>,
    error_code: &'static str,
    extensions: Vec<(&'static str, Value)>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of `kind` with ARCP's default status and title.
    pub fn new(kind: ProblemKind, detail: impl Into<Cow<'static, str>>) -> Self {
        let status = kind.default_status();
        let mut problem = Problem {
            kind,
            status,
            title: None,
            detail: detail.into(),
            error_code: kind.error_code(),
            extensions: Vec::new(),
            headers: Vec::new(),
        };
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §11.6.1: a 401 carries a challenge.
            problem
                .headers
                .push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        problem
    }

    /// Overrides the status (ARCP uses several statuses for some types).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Overrides the title with one of ARCP's documented variants.
    pub fn with_title(mut self, title: &'static str) -> Self {
        self.title = Some(title);
        self
    }

    /// Overrides the documented `error_code` (e.g. `TOKEN_EXPIRED`).
    pub fn with_error_code(mut self, code: &'static str) -> Self {
        self.error_code = code;
        self
    }

    /// Appends an extension member; values keep their JSON type.
    pub fn with_extension(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.extensions.push((key, value.into()));
        self
    }

    /// Adds `Retry-After` (RFC 9110 §10.2.3) in whole seconds, at least 1.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.headers
            .push((RETRY_AFTER, HeaderValue::from(seconds.max(1))));
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Looks up an extension member (for tests and logs).
    pub fn extension(&self, key: &str) -> Option<&Value> {
        self.extensions
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The JSON body for `instance` (the request path) and `request_id`.
    pub fn to_json(&self, instance: &str, request_id: &str, timestamp: &str) -> Vec<u8> {
        let doc = Document {
            problem: self,
            instance,
            request_id,
            timestamp,
        };
        // Serialising a struct of strings and `Value`s cannot fail.
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// Renders the full response.
    pub fn into_response(self, instance: &str, request_id: &str) -> Response<Body> {
        let timestamp = crate::clock::rfc3339_now();
        let json = self.to_json(instance, request_id, &timestamp);
        let mut response = Response::new(Body::full(Bytes::from(json)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_PROBLEM));
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

struct Document<'a> {
    problem: &'a Problem,
    instance: &'a str,
    request_id: &'a str,
    timestamp: &'a str,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.problem;
        let mut map = serializer.serialize_map(Some(8 + p.extensions.len()))?;
        let type_uri = format!("{TYPE_BASE}{}", p.kind.slug());
        map.serialize_entry("type", &type_uri)?;
        map.serialize_entry("title", p.title.unwrap_or(p.kind.title()))?;
        map.serialize_entry("status", &p.status.as_u16())?;
        map.serialize_entry("detail", &p.detail)?;
        map.serialize_entry("instance", self.instance)?;
        map.serialize_entry("timestamp", self.timestamp)?;
        map.serialize_entry("request_id", self.request_id)?;
        for (key, value) in &p.extensions {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("error_code", p.error_code)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(json: &[u8]) -> Vec<String> {
        // Key order as emitted: scan the raw text, since serde_json maps sort.
        let text = std::str::from_utf8(json).unwrap();
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut found: Vec<(usize, String)> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.clone()))
            .collect();
        found.sort();
        found.into_iter().map(|(_, k)| k).collect()
    }

    #[test]
    fn field_order_is_fixed() {
        let p =
            Problem::new(ProblemKind::SessionExpired, "x").with_extension("session_timeout", 60);
        let json = p.to_json("/agents", "req_1", "2026-01-01T00:00:00Z");
        assert_eq!(
            keys(&json),
            [
                "type",
                "title",
                "status",
                "detail",
                "instance",
                "timestamp",
                "request_id",
                "session_timeout",
                "error_code"
            ]
        );
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["session_timeout"], 60, "extensions keep their JSON type");
        assert_eq!(v["error_code"], "SESSION_EXPIRED");
        assert_eq!(
            v["type"],
            "https://arcp.0x001.tech/docs/problems/session-expired"
        );
    }

    #[test]
    fn every_kind_has_a_distinct_slug_and_matching_status() {
        let mut slugs = std::collections::HashSet::new();
        for kind in ProblemKind::ALL {
            assert!(slugs.insert(kind.slug()), "duplicate slug {}", kind.slug());
            let p = Problem::new(kind, "d");
            assert_eq!(p.status(), kind.default_status());
            let r = p.into_response("/x", "req_1");
            assert_eq!(r.headers()[CONTENT_TYPE], CONTENT_TYPE_PROBLEM);
            assert_eq!(
                r.headers().contains_key(WWW_AUTHENTICATE),
                r.status() == StatusCode::UNAUTHORIZED
            );
        }
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let r = Problem::new(ProblemKind::RateLimitExceeded, "d")
            .with_retry_after(0)
            .into_response("/", "req_1");
        assert_eq!(r.headers()[RETRY_AFTER], "1");
    }
}
