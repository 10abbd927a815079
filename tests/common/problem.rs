//! Assertions on RFC 9457 problem documents as the gateway renders them (docs/design.md §6).

use super::TestResponse;

pub const PROBLEM_BASE: &str = "https://arcp.0x001.tech/docs/problems/";

/// The leading members of every problem document, in wire order (docs/design.md §6).
pub const PROBLEM_FIELDS: [&str; 7] = [
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "timestamp",
    "request_id",
];

/// Top-level keys of a JSON object in the order they appear in `text`.
pub fn json_key_order(text: &str) -> Vec<String> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(k);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(Keys)
        .unwrap_or_else(|e| panic!("not a JSON object ({e}): {text}"))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (RFC 3339 in UTC).
pub fn is_rfc3339_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let num = |from: usize, to: usize| -> Option<u32> {
        let s = ts.get(from..to)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let shape = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[b.len() - 1] == b'Z';
    if !shape {
        return false;
    }
    let fraction_ok = match b.len() {
        20 => true,
        n => b[19] == b'.' && n > 21 && b[20..n - 1].iter().all(u8::is_ascii_digit),
    };
    let in_range = |v: Option<u32>, lo: u32, hi: u32| v.is_some_and(|v| (lo..=hi).contains(&v));
    fraction_ok
        && num(0, 4).is_some()
        && in_range(num(5, 7), 1, 12)
        && in_range(num(8, 10), 1, 31)
        && in_range(num(11, 13), 0, 23)
        && in_range(num(14, 16), 0, 59)
        && in_range(num(17, 19), 0, 60)
}

/// Checks a gateway problem response and returns its JSON: status, media type, the seven
/// leading members in order with `error_code` last, `type` = base + `slug`, `instance`,
/// an RFC 3339 UTC `timestamp`, and `request_id` equal to the `X-Request-ID` header.
pub fn assert_problem(
    resp: &TestResponse,
    status: u16,
    slug: &str,
    error_code: &str,
    instance: &str,
) -> serde_json::Value {
    let text = resp.text();
    assert_eq!(resp.status.as_u16(), status, "status; body: {text}");
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "media type; body: {text}"
    );
    let keys = json_key_order(&text);
    assert!(
        keys.len() > PROBLEM_FIELDS.len(),
        "too few members: {keys:?}"
    );
    assert_eq!(
        &keys[..PROBLEM_FIELDS.len()],
        PROBLEM_FIELDS,
        "member order"
    );
    assert_eq!(keys.last().unwrap(), "error_code", "error_code is last");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], format!("{PROBLEM_BASE}{slug}"), "{text}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{text}");
    assert_eq!(v["status"].as_u64(), Some(u64::from(status)), "{text}");
    assert!(
        v["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{text}"
    );
    assert_eq!(v["instance"], instance, "{text}");
    let ts = v["timestamp"].as_str().expect("timestamp is a string");
    assert!(is_rfc3339_utc(ts), "timestamp {ts:?} is not RFC 3339 UTC");
    let header_id = resp.header("x-request-id").expect("X-Request-ID header");
    assert_eq!(v["request_id"], header_id, "request_id matches the header");
    assert_eq!(v["error_code"], error_code, "{text}");
    v
}

/// A gateway-generated request id: `req_` and lower-case hex or alphanumerics.
pub fn is_generated_request_id(id: &str) -> bool {
    id.strip_prefix("req_")
        .is_some_and(|rest| rest.len() >= 16 && rest.bytes().all(|c| c.is_ascii_alphanumeric()))
}
