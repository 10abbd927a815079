//! The access-log line, written without tracing's generic formatter.
//!
//! One line per request is the one log line on the hot path. With `logging.format: json` it is
//! formatted here, straight into the worker's batch ([`super::batch`]), in exactly the shape
//! tracing-subscriber's JSON formatter gives every other line (the same keys in the same
//! order, strings escaped by serde_json, numbers printed by serde_json, the timestamp in
//! RFC 3339 with microseconds, UTC). Whether the line is written at all is still tracing's
//! decision (`logging.level`, `RUST_LOG`, reloads): only the formatting is ours.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::AccessLog;

/// Appends the JSON line for `a` (with its newline) to `out`.
pub(super) fn format_json(out: &mut Vec<u8>, a: &AccessLog<'_>, now: SystemTime) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
    string(out, a.method.as_str());
    out.extend_from_slice(b",\"path\":");
    string(out, a.path);
    out.extend_from_slice(b",\"route\":");
    string(out, a.route.unwrap_or("-"));
    let _ = write!(out, ",\"status\":{}", a.status);
    if let Some(upstream) = a.upstream_status {
        let _ = write!(out, ",\"upstream_status\":{upstream}");
    }
    out.extend_from_slice(b",\"duration_ms\":");
    let _ = serde_json::to_writer(&mut *out, &(a.duration.as_secs_f64() * 1000.0));
    out.extend_from_slice(b",\"request_id\":");
    string(out, a.request_id);
    if let Some(user) = a.user {
        out.extend_from_slice(b",\"user\":");
        string(out, user);
    }
    let _ = writeln!(
        out,
        ",\"peer\":\"{}\",\"target\":\"arcp_gateway::access\"}}",
        a.peer.ip()
    );
}

/// A JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

thread_local! {
    /// The date and time to the second of the last line this thread wrote, formatted.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `2026-12-02T17:39:19.509485Z` (the `Z` included).
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, civil(secs));
        }
        out.extend_from_slice(&cached.1);
    });
    let _ = write!(out, ".{:06}Z", since.subsec_micros());
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the Unix epoch (UTC; proleptic Gregorian, the
/// days-to-civil algorithm of Howard Hinnant's `chrono`-compatible date library).
fn civil(secs: u64) -> [u8; 19] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut text = [0u8; 19];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    let _ = write!(
        cursor,
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
    );
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::SocketAddr;
    use std::time::Duration;

    use http::Method;

    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        let at = |s: u64| String::from_utf8(civil(s).to_vec()).unwrap();
        assert_eq!(at(0), "1970-01-01T00:00:00");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(at(1_796_251_159), "2026-12-02T22:39:19");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00");
    }

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What tracing-subscriber's JSON formatter, set up as `observability::init` sets it up,
    /// writes for the access event.
    fn through_tracing(a: &AccessLog<'_>) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || super::super::access_event(a));
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// The timestamp's value cut out, for comparing lines written at different times.
    fn untimed(line: &str) -> String {
        let start = line.find("\"timestamp\":\"").unwrap() + 13;
        let end = start + line[start..].find('"').unwrap();
        format!("{}{}", &line[..start], &line[end..])
    }

    /// The line is what tracing-subscriber's JSON formatter writes for the same event: the
    /// same keys, in the same order, with the same escaping and number formatting.
    #[test]
    fn the_line_is_the_one_tracing_would_write() {
        let peer: SocketAddr = "[::1]:4000".parse().unwrap();
        let full = AccessLog {
            method: &Method::GET,
            path: "/agents/\"x\"\\\u{1}\u{7f}é",
            route: Some("agents"),
            status: 200,
            upstream_status: Some(201),
            duration: Duration::from_nanos(562_839_417),
            request_id: "req_15a04bf1b1c01f223b3017bd",
            user: Some("ARCP"),
            peer,
        };
        let bare = AccessLog {
            method: &Method::DELETE,
            route: None,
            upstream_status: None,
            user: None,
            peer: "10.0.0.7:1".parse().unwrap(),
            ..full
        };
        for a in [&full, &bare] {
            let now = UNIX_EPOCH + Duration::from_micros(1_796_251_159_000_042);
            let mut out = Vec::new();
            format_json(&mut out, a, now);
            let ours = String::from_utf8(out).unwrap();
            assert!(
                ours.starts_with(r#"{"timestamp":"2026-12-02T22:39:19.000042Z","#),
                "{ours}"
            );
            assert_eq!(untimed(&ours), untimed(&through_tracing(a)));
        }
    }
}
