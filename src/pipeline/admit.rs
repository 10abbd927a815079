//! Stage 3, admission: check the credential a route demands and hand over a [`Principal`].
//!
//! The principal is the proof value the later stages need: an admin request can only be
//! sent upstream with the brokered credentials if an [`AdminPrincipal`] exists, and that is
//! only built after the gateway token, its session and the fingerprint checked out. The
//! gateway's own endpoints are admitted here too, by what each demands
//! ([`Endpoint::demand`]); the answer stage never looks a session up itself.
//!
//! Every bearer token goes through [`Tokens::verify`], once.

use std::sync::Arc;

use http::header::{HeaderValue, AUTHORIZATION};
use http::{HeaderMap, Method, Request};

use crate::arcp::{X_CLIENT_FINGERPRINT, X_SESSION_PIN};
use crate::auth::pin::{self, PinError};
use crate::auth::token::{GatewayClaims, GatewayToken, TokenError, UpstreamClaims};
use crate::auth::{Tokens, Verified};
use crate::policy::{Access, Demand, Route};
use crate::session::{Ended, Lookup, Session, SessionId, SessionStore};

/// Who is asking, proven.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Public route, or a gateway endpoint that demands nothing: no credential; the
    /// client's are stripped if the request is forwarded.
    Anonymous,
    /// Upstream's own non-JWT credential, forwarded unchanged.
    Passthrough,
    /// A verified upstream agent or temp token, forwarded exactly as verified.
    Agent(AgentPrincipal),
    /// A live gateway session whose fingerprint matched.
    Admin(AdminPrincipal),
    /// `/tokens/validate`: what the presented token turned out to be.
    Probe(Probe),
}

impl Principal {
    /// User or subject for the access log.
    pub fn user(&self) -> Option<Arc<str>> {
        match self {
            Principal::Admin(a) => Some(a.session.user.clone()),
            Principal::Agent(a) => a.claims.sub.as_deref().map(Arc::from),
            _ => None,
        }
    }
}

/// Proof of a verified upstream token, with the one `Authorization` value upstream may
/// receive for it: `Bearer <the verified token>`, rebuilt (upstream slices the header at a
/// fixed offset, so any other spelling would reach it as a different token).
#[derive(Debug, Clone)]
pub struct AgentPrincipal {
    pub claims: UpstreamClaims,
    /// `None` when the token came in the query (`/tokens/validate`): no `Authorization`.
    pub bearer: Option<HeaderValue>,
}

impl AgentPrincipal {
    fn new(claims: UpstreamClaims, token: Option<&str>) -> Self {
        let bearer = token.and_then(|t| {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        AgentPrincipal { claims, bearer }
    }
}

/// Proof of a live gateway session, bound to the fingerprint the request presented.
#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    pub session: Arc<Session>,
}

/// The verdict on the token presented to upstream's token oracle (`/tokens/validate`:
/// `GET` reads the bearer header, `POST` reads `?token=`), which answers `valid: false`
/// itself instead of refusing with a problem.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A verified upstream token: forwarded. `GET` keeps the verified bearer; `POST`
    /// carries the token in the query and any `Authorization` is stripped.
    Upstream {
        agent: AgentPrincipal,
        keep_bearer: bool,
    },
    /// A gateway token whose session is live: answered by the gateway.
    LiveSession(Box<GatewayClaims>),
    /// Answered `{"valid": false, "error": …}` by the gateway.
    Invalid(&'static str),
}

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("no bearer token for a {0} endpoint")]
    MissingBearer(&'static str),
    #[error("bearer token refused")]
    Token(#[source] TokenError),
    #[error("session unknown or idle past the timeout")]
    SessionExpired,
    #[error("session reached its absolute lifetime")]
    SessionCapReached,
    #[error("session storage unreachable")]
    StoreUnavailable { sid: SessionId },
    #[error("session ended ({why:?})")]
    SessionEnded { sid: SessionId, why: Ended },
    #[error("X-Client-Fingerprint missing on an admin request")]
    FingerprintMissing { sid: SessionId },
    #[error("X-Client-Fingerprint does not match the session")]
    FingerprintMismatch { sid: SessionId },
    #[error("agent token on an admin endpoint")]
    AgentOnAdmin { role: String },
    #[error("gateway session token on an upstream-token-only endpoint")]
    GatewayTokenRefused,
    #[error("token is not an upstream temp token")]
    NotTemp,
    #[error("X-Session-Pin missing")]
    PinRequired,
    #[error("no PIN set for the session")]
    PinNotSet,
    #[error("wrong PIN")]
    PinIncorrect,
    #[error("route is denied by policy")]
    Denied,
    #[error("registration-phase token outside registration")]
    RegistrationToken,
    #[error("agent token acting on another agent")]
    NotOwnAgent,
    #[error("`{0}` appears more than once in the query")]
    AmbiguousQuery(&'static str),
}

impl From<TokenError> for AdmitError {
    /// A gateway token past its `exp` names its session: that is the absolute cap.
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired { sid: Some(_) } => AdmitError::SessionCapReached,
            e => AdmitError::Token(e),
        }
    }
}

/// Checks what `route` demands of `req` and returns the principal.
pub async fn admit<B>(
    tokens: &Tokens,
    sessions: &SessionStore,
    route: &Route<'_>,
    path: &str,
    req: &Request<B>,
) -> Result<Principal, AdmitError> {
    let headers = req.headers();
    let principal = match route.access {
        Access::Public => Principal::Anonymous,
        Access::Passthrough => Principal::Passthrough,
        Access::Deny => return Err(AdmitError::Denied),
        Access::Gateway(endpoint) => match endpoint.demand() {
            Demand::Nothing => Principal::Anonymous,
            Demand::Session => admin_only(tokens, sessions, headers).await?,
            Demand::SessionOrAgent => {
                session_or_agent(tokens, sessions, headers, route, path).await?
            }
            Demand::TokenProbe => Principal::Probe(probe(tokens, sessions, req).await?),
        },
        Access::Admin => admin_only(tokens, sessions, headers).await?,
        Access::Agent => session_or_agent(tokens, sessions, headers, route, path).await?,
        Access::AgentOnly => {
            // Upstream's token oracle reads the bearer header and `?token=`; both must be
            // verified upstream tokens, and at least one must be present.
            let mut agent = None;
            let header_token = bearer(headers);
            if let Some(token) = header_token {
                agent = Some(AgentPrincipal::new(
                    upstream_only(tokens, token)?,
                    Some(token),
                ));
            }
            if let Some(token) = query_token(req.uri().query())? {
                let claims = upstream_only(tokens, &token)?;
                agent = Some(match agent {
                    Some(a) => a,
                    None => AgentPrincipal::new(claims, None),
                });
            }
            Principal::Agent(agent.ok_or(AdmitError::MissingBearer("agent"))?)
        }
        Access::Temp => {
            let token = bearer(headers).ok_or(AdmitError::MissingBearer("agent"))?;
            let claims = upstream_only(tokens, token)?;
            if !claims.is_temp() {
                return Err(AdmitError::NotTemp);
            }
            Principal::Agent(AgentPrincipal::new(claims, Some(token)))
        }
    };
    if route.require_pin {
        if let Principal::Admin(admin) = &principal {
            let presented = header_text(headers, &X_SESSION_PIN);
            pin::check(sessions, &admin.session, presented)
                .await
                .map_err(|e| match e {
                    PinError::Required => AdmitError::PinRequired,
                    PinError::NotSet => AdmitError::PinNotSet,
                    _ => AdmitError::PinIncorrect,
                })?;
        }
    }
    Ok(principal)
}

/// An admin endpoint: a gateway session; a verified agent token is refused (403).
async fn admin_only(
    tokens: &Tokens,
    sessions: &SessionStore,
    headers: &HeaderMap,
) -> Result<Principal, AdmitError> {
    let token = bearer(headers).ok_or(AdmitError::MissingBearer("admin"))?;
    match tokens.verify(token)? {
        Verified::Gateway(t) => Ok(Principal::Admin(
            admin_session(sessions, headers, &t).await?,
        )),
        Verified::Upstream(claims) => Err(AdmitError::AgentOnAdmin { role: claims.role }),
    }
}

/// An agent endpoint: a verified upstream token, or a gateway session. Registration-phase
/// tokens only pass on `registration` routes; on `own_agent` routes an agent token must
/// speak for the agent the path names (admins act through their session).
async fn session_or_agent(
    tokens: &Tokens,
    sessions: &SessionStore,
    headers: &HeaderMap,
    route: &Route<'_>,
    path: &str,
) -> Result<Principal, AdmitError> {
    let token = bearer(headers).ok_or(AdmitError::MissingBearer("agent"))?;
    match tokens.verify(token)? {
        Verified::Gateway(t) => Ok(Principal::Admin(
            admin_session(sessions, headers, &t).await?,
        )),
        Verified::Upstream(claims) => {
            if claims.is_registration_phase() && !route.registration {
                return Err(AdmitError::RegistrationToken);
            }
            if let Some(index) = route.owner {
                let named = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .nth(index)
                    .and_then(|seg| percent_encoding::percent_decode_str(seg).decode_utf8().ok());
                let own = match (&named, claims.agent_id.as_deref()) {
                    (Some(named), Some(mine)) => {
                        subtle::ConstantTimeEq::ct_eq(named.as_bytes(), mine.as_bytes()).into()
                    }
                    _ => false,
                };
                if !own {
                    return Err(AdmitError::NotOwnAgent);
                }
            }
            Ok(Principal::Agent(AgentPrincipal::new(claims, Some(token))))
        }
    }
}

fn upstream_only(tokens: &Tokens, token: &str) -> Result<UpstreamClaims, AdmitError> {
    match tokens.verify(token)? {
        Verified::Gateway(_) => Err(AdmitError::GatewayTokenRefused),
        Verified::Upstream(claims) => Ok(claims),
    }
}

/// The verdict on the token `/tokens/validate` was asked about. A `?token=` is forwarded
/// only when it is a verified upstream token, whatever the method. Two `token` parameters
/// are refused (400) rather than guessed at.
async fn probe<B>(
    tokens: &Tokens,
    sessions: &SessionStore,
    req: &Request<B>,
) -> Result<Probe, AdmitError> {
    const INVALID: &str = "Invalid or expired token";
    let is_get = req.method() == Method::GET;
    let query = query_token(req.uri().query())?;
    let query_verdict = query.as_deref().map(|q| tokens.verify(q));
    if is_get && matches!(query_verdict, Some(Ok(Verified::Gateway(_)) | Err(_))) {
        return Ok(Probe::Invalid(INVALID));
    }
    let verdict = if is_get {
        bearer(req.headers()).map(|t| (t, tokens.verify(t)))
    } else {
        query.as_deref().zip(query_verdict)
    };
    let Some((token, verdict)) = verdict.filter(|(t, _)| !t.is_empty()) else {
        return Ok(Probe::Invalid("Missing token"));
    };
    Ok(match verdict {
        Ok(Verified::Upstream(claims)) => Probe::Upstream {
            agent: AgentPrincipal::new(claims, is_get.then_some(token)),
            keep_bearer: is_get,
        },
        Ok(Verified::Gateway(t)) => {
            if !matches!(sessions.lookup(&t.sid).await, Lookup::Active(_)) {
                return Ok(Probe::Invalid("Session is no longer active"));
            }
            // The payload is shown to the caller; it was verified a line above.
            match tokens.gateway_claims(token) {
                Ok(claims) => Probe::LiveSession(Box::new(claims)),
                Err(_) => Probe::Invalid(INVALID),
            }
        }
        Err(_) => Probe::Invalid(INVALID),
    })
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The `token` query parameter, refused when it appears more than once.
pub(crate) fn query_token(query: Option<&str>) -> Result<Option<String>, AdmitError> {
    match query {
        None => Ok(None),
        Some(q) => unique_param(q, "token").map_err(|()| AdmitError::AmbiguousQuery("token")),
    }
}

/// The value of `name` in a query string, with names and values decoded as Starlette
/// decodes them (`+` is a space, then percent-decoding), so `tok%65n=` is `token=` here as
/// it is upstream. More than one occurrence is ambiguous (upstream takes the last, a naive
/// reader the first) and an error.
pub(crate) fn unique_param(query: &str, name: &str) -> Result<Option<String>, ()> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k) == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(decode(v));
        }
    }
    Ok(found)
}

fn header_text<'h>(headers: &'h HeaderMap, name: &http::HeaderName) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The live session of a verified gateway token, bound to the request's fingerprint. An
/// admitted request is session activity.
async fn admin_session(
    sessions: &SessionStore,
    headers: &HeaderMap,
    token: &GatewayToken,
) -> Result<AdminPrincipal, AdmitError> {
    let presented = header_text(headers, &X_CLIENT_FINGERPRINT);
    let admin = session_of(sessions, token).await?;
    let Some(presented) = presented else {
        return Err(AdmitError::FingerprintMissing {
            sid: admin.session.id,
        });
    };
    if let Err(e) = check_fingerprint(&admin, presented) {
        // Boxed: rare, and its future would otherwise be carried by every admin request's.
        Box::pin(sessions.fingerprint_mismatch(&admin.session)).await;
        return Err(e);
    }
    sessions.record_activity(&admin.session).await;
    Ok(admin)
}

/// The live session of a verified gateway token, without the fingerprint (which a browser
/// cannot send on a WebSocket upgrade; the socket's first frame carries it). Not activity:
/// the caller touches the session once it admitted the request.
pub async fn session_of(
    sessions: &SessionStore,
    token: &GatewayToken,
) -> Result<AdminPrincipal, AdmitError> {
    match sessions.lookup(&token.sid).await {
        Lookup::Active(session) => Ok(AdminPrincipal { session }),
        Lookup::Ended(why) => Err(AdmitError::SessionEnded {
            sid: token.sid,
            why,
        }),
        Lookup::Expired => Err(AdmitError::SessionExpired),
        Lookup::Unavailable => Err(AdmitError::StoreUnavailable { sid: token.sid }),
    }
}

/// Compares a presented fingerprint with the session's, in constant time.
pub fn check_fingerprint(admin: &AdminPrincipal, presented: &str) -> Result<(), AdmitError> {
    if admin.session.fingerprint.matches(presented) {
        Ok(())
    } else {
        Err(AdmitError::FingerprintMismatch {
            sid: admin.session.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn query_params() {
        assert_eq!(
            unique_param("a=1&token=x%2Ey&b", "token"),
            Ok(Some("x.y".to_owned()))
        );
        assert_eq!(unique_param("a=1", "token"), Ok(None));
        assert_eq!(unique_param("token=a&token=b", "token"), Err(()));
        // keys are decoded as upstream decodes them
        assert_eq!(unique_param("token=a&tok%65n=b", "token"), Err(()));
        assert_eq!(unique_param("tok%65n=b", "token"), Ok(Some("b".to_owned())));
    }
}
