//! Stage 4a, answer: the endpoints the gateway owns, with ARCP's response shapes.
//!
//! `POST /auth/login` (docs/design.md §7) keeps upstream's order of checks: throttling (429),
//! malformed body (422), agent fields (401), missing fingerprint (400), credentials (401).
//! The other endpoints act on the caller's gateway session only.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::admit::{admin_session, bearer, register_pin_failure, AdmitError, Principal};
use super::{ConnInfo, Trace};
use crate::auth::pin;
use crate::auth::token::{Kind, TokenError};
use crate::auth::Auth;
use crate::body::{read_limited, Body, Pace, ReadError};
use crate::proxy::headers::X_CLIENT_FINGERPRINT;
use crate::ratelimit::Throttled;
use crate::session::Ended;

/// Largest body a gateway endpoint reads.
const MAX_BODY: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("login throttled")]
    Throttled(#[source] Throttled),
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
    #[error("not admitted")]
    Admit(#[from] AdmitError),
    #[error("PIN already set")]
    PinAlreadySet,
    #[error("PIN not set")]
    PinNotSet,
    #[error("wrong PIN")]
    PinIncorrect,
    #[error("cannot sign or hash")]
    Internal,
    #[error("no upstream admin session yet")]
    NotReady,
    #[error("no gateway endpoint named {0}")]
    Unknown(String),
}

/// What the answer stage decided.
pub enum Answer {
    Respond(Response<Body>),
    /// A verified upstream token (`/tokens/refresh`, `/tokens/validate`): forward it.
    Forward(Principal, Box<Request<Incoming>>),
}

/// Serves the gateway endpoint `name` (the rule name in the route table).
pub async fn answer(
    auth: &Auth,
    broker: &crate::upstream::Broker,
    name: &str,
    conn: &ConnInfo,
    req: Request<Incoming>,
    trace: &mut Trace<'_>,
) -> Result<Answer, AnswerError> {
    let response = match name {
        "gateway_live" => json_response(StatusCode::OK, &json!({"status": "alive"})),
        "gateway_ready" if broker.is_ready() => {
            json_response(StatusCode::OK, &json!({"status": "ready"}))
        }
        "gateway_ready" => return Err(AnswerError::NotReady),
        "login" => login(auth, conn, req, trace).await?,
        "logout" => {
            let admin = admin_session_of(auth, &req).await?;
            trace.user = Some(admin.session.user.clone());
            auth.sessions.end(&admin.session.id, Ended::LoggedOut).await;
            json_response(
                StatusCode::OK,
                &json!({"status":"success","message":"Logged out and session PIN cleared"}),
            )
        }
        "set_pin" => {
            let admin = admin_session_of(auth, &req).await?;
            trace.user = Some(admin.session.user.clone());
            let pin_value = read_pin(req, auth.body_pace).await?;
            pin::validate_new(&pin_value).map_err(|m| AnswerError::Invalid(m.into()))?;
            if admin.session.pin().hash.is_some() {
                return Err(AnswerError::PinAlreadySet);
            }
            let hash = pin::hash(pin_value).await.ok_or(AnswerError::Internal)?;
            let stored = admin.session.update_pin(|p| {
                if p.hash.is_some() {
                    return false;
                }
                p.hash = Some(hash);
                p.failures = 0;
                true
            });
            if stored != Some(true) {
                return Err(AnswerError::PinAlreadySet);
            }
            json_response(
                StatusCode::OK,
                &json!({"status":"success","message":"PIN set for session"}),
            )
        }
        "verify_pin" => {
            let admin = admin_session_of(auth, &req).await?;
            trace.user = Some(admin.session.user.clone());
            let pin_value = read_pin(req, auth.body_pace).await?;
            if pin_value.is_empty() || pin_value.chars().count() > 32 {
                return Err(AnswerError::Invalid(
                    "PIN must have 1 to 32 characters".into(),
                ));
            }
            let hash = admin.session.pin().hash.ok_or(AnswerError::PinNotSet)?;
            if !pin::verify(pin_value, hash).await {
                register_pin_failure(auth, &admin.session).await;
                return Err(AnswerError::PinIncorrect);
            }
            admin.session.update_pin(|p| p.failures = 0);
            json_response(
                StatusCode::OK,
                &json!({"status":"success","message":"PIN verified"}),
            )
        }
        "pin_status" => {
            let admin = admin_session_of(auth, &req).await?;
            trace.user = Some(admin.session.user.clone());
            json_response(
                StatusCode::OK,
                &json!({"pin_set": admin.session.pin().hash.is_some()}),
            )
        }
        "session_status" => {
            let admin = admin_session_of(auth, &req).await?;
            trace.user = Some(admin.session.user.clone());
            let s = &admin.session;
            json_response(
                StatusCode::OK,
                &json!({
                    "valid": true,
                    "user_id": &*s.user,
                    "role": "admin",
                    "agent_id": format!("user_{}", s.user),
                    "expires": s.expires_at,
                    "is_admin": true,
                    "session_exists": true,
                    "pin_set": s.pin().hash.is_some(),
                }),
            )
        }
        "token_refresh" => {
            let token = bearer(req.headers()).ok_or(AdmitError::MissingBearer("agent"))?;
            match auth.tokens.classify(token).map_err(AdmitError::Token)? {
                Kind::Upstream => {
                    let claims = auth
                        .tokens
                        .verify_upstream(token)
                        .map_err(AdmitError::Token)?;
                    return Ok(Answer::Forward(Principal::Agent(claims), Box::new(req)));
                }
                Kind::Gateway => {
                    let admin = admin_session(auth, req.headers(), token).await?;
                    trace.user = Some(admin.session.user.clone());
                    let s = &admin.session;
                    let token = auth
                        .tokens
                        .issue(&s.user, &s.id, s.expires_at)
                        .map_err(|_| AnswerError::Internal)?;
                    json_response(
                        StatusCode::OK,
                        &json!({"access_token": token, "token_type": "bearer"}),
                    )
                }
            }
        }
        "token_validate" => return token_validate(auth, req).await,
        other => return Err(AnswerError::Unknown(other.to_owned())),
    };
    Ok(Answer::Respond(response))
}

/// `/tokens/validate`, upstream's public token oracle (`GET` reads the bearer header,
/// `POST` reads `?token=`). Verified upstream tokens are forwarded; gateway tokens are
/// answered here with upstream's shapes (valid while their session lives); anything else is
/// answered `valid: false` without reaching the upstream.
async fn token_validate(auth: &Auth, req: Request<Incoming>) -> Result<Answer, AnswerError> {
    let is_get = req.method() == http::Method::GET;
    let query_token = req
        .uri()
        .query()
        .and_then(|q| super::admit::url_param(q, "token"));
    // A `?token=` is forwarded only when it is a verified upstream token, whatever the method.
    if let Some(q) = &query_token {
        let upstream_ok = matches!(auth.tokens.classify(q), Ok(Kind::Upstream))
            && auth.tokens.verify_upstream(q).is_ok();
        if !upstream_ok && is_get {
            return Ok(Answer::Respond(json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"valid": false, "error": "Invalid or expired token"}),
            )));
        }
    }
    let token = if is_get {
        bearer(req.headers()).map(str::to_owned)
    } else {
        query_token
    };
    let invalid = |error: &str| {
        let status = if is_get {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        Ok(Answer::Respond(json_response(
            status,
            &json!({"valid": false, "error": error}),
        )))
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return invalid("Missing token");
    };
    match auth.tokens.classify(&token) {
        Ok(Kind::Upstream) => match auth.tokens.verify_upstream(&token) {
            // GET: the verified bearer goes up as is. POST: the token is in the query, and
            // whatever `Authorization` the client sent is stripped.
            Ok(claims) if is_get => Ok(Answer::Forward(Principal::Agent(claims), Box::new(req))),
            Ok(_) => Ok(Answer::Forward(Principal::Anonymous, Box::new(req))),
            Err(_) => invalid("Invalid or expired token"),
        },
        Ok(Kind::Gateway) => {
            let Ok(claims) = auth.tokens.gateway_claims(&token) else {
                return invalid("Invalid or expired token");
            };
            let Some(sid) = crate::session::SessionId::from_hex(&claims.sid) else {
                return invalid("Invalid or expired token");
            };
            if !matches!(
                auth.sessions.lookup(&sid).await,
                crate::session::Lookup::Active(_)
            ) {
                return invalid("Session is no longer active");
            }
            let payload = serde_json::to_value(&claims).unwrap_or(Value::Null);
            let body = if is_get {
                json!({"valid": true, "agent_id": claims.sub, "payload": payload})
            } else {
                json!({"valid": true, "payload": payload})
            };
            Ok(Answer::Respond(json_response(StatusCode::OK, &body)))
        }
        Err(_) => invalid("Invalid or expired token"),
    }
}

async fn admin_session_of(
    auth: &Auth,
    req: &Request<Incoming>,
) -> Result<super::admit::AdminPrincipal, AnswerError> {
    let token = bearer(req.headers()).ok_or(AdmitError::MissingBearer("admin"))?;
    match auth.tokens.classify(token).map_err(AdmitError::Token)? {
        Kind::Gateway => Ok(admin_session(auth, req.headers(), token).await?),
        Kind::Upstream => {
            let claims = auth
                .tokens
                .verify_upstream(token)
                .map_err(AdmitError::Token)?;
            Err(AdmitError::AgentOnAdmin { role: claims.role }.into())
        }
    }
}

async fn login(
    auth: &Auth,
    conn: &ConnInfo,
    req: Request<Incoming>,
    trace: &mut Trace<'_>,
) -> Result<Response<Body>, AnswerError> {
    let ip = conn.peer.ip();
    auth.throttle.check_ip(ip).map_err(AnswerError::Throttled)?;
    let fingerprint = req
        .headers()
        .get(&X_CLIENT_FINGERPRINT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let fields = match read_object(req, auth.body_pace).await {
        Ok(f) => f,
        Err(e) => {
            auth.throttle.record_failure(ip, None);
            return Err(e);
        }
    };
    let text = |name: &str| -> Result<Option<String>, AnswerError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(AnswerError::Invalid(format!("{name} must be a string"))),
        }
    };
    let checked = (|| {
        let username = text("username")?.map(|u| u.trim().to_owned());
        let password = text("password")?;
        if username.as_ref().is_some_and(|u| u.chars().count() > 255) {
            return Err(AnswerError::Invalid(
                "username must have at most 255 characters".into(),
            ));
        }
        match &password {
            Some(p) if p.is_empty() => {
                return Err(AnswerError::Invalid("password must not be empty".into()))
            }
            Some(p) if p.chars().count() > 1024 => {
                return Err(AnswerError::Invalid(
                    "password must have at most 1024 characters".into(),
                ))
            }
            _ => {}
        }
        Ok((username, password, text("agent_id")?, text("agent_type")?))
    })();
    let (username, password, agent_id, agent_type) = match checked {
        Ok(v) => v,
        Err(e) => {
            auth.throttle.record_failure(ip, None);
            return Err(e);
        }
    };
    if agent_id.is_some() && agent_type.is_some() {
        auth.throttle.record_failure(ip, None);
        return Err(AnswerError::AgentLogin);
    }
    let (Some(username), Some(password)) = (username.filter(|u| !u.is_empty()), password) else {
        auth.throttle.record_failure(ip, None);
        return Err(AnswerError::NoCredentials);
    };
    auth.throttle
        .check_user(&username)
        .map_err(AnswerError::Throttled)?;
    let Some(fingerprint) = fingerprint else {
        return Err(AnswerError::FingerprintMissing);
    };
    trace.user = Some(Arc::from(username.as_str()));
    if !auth.verify_password(&username, &password).await {
        auth.throttle.record_failure(ip, Some(&username));
        tracing::info!(user = %username, peer = %ip, "admin login failed");
        return Err(AnswerError::BadCredentials);
    }
    auth.throttle.record_success(ip, &username);
    let session = auth.sessions.create(&username, &fingerprint).await;
    let token = auth
        .tokens
        .issue(&username, &session.id, session.expires_at)
        .map_err(|_| AnswerError::Internal)?;
    let expires_in = (session.expires_at - auth.tokens.clock().now()).max(0);
    tracing::info!(user = %username, session = ?session.id, "admin login");
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "agent_id": format!("user_{username}"),
        }),
    ))
}

async fn read_pin(req: Request<Incoming>, pace: Pace) -> Result<String, AnswerError> {
    let fields = read_object(req, pace).await?;
    match fields.get("pin") {
        Some(Value::String(p)) => Ok(p.clone()),
        _ => Err(AnswerError::Invalid("pin must be a string".into())),
    }
}

/// Reads a small JSON object body, at the server's minimum pace.
async fn read_object(
    req: Request<Incoming>,
    pace: Pace,
) -> Result<Map<String, Value>, AnswerError> {
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

impl From<TokenError> for AnswerError {
    fn from(e: TokenError) -> Self {
        AnswerError::Admit(AdmitError::Token(e))
    }
}
