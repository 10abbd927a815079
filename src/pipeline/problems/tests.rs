//! Each error maps to its documented problem type, status and details.

use super::*;
use crate::session::SessionId;
use std::time::Duration;

fn sessions() -> SessionSettings {
    SessionSettings {
        idle_timeout: Duration::from_secs(3600),
        absolute_timeout: Duration::from_secs(12 * 3600),
        max_per_user: 5,
        max_fingerprint_mismatches: 5,
        capacity: 10,
    }
}

/// Each error maps to the documented type, status and details.
#[test]
fn mapping_table() {
    let sid = SessionId::random();
    let s = sessions();
    let cases: Vec<(GatewayError, &str, u16)> = vec![
        (
            AdmitError::MissingBearer("admin").into(),
            "authentication-failed",
            401,
        ),
        (
            AdmitError::Token(TokenError::Invalid).into(),
            "token-invalid",
            401,
        ),
        (
            AdmitError::Token(TokenError::Expired { sid: None }).into(),
            "token-invalid",
            401,
        ),
        (AdmitError::SessionExpired.into(), "session-expired", 401),
        (AdmitError::SessionCapReached.into(), "session-expired", 401),
        (
            AdmitError::SessionEnded {
                sid,
                why: Ended::LoggedOut,
            }
            .into(),
            "session-invalid",
            401,
        ),
        (
            AdmitError::FingerprintMismatch { sid }.into(),
            "session-invalid",
            401,
        ),
        (
            AdmitError::AgentOnAdmin {
                role: "agent".into(),
            }
            .into(),
            "insufficient-permissions",
            403,
        ),
        (AdmitError::PinRequired.into(), "pin-required", 400),
        (AdmitError::RegistrationToken.into(), "token-invalid", 403),
        (
            AdmitError::NotOwnAgent.into(),
            "insufficient-permissions",
            403,
        ),
        (
            AdmitError::AmbiguousQuery("token").into(),
            "request-error",
            400,
        ),
        (AdmitError::PinNotSet.into(), "pin-not-set", 400),
        (AdmitError::PinIncorrect.into(), "pin-incorrect", 401),
        (
            AnswerError::FingerprintMissing.into(),
            "required-header-missing",
            400,
        ),
        (
            AnswerError::BadCredentials.into(),
            "authentication-failed",
            401,
        ),
        (
            AnswerError::Invalid("x".into()).into(),
            "validation-failed",
            422,
        ),
        (AnswerError::PinAlreadySet.into(), "pin-already-set", 400),
        (
            BrokerError::NotConfigured.into(),
            "endpoint-unreachable",
            503,
        ),
        (FrameError::AmbiguousPath("x").into(), "request-error", 400),
        (
            FrameError::AmbiguousFraming("x").into(),
            "request-error",
            400,
        ),
        (
            GatewayError::BodyTooSlow(crate::body::ReadError::TooSlow { min_rate: 1 }),
            "request-error",
            408,
        ),
        (
            AnswerError::BodyTooSlow(crate::body::ReadError::TooSlow { min_rate: 1 }).into(),
            "request-error",
            408,
        ),
        (
            SocketError::TooManyFromAddress.into(),
            "rate-limit-exceeded",
            429,
        ),
        (SocketError::PublicFull.into(), "rate-limit-exceeded", 503),
    ];
    for (err, slug, status) in cases {
        let p = err.problem(&s);
        assert_eq!(p.kind().slug(), slug, "{err:?}");
        assert_eq!(p.status().as_u16(), status, "{err:?}");
    }
}

#[test]
fn seed_shapes() {
    let s = sessions();
    let p = GatewayError::from(AdmitError::SessionExpired).problem(&s);
    assert_eq!(
        p.detail(),
        "Admin session has expired after 60 minutes of inactivity"
    );
    assert_eq!(
        p.extension("session_timeout"),
        Some(&serde_json::json!(3600))
    );
    let sid = SessionId::random();
    let p = GatewayError::from(AdmitError::FingerprintMismatch { sid }).problem(&s);
    assert_eq!(
        p.detail(),
        "Session fingerprint mismatch - please re-authenticate"
    );
    assert_eq!(
        p.extension("session_id"),
        Some(&serde_json::json!(sid.public_ref()))
    );
    let p = GatewayError::from(AnswerError::FingerprintMissing).problem(&s);
    assert_eq!(
        p.extension("header"),
        Some(&serde_json::json!("X-Client-Fingerprint"))
    );
}
