//! Problem rendering (`problem::Problem`): arbitrary detail, instance, request id, timestamp
//! and extension values.
//!
//! Input: a kind byte, a flags byte (bit 0: override the status with the next two bytes),
//! then fields separated by 0x1F: detail, instance, request_id, timestamp, extension
//! values… (an extension value that parses as JSON is added as that JSON, else as a string).
//!
//! Invariants: the body is one JSON object whose members are, in order, `type, title,
//! status, detail, instance, timestamp, request_id`, the extensions in insertion order, then
//! `error_code`; every value round-trips; the response has the status and the problem
//! media type.
#![no_main]

use std::fmt;

use arcp_gateway::problem::{Problem, ProblemKind, CONTENT_TYPE_PROBLEM, TYPE_BASE};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// Extension names the gateway uses (src/), plus two it could.
const KEYS: [&str; 15] = [
    "attempt_type",
    "content_length",
    "header",
    "header_size",
    "max_header_size",
    "max_size",
    "max_uri_length",
    "retry_after",
    "session_id",
    "session_timeout",
    "timeout_seconds",
    "uri_length",
    "validation_errors",
    "errors",
    "hint",
];

/// A JSON object's members in document order.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

fuzz_target!(|data: &[u8]| {
    let [kind, flags, rest @ ..] = data else {
        return;
    };
    let kind = ProblemKind::ALL[*kind as usize % ProblemKind::ALL.len()];
    let (status, rest) = match rest {
        [hi, lo, rest @ ..] if flags & 1 == 1 => {
            let code = 100 + u16::from_be_bytes([*hi, *lo]) % 500;
            (StatusCode::from_u16(code).ok(), rest)
        }
        _ => (None, rest),
    };
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\u{1f}');
    let detail = fields.next().unwrap_or_default().to_owned();
    let instance = fields.next().unwrap_or_default();
    let request_id = fields.next().unwrap_or_default();
    let timestamp = fields.next().unwrap_or_default();

    let mut problem = Problem::new(kind, detail.clone());
    if let Some(status) = status {
        problem = problem.with_status(status);
    }
    let mut extensions = Vec::new();
    for (i, value) in fields.take(KEYS.len()).enumerate() {
        let value = serde_json::from_str::<Value>(value).unwrap_or(Value::String(value.into()));
        // What a reader gets back: serde_json's default float parsing may miss by one ULP.
        let read_back = serde_json::from_slice(&serde_json::to_vec(&value).expect("JSON"))
            .expect("a rendered value parses");
        problem = problem.with_extension(KEYS[i], value);
        extensions.push((KEYS[i].to_owned(), read_back));
    }
    let status = problem.status();

    let json = problem.to_json(instance, request_id, timestamp);
    let Ordered(members) =
        serde_json::from_slice(&json).expect("the problem body is a JSON object");
    let mut want = vec![
        (
            "type".to_owned(),
            Value::from(format!("{TYPE_BASE}{}", kind.slug())),
        ),
        ("title".to_owned(), Value::from(kind.title())),
        ("status".to_owned(), Value::from(status.as_u16())),
        ("detail".to_owned(), Value::from(detail)),
        ("instance".to_owned(), Value::from(instance)),
        ("timestamp".to_owned(), Value::from(timestamp)),
        ("request_id".to_owned(), Value::from(request_id)),
    ];
    want.extend(extensions);
    want.push(("error_code".to_owned(), Value::from(kind.error_code())));
    assert_eq!(members, want);

    let response = problem.into_response(instance, request_id);
    assert_eq!(response.status(), status);
    assert_eq!(
        response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(CONTENT_TYPE_PROBLEM.as_bytes())
    );
});
