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
    // One table lookup a byte: every request's id is checked as it is written upstream.
    static PLAIN: [bool; 256] = {
        let mut plain = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            plain[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':');
            b += 1;
        }
        plain
    };
    !id.is_empty() && id.len() <= 128 && id.iter().all(|&c| PLAIN[usize::from(c)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_request_ids_are_1_to_128_bytes_of_alphanumerics_and_four_marks() {
        for c in 0..=255u8 {
            let expected = c.is_ascii_alphanumeric() || b"-_.:".contains(&c);
            assert_eq!(plain_request_id(&[c]), expected, "{c:#x}");
            assert_eq!(plain_request_id(&[b'a', c, b'b']), expected, "{c:#x}");
        }
        assert!(!plain_request_id(b""));
        assert!(plain_request_id(&[b'x'; 128]));
        assert!(!plain_request_id(&[b'x'; 129]));
    }
}
