//! Header names ARCP defines or reads, in one place every stage can import.
//!
//! ARCP binds an admin session to `X-Client-Fingerprint` (contract §2.5), reads a session
//! PIN from `X-Session-Pin` on the routes the gateway protects with one (docs/design.md §5),
//! and echoes `X-Request-ID`. The gateway's own forwarding headers (`X-Forwarded-*`) live
//! with the header surgery in `proxy::headers`.

use http::header::HeaderName;

/// The client fingerprint an admin session is bound to.
pub static X_CLIENT_FINGERPRINT: HeaderName = HeaderName::from_static("x-client-fingerprint");
/// The session PIN on routes that demand one.
pub static X_SESSION_PIN: HeaderName = HeaderName::from_static("x-session-pin");
/// The request id, sent upstream and echoed to the client.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether `id` is a request id the gateway sends and echoes as it is: 1 to 128 bytes of
/// `[A-Za-z0-9._:-]` (so never a byte that could end a field or a line).
pub fn plain_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}
