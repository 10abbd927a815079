//! Stage 4a, answer: the endpoints the gateway owns, with ARCP's response shapes.
//!
//! [`answer`] is one exhaustive match over [`Endpoint`]; each arm receives the proof value
//! admission produced for it (a session for the `/auth/*` session endpoints, a verified
//! token or a session for `/tokens/refresh`, a token verdict for `/tokens/validate`) and
//! never checks a credential or looks a session up itself.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::admit::{AdminPrincipal, Principal, Probe};
use super::state::{Handles, Snapshot};
use super::{ConnInfo, Trace};
use crate::arcp::X_CLIENT_FINGERPRINT;
use crate::auth::login::{self, Login, LoginError};
use crate::auth::pin::{self, PinError};
use crate::body::{read_limited, Body, Inbound, Pace, ReadError};
use crate::policy::Endpoint;
use crate::ratelimit::{Busy, Refused, Throttled};
use crate::session::Ended;

/// Largest body a gateway endpoint reads.
const MAX_BODY: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("login throttled")]
    Throttled(#[source] Throttled),
    #[error("password verification saturated")]
    Busy(#[source] Busy),
    #[error("login body is not declared as application/json")]
    NotJson,
    #[error("request body is not valid: {0}")]
    Invalid(String),
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request body too slow")]
    BodyTooSlow(#[source] ReadError),
    #[error("direct agent login attempted")]
    AgentLogin,
    #[error("login without X-Client-Fingerprint")]
    FingerprintMissing,
    #[error("invalid admin credentials")]
    BadCredentials,
    #[error("neither username/password nor agent fields")]
    NoCredentials,
    #[error("PIN already set")]
    PinAlreadySet,
    #[error("PIN not set")]
    PinNotSet,
    #[error("wrong PIN")]
    PinIncorrect,
    #[error("cannot sign or hash")]
    Internal,
    #[error("no upstream admin session yet, or the session storage is unreachable")]
    NotReady,
    #[error("session storage unreachable")]
    StoreUnavailable,
    #[error("admission produced no proof for the {0:?} endpoint")]
    NoProof(Endpoint),
}

/// What the answer stage decided.
pub enum Answer {
    Respond(Response<Body>),
    /// A verified upstream token (`/tokens/refresh`, `/tokens/validate`): forward it.
    Forward(Principal, Box<Request<Inbound>>),
}

/// Serves `endpoint` for the principal admission produced.
pub async fn answer(
    endpoint: Endpoint,
    principal: Principal,
    snapshot: &Snapshot,
    handles: &Handles,
    conn: &ConnInfo,
    req: Request<Inbound>,
    trace: &mut Trace<'_>,
) -> Result<Answer, AnswerError> {
    let ok = |body: Value| Ok(Answer::Respond(json_response(StatusCode::OK, &body)));
    match (endpoint, principal) {
        (Endpoint::Live, _) => ok(json!({"status": "alive"})),
        (Endpoint::Ready, _)
            if handles.broker.is_ready() && handles.sessions.check_available().await =>
        {
            ok(json!({"status": "ready"}))
        }
        (Endpoint::Ready, _) => Err(AnswerError::NotReady),
        (Endpoint::Login, _) => login(snapshot, handles, conn, req, trace).await,
        (Endpoint::Logout, Principal::Admin(admin)) => {
            handles
                .sessions
                .try_end(&admin.session.id, Ended::LoggedOut)
                .await
                .map_err(|_| AnswerError::StoreUnavailable)?;
            ok(json!({"status":"success","message":"Logged out and session PIN cleared"}))
        }
        (Endpoint::SetPin, Principal::Admin(admin)) => {
            let pin_value = read_pin(req, snapshot.body_pace).await?;
            pin::set(&handles.sessions, &admin.session, pin_value).await?;
            ok(json!({"status":"success","message":"PIN set for session"}))
        }
        (Endpoint::VerifyPin, Principal::Admin(admin)) => {
            let pin_value = read_pin(req, snapshot.body_pace).await?;
            if pin_value.is_empty() || pin_value.chars().count() > 32 {
                return Err(AnswerError::Invalid(
                    "PIN must have 1 to 32 characters".into(),
                ));
            }
            pin::check(&handles.sessions, &admin.session, Some(&pin_value)).await?;
            ok(json!({"status":"success","message":"PIN verified"}))
        }
        (Endpoint::PinStatus, Principal::Admin(admin)) => {
            ok(json!({"pin_set": admin.session.pin().hash.is_some()}))
        }
        (Endpoint::SessionStatus, Principal::Admin(admin)) => ok(session_status(&admin)),
        (Endpoint::TokenRefresh, Principal::Admin(admin)) => {
            let s = &admin.session;
            let token = snapshot
                .tokens
                .issue(&s.user, &s.id, s.expires_at)
                .map_err(|_| AnswerError::Internal)?;
            ok(json!({"access_token": token, "token_type": "bearer"}))
        }
        (Endpoint::TokenRefresh, agent @ Principal::Agent(_)) => {
            Ok(Answer::Forward(agent, Box::new(req)))
        }
        (Endpoint::TokenValidate, Principal::Probe(probe)) => Ok(token_validate(probe, req)),
        (
            endpoint @ (Endpoint::Logout
            | Endpoint::SetPin
            | Endpoint::VerifyPin
            | Endpoint::PinStatus
            | Endpoint::SessionStatus
            | Endpoint::TokenRefresh
            | Endpoint::TokenValidate),
            _,
        ) => Err(AnswerError::NoProof(endpoint)),
    }
}

fn session_status(admin: &AdminPrincipal) -> Value {
    let s = &admin.session;
    json!({
        "valid": true,
        "user_id": &*s.user,
        "role": "admin",
        "agent_id": format!("user_{}", s.user),
        "expires": s.expires_at,
        "is_admin": true,
        "session_exists": true,
        "pin_set": s.pin().hash.is_some(),
    })
}

/// `/tokens/validate`, upstream's public token oracle (`GET` reads the bearer header,
/// `POST` reads `?token=`): verified upstream tokens are forwarded; gateway tokens are
/// answered here with upstream's shapes (valid while their session lives); anything else
/// is answered `valid: false` without reaching the upstream.
fn token_validate(probe: Probe, req: Request<Inbound>) -> Answer {
    let is_get = req.method() == Method::GET;
    match probe {
        Probe::Upstream {
            agent,
            keep_bearer: true,
        } => Answer::Forward(Principal::Agent(agent), Box::new(req)),
        Probe::Upstream {
            keep_bearer: false, ..
        } => Answer::Forward(Principal::Anonymous, Box::new(req)),
        Probe::LiveSession(claims) => {
            let payload = serde_json::to_value(&*claims).unwrap_or(Value::Null);
            let body = if is_get {
                json!({"valid": true, "agent_id": claims.sub, "payload": payload})
            } else {
                json!({"valid": true, "payload": payload})
            };
            Answer::Respond(json_response(StatusCode::OK, &body))
        }
        Probe::Invalid(error) => {
            let status = if is_get {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            Answer::Respond(json_response(
                status,
                &json!({"valid": false, "error": error}),
            ))
        }
    }
}

async fn login(
    snapshot: &Snapshot,
    handles: &Handles,
    conn: &ConnInfo,
    req: Request<Inbound>,
    trace: &mut Trace<'_>,
) -> Result<Answer, AnswerError> {
    let ip = conn.peer.ip();
    handles.throttle.check_ip(ip).await.map_err(|r| match r {
        Refused::Throttled(t) => AnswerError::Throttled(t),
        Refused::Unavailable => AnswerError::StoreUnavailable,
    })?;
    // Only JSON: a cross-site HTML form cannot send it, so no page a visitor opens can spend
    // the visitor's address on login attempts.
    if !is_json(req.headers()) {
        handles.throttle.record_failure(ip, None).await;
        return Err(AnswerError::NotJson);
    }
    let fingerprint = req
        .headers()
        .get(&X_CLIENT_FINGERPRINT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let fields = match read_object(req, snapshot.body_pace).await {
        Ok(fields) => fields,
        Err(e) => {
            handles.throttle.record_failure(ip, None).await;
            return Err(e);
        }
    };
    let ctx = Login {
        users: &snapshot.users,
        tokens: &snapshot.tokens,
        sessions: &handles.sessions,
        throttle: &handles.throttle,
    };
    let mut user = None;
    let result = login::login(&ctx, ip, fingerprint.as_deref(), &fields, &mut user).await;
    trace.user = user;
    let done = result?;
    Ok(Answer::Respond(json_response(
        StatusCode::OK,
        &json!({
            "access_token": done.access_token,
            "token_type": "bearer",
            "expires_in": done.expires_in,
            "agent_id": format!("user_{}", done.user),
        }),
    )))
}

/// `Content-Type: application/json`, parameters allowed (RFC 9110 §8.3.1).
fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

async fn read_pin(req: Request<Inbound>, pace: Pace) -> Result<String, AnswerError> {
    let fields = read_object(req, pace).await?;
    match fields.get("pin") {
        Some(Value::String(p)) => Ok(p.clone()),
        _ => Err(AnswerError::Invalid("pin must be a string".into())),
    }
}

/// Reads a small JSON object body, at the server's minimum pace.
async fn read_object(req: Request<Inbound>, pace: Pace) -> Result<Map<String, Value>, AnswerError> {
    let body = read_limited(req.into_body(), MAX_BODY, pace)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge { .. } => AnswerError::BodyTooLarge,
            ReadError::TooSlow { .. } => AnswerError::BodyTooSlow(e),
            ReadError::Body(_) => AnswerError::Invalid("cannot read the request body".into()),
        })?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AnswerError::Invalid(
            "the body must be a JSON object".into(),
        )),
        Err(_) => Err(AnswerError::Invalid("the body is not valid JSON".into())),
    }
}

/// A JSON response that no cache keeps.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl From<LoginError> for AnswerError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Throttled(t) => AnswerError::Throttled(t),
            LoginError::Busy(b) => AnswerError::Busy(b),
            LoginError::Invalid(m) => AnswerError::Invalid(m),
            LoginError::AgentLogin => AnswerError::AgentLogin,
            LoginError::NoCredentials => AnswerError::NoCredentials,
            LoginError::FingerprintMissing => AnswerError::FingerprintMissing,
            LoginError::BadCredentials => AnswerError::BadCredentials,
            LoginError::Sign => AnswerError::Internal,
            LoginError::StoreUnavailable => AnswerError::StoreUnavailable,
        }
    }
}

impl From<PinError> for AnswerError {
    fn from(e: PinError) -> Self {
        match e {
            PinError::Invalid(m) => AnswerError::Invalid(m.into()),
            PinError::AlreadySet => AnswerError::PinAlreadySet,
            PinError::NotSet | PinError::Required => AnswerError::PinNotSet,
            PinError::Incorrect => AnswerError::PinIncorrect,
            PinError::Internal => AnswerError::Internal,
        }
    }
}
