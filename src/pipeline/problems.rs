//! Errors become problem documents here, and only here.
//!
//! An exhaustive `match` per error type: adding a variant anywhere fails to compile until it
//! has a public face. Details are fixed texts (ARCP's where ARCP has one); internal error
//! text never reaches a client.

use http::StatusCode;

use super::admit::AdmitError;
use super::answer::AnswerError;
use super::frame::FrameError;
use super::GatewayError;
use crate::auth::token::TokenError;
use crate::problem::{Problem, ProblemKind};
use crate::proxy::websocket::SocketError;
use crate::session::Ended;
use crate::session::SessionSettings;
use crate::upstream::{BrokerError, UpstreamError};

const INTERNAL: &str = "An unexpected error occurred. Try again later.";
/// Seconds a client refused a WebSocket over a cap is told to wait (sockets close at
/// unpredictable times; a few seconds spreads the retries).
const SOCKET_RETRY_AFTER: u64 = 5;

impl GatewayError {
    /// The public face of each error.
    pub fn problem(&self, sessions: &SessionSettings) -> Problem {
        match self {
            GatewayError::Frame(e) => frame(e),
            GatewayError::Admit(e) => admit(e, sessions),
            GatewayError::Answer(e) => answer(e),
            GatewayError::Upstream(e) => upstream(e),
            GatewayError::Broker(e) => broker(e),
            GatewayError::ReplayImpossible => Problem::new(
                ProblemKind::EndpointUnreachable,
                "The upstream session was renewed while this request streamed; retry the request",
            )
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .with_retry_after(1),
            GatewayError::Socket(e) => socket(e),
            GatewayError::BodyTooSlow(_) => body_too_slow(),
        }
    }
}

/// RFC 9110 §15.5.9: the server would not wait longer for the request.
fn body_too_slow() -> Problem {
    Problem::new(
        ProblemKind::RequestError,
        "The request body did not arrive in time",
    )
    .with_status(StatusCode::REQUEST_TIMEOUT)
    .with_title("Request Timeout")
}

fn socket(e: &SocketError) -> Problem {
    match e {
        SocketError::BadHandshake => {
            Problem::new(ProblemKind::RequestError, "Invalid WebSocket handshake")
        }
        SocketError::NotOffered => Problem::new(
            ProblemKind::RequestError,
            "WebSocket upgrades are not offered on this endpoint",
        ),
        SocketError::Timeout => Problem::new(
            ProblemKind::ConnectionTimeout,
            "The upstream service did not respond in time",
        ),
        SocketError::Upstream(_) => Problem::new(
            ProblemKind::EndpointUnreachable,
            "The upstream service is unreachable",
        ),
        SocketError::TooManyFromAddress => Problem::new(
            ProblemKind::RateLimitExceeded,
            "Too many WebSockets are open from this address; close one or retry later",
        )
        .with_extension("retry_after", SOCKET_RETRY_AFTER)
        .with_retry_after(SOCKET_RETRY_AFTER),
        // Capacity of the whole gateway, not this client's doing: 503 (RFC 9110 §15.6.4).
        SocketError::PublicFull => Problem::new(
            ProblemKind::RateLimitExceeded,
            "Too many public WebSockets are open; retry later",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_title("Service Unavailable")
        .with_extension("retry_after", SOCKET_RETRY_AFTER)
        .with_retry_after(SOCKET_RETRY_AFTER),
    }
}

fn frame(e: &FrameError) -> Problem {
    match e {
        FrameError::UriTooLong { len, max } => Problem::new(
            ProblemKind::RequestError,
            format!("Request target of {len} bytes exceeds maximum limit of {max} bytes"),
        )
        .with_status(StatusCode::URI_TOO_LONG)
        .with_title("URI Too Long")
        .with_extension("uri_length", *len)
        .with_extension("max_uri_length", *max),
        FrameError::HeadersTooLarge { size, max } => Problem::new(
            ProblemKind::HeadersTooLarge,
            format!("Request headers size {size} bytes exceeds maximum limit of {max} bytes"),
        )
        .with_extension("header_size", *size)
        .with_extension("max_header_size", *max),
        FrameError::BodyTooLarge { declared, max } => Problem::new(
            ProblemKind::RequestTooLarge,
            format!("Request body of {declared} bytes exceeds maximum limit of {max} bytes"),
        )
        .with_extension("content_length", *declared)
        .with_extension("max_size", *max),
        FrameError::BadContentLength => {
            Problem::new(ProblemKind::RequestError, "Invalid Content-Length header")
        }
        FrameError::DuplicateHeader(name) => Problem::new(
            ProblemKind::RequestError,
            format!("Ambiguous request: the {name} header appears more than once"),
        ),
        FrameError::MisdirectedHost => Problem::new(
            ProblemKind::RequestError,
            "This gateway does not serve the requested host",
        )
        .with_status(StatusCode::MISDIRECTED_REQUEST)
        .with_title("Misdirected Request"),
        FrameError::AmbiguousPath(why) => Problem::new(
            ProblemKind::RequestError,
            format!("Ambiguous request path rejected: {why}"),
        ),
        FrameError::AmbiguousFraming(why) => Problem::new(
            ProblemKind::RequestError,
            format!("Ambiguous message framing rejected: {why}"),
        ),
    }
}

fn token(e: &TokenError) -> Problem {
    let invalid = Problem::new(ProblemKind::TokenInvalid, "Invalid or expired token");
    match e {
        TokenError::Expired { .. } => invalid.with_error_code("TOKEN_EXPIRED"),
        TokenError::ForeignAdmin => Problem::new(
            ProblemKind::TokenInvalid,
            "Admin tokens are issued by the gateway; log in at /auth/login",
        ),
        TokenError::Malformed
        | TokenError::UnknownKid
        | TokenError::Invalid
        | TokenError::NoUpstreamKey
        | TokenError::Sign => invalid,
    }
}

fn admit(e: &AdmitError, sessions: &SessionSettings) -> Problem {
    let session_invalid = |sid: &crate::session::SessionId, detail: &'static str| {
        Problem::new(ProblemKind::SessionInvalid, detail)
            .with_extension("session_id", sid.public_ref())
    };
    match e {
        AdmitError::MissingBearer(kind) => Problem::new(
            ProblemKind::AuthenticationFailed,
            format!("Authentication required for {kind} endpoint"),
        ),
        AdmitError::Token(t) => token(t),
        AdmitError::SessionExpired => {
            let idle = sessions.idle_timeout.as_secs();
            Problem::new(
                ProblemKind::SessionExpired,
                format!(
                    "Admin session has expired after {} of inactivity",
                    span(idle)
                ),
            )
            .with_extension("session_timeout", idle)
        }
        AdmitError::SessionCapReached => {
            let cap = sessions.absolute_timeout.as_secs();
            Problem::new(
                ProblemKind::SessionExpired,
                format!(
                    "Admin session has expired after reaching its maximum lifetime of {}",
                    span(cap)
                ),
            )
            .with_extension("session_timeout", cap)
        }
        AdmitError::SessionEnded {
            sid,
            why: Ended::LoggedOut,
        } => session_invalid(sid, "Session has been logged out - please re-authenticate"),
        AdmitError::SessionEnded {
            sid,
            why: Ended::Evicted,
        } => session_invalid(
            sid,
            "Session was ended by a newer login of the same user - please re-authenticate",
        ),
        AdmitError::SessionEnded {
            sid,
            why: Ended::FingerprintMismatches,
        } => session_invalid(
            sid,
            "Session was ended after repeated fingerprint mismatches - please re-authenticate",
        ),
        AdmitError::StoreUnavailable { sid } => {
            session_invalid(sid, "session storage system is unavailable")
        }
        AdmitError::FingerprintMissing { sid } => {
            session_invalid(sid, "Session fingerprint missing - please re-authenticate")
        }
        AdmitError::FingerprintMismatch { sid } => {
            session_invalid(sid, "Session fingerprint mismatch - please re-authenticate")
        }
        AdmitError::AgentOnAdmin { role } => Problem::new(
            ProblemKind::InsufficientPermissions,
            format!(
                "Access denied: {} role cannot access admin endpoint",
                sanitize_role(role)
            ),
        ),
        AdmitError::GatewayTokenRefused => Problem::new(
            ProblemKind::InsufficientPermissions,
            "Access denied: gateway session tokens are not accepted on this endpoint",
        ),
        AdmitError::NotTemp => Problem::new(
            ProblemKind::TokenInvalid,
            "A temporary registration token is required",
        )
        .with_status(StatusCode::FORBIDDEN)
        .with_title("Invalid token type"),
        AdmitError::PinRequired => Problem::new(
            ProblemKind::PinRequired,
            "X-Session-Pin header is required for this operation",
        ),
        AdmitError::PinNotSet => Problem::new(ProblemKind::PinNotSet, "PIN not set for session"),
        AdmitError::PinIncorrect => Problem::new(ProblemKind::PinIncorrect, "Incorrect PIN"),
        AdmitError::Denied => Problem::new(
            ProblemKind::Forbidden,
            "Access to this endpoint is not allowed through the gateway",
        ),
        AdmitError::RegistrationToken => Problem::new(
            ProblemKind::TokenInvalid,
            "Registration tokens are only accepted by the registration endpoints",
        )
        .with_status(StatusCode::FORBIDDEN)
        .with_title("Invalid token type"),
        AdmitError::NotOwnAgent => Problem::new(
            ProblemKind::InsufficientPermissions,
            "Access denied: an agent token acts on its own agent only",
        ),
        AdmitError::AmbiguousQuery(name) => Problem::new(
            ProblemKind::RequestError,
            format!("Ambiguous request: the `{name}` query parameter appears more than once"),
        ),
    }
}

/// `60 minutes`, `1 minute`, `90 seconds`: whole minutes when the span is one.
fn span(seconds: u64) -> String {
    match (seconds / 60, seconds % 60) {
        (1, 0) => "1 minute".into(),
        (m, 0) if m > 0 => format!("{m} minutes"),
        _ if seconds == 1 => "1 second".into(),
        _ => format!("{seconds} seconds"),
    }
}

/// Roles come from verified tokens but are still client data: keep them short and plain.
fn sanitize_role(role: &str) -> String {
    role.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(32)
        .collect()
}

fn answer(e: &AnswerError) -> Problem {
    match e {
        AnswerError::Throttled(t) => {
            let secs = t.retry_after.as_secs().max(1);
            Problem::new(
                ProblemKind::RateLimitExceeded,
                "Too many login attempts; try again later",
            )
            .with_extension("attempt_type", "login")
            .with_extension("retry_after", secs)
            .with_retry_after(secs)
        }
        AnswerError::Busy(b) => {
            let secs = b.retry_after.as_secs().max(1);
            Problem::new(
                ProblemKind::RateLimitExceeded,
                "Too many logins are being checked right now; try again shortly",
            )
            .with_extension("attempt_type", "login")
            .with_extension("retry_after", secs)
            .with_retry_after(secs)
        }
        AnswerError::NotJson => Problem::new(
            ProblemKind::ValidationFailed,
            "Input validation failed: the body must be sent as application/json",
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .with_title("Unsupported Media Type"),
        AnswerError::Invalid(msg) => Problem::new(
            ProblemKind::ValidationFailed,
            format!("Input validation failed: {msg}"),
        )
        .with_extension("validation_errors", vec![msg.clone()]),
        AnswerError::BodyTooSlow(_) => body_too_slow(),
        AnswerError::BodyTooLarge => Problem::new(
            ProblemKind::RequestTooLarge,
            "Request body exceeds the maximum size for this endpoint",
        ),
        AnswerError::AgentLogin => Problem::new(
            ProblemKind::AuthenticationFailed,
            "Authentication failed: Direct agent login not allowed. Use agent registration flow with valid agent key",
        ),
        AnswerError::FingerprintMissing => Problem::new(
            ProblemKind::RequiredHeaderMissing,
            "X-Client-Fingerprint header is required",
        )
        .with_extension("header", "X-Client-Fingerprint"),
        AnswerError::BadCredentials => Problem::new(
            ProblemKind::AuthenticationFailed,
            "Authentication failed: Invalid admin credentials",
        ),
        AnswerError::NoCredentials => Problem::new(
            ProblemKind::AuthenticationFailed,
            "Authentication failed: Invalid credentials - provide either agent_id/agent_type or username/password",
        ),
        AnswerError::PinAlreadySet => {
            Problem::new(ProblemKind::PinAlreadySet, "PIN already set for this session")
        }
        AnswerError::PinNotSet => Problem::new(ProblemKind::PinNotSet, "PIN not set for session"),
        AnswerError::PinIncorrect => Problem::new(ProblemKind::PinIncorrect, "Incorrect PIN"),
        AnswerError::StoreUnavailable => Problem::new(
            ProblemKind::EndpointUnreachable,
            "The session storage system is unavailable; try again shortly",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_retry_after(2),
        AnswerError::NotReady => Problem::new(
            ProblemKind::EndpointUnreachable,
            "The gateway has no upstream admin session yet",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_retry_after(1),
        AnswerError::Internal | AnswerError::NoProof(_) => {
            Problem::new(ProblemKind::InternalError, INTERNAL)
        }
    }
}

fn upstream(e: &UpstreamError) -> Problem {
    match e {
        UpstreamError::Timeout(t) => Problem::new(
            ProblemKind::ConnectionTimeout,
            "The upstream service did not respond in time",
        )
        .with_extension("timeout_seconds", t.as_secs_f64()),
        UpstreamError::BodyTooLarge(_) => Problem::new(
            ProblemKind::RequestTooLarge,
            "Request body exceeds the maximum size",
        ),
        UpstreamError::Connect(_) | UpstreamError::Unreachable(_) | UpstreamError::Tls(_) => {
            Problem::new(
                ProblemKind::EndpointUnreachable,
                "The upstream service is unreachable",
            )
        }
    }
}

fn broker(e: &BrokerError) -> Problem {
    let unavailable = |retry: u64| {
        Problem::new(
            ProblemKind::EndpointUnreachable,
            "The upstream admin session is unavailable; retry later",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_retry_after(retry)
    };
    match e {
        BrokerError::NotConfigured => Problem::new(
            ProblemKind::EndpointUnreachable,
            "Admin requests cannot be forwarded: no upstream service account is configured",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE),
        BrokerError::Unavailable { retry_after } => unavailable(retry_after.as_secs().max(1)),
        BrokerError::Login(_) => unavailable(1),
    }
}

#[cfg(test)]
mod tests;
