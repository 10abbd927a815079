//! Stage 3, admission: check the credential a route demands and hand over a [`Principal`].
//!
//! The principal is the proof value the forward stage needs: an admin request can only be
//! sent upstream with the brokered credentials if an [`AdminPrincipal`] exists, and that is
//! only built after the gateway token, its session and the fingerprint checked out.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::auth::pin;
use crate::auth::token::{Kind, TokenError, UpstreamClaims};
use crate::auth::Auth;
use crate::policy::{Access, Route};
use crate::proxy::headers::{X_CLIENT_FINGERPRINT, X_SESSION_PIN};
use crate::session::{Ended, Lookup, Session, SessionId};

/// Who is asking, proven.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Public route: no credential; the client's are stripped.
    Anonymous,
    /// Upstream's own non-JWT credential, forwarded unchanged.
    Passthrough,
    /// A verified upstream agent or temp token, forwarded unchanged.
    Agent(UpstreamClaims),
    /// A live gateway session whose fingerprint matched.
    Admin(AdminPrincipal),
}

impl Principal {
    /// User or subject for the access log.
    pub fn user(&self) -> Option<Arc<str>> {
        match self {
            Principal::Admin(a) => Some(a.session.user.clone()),
            Principal::Agent(c) => c.sub.as_deref().map(Arc::from),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    pub session: Arc<Session>,
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
}

/// Checks what `route` demands and returns the principal.
pub async fn admit(
    auth: &Auth,
    route: &Route<'_>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Principal, AdmitError> {
    let principal = match route.access {
        Access::Public | Access::Gateway => Principal::Anonymous,
        Access::Passthrough => Principal::Passthrough,
        Access::Deny => return Err(AdmitError::Denied),
        Access::Admin => {
            let token = bearer(headers).ok_or(AdmitError::MissingBearer("admin"))?;
            match auth.tokens.classify(token).map_err(AdmitError::Token)? {
                Kind::Gateway => Principal::Admin(admin_session(auth, headers, token).await?),
                Kind::Upstream => {
                    let claims = auth
                        .tokens
                        .verify_upstream(token)
                        .map_err(AdmitError::Token)?;
                    return Err(AdmitError::AgentOnAdmin { role: claims.role });
                }
            }
        }
        Access::Agent => {
            let token = bearer(headers).ok_or(AdmitError::MissingBearer("agent"))?;
            match auth.tokens.classify(token).map_err(AdmitError::Token)? {
                Kind::Gateway => Principal::Admin(admin_session(auth, headers, token).await?),
                Kind::Upstream => Principal::Agent(
                    auth.tokens
                        .verify_upstream(token)
                        .map_err(AdmitError::Token)?,
                ),
            }
        }
        Access::AgentOnly => {
            // Upstream's token oracle reads the bearer header and `?token=`; both must be
            // verified upstream tokens, and at least one must be present.
            let mut claims = None;
            if let Some(token) = bearer(headers) {
                claims = Some(upstream_only(auth, token)?);
            }
            if let Some(token) = query.and_then(query_token) {
                claims = Some(upstream_only(auth, &token)?);
            }
            Principal::Agent(claims.ok_or(AdmitError::MissingBearer("agent"))?)
        }
        Access::Temp => {
            let token = bearer(headers).ok_or(AdmitError::MissingBearer("agent"))?;
            let claims = upstream_only(auth, token)?;
            if !claims.is_temp() {
                return Err(AdmitError::NotTemp);
            }
            Principal::Agent(claims)
        }
    };
    if route.require_pin {
        if let Principal::Admin(admin) = &principal {
            check_pin(auth, &admin.session, headers).await?;
        }
    }
    Ok(principal)
}

fn upstream_only(auth: &Auth, token: &str) -> Result<UpstreamClaims, AdmitError> {
    match auth.tokens.classify(token).map_err(AdmitError::Token)? {
        Kind::Gateway => Err(AdmitError::GatewayTokenRefused),
        Kind::Upstream => auth
            .tokens
            .verify_upstream(token)
            .map_err(AdmitError::Token),
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn query_token(query: &str) -> Option<String> {
    url_param(query, "token")
}

/// The percent-decoded value of `name` in a query string.
pub fn url_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Verifies a gateway token, its session and the fingerprint header.
pub async fn admin_session(
    auth: &Auth,
    headers: &HeaderMap,
    token: &str,
) -> Result<AdminPrincipal, AdmitError> {
    let presented = headers
        .get(&X_CLIENT_FINGERPRINT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let admin = session_of_token(auth, token).await?;
    let Some(presented) = presented else {
        return Err(AdmitError::FingerprintMissing {
            sid: admin.session.id,
        });
    };
    check_fingerprint(&admin, presented)?;
    auth.sessions.touch(&admin.session);
    Ok(admin)
}

/// Verifies a gateway token and finds its live session, without the fingerprint (which a
/// browser cannot send on a WebSocket upgrade; the socket's first frame carries it). Not
/// activity: the caller touches the session once it admitted the request.
pub async fn session_of_token(auth: &Auth, token: &str) -> Result<AdminPrincipal, AdmitError> {
    let sid = match auth.tokens.verify_gateway(token) {
        Ok(t) => t.sid,
        Err(TokenError::Expired { sid: Some(_) }) => return Err(AdmitError::SessionCapReached),
        Err(e) => return Err(AdmitError::Token(e)),
    };
    match auth.sessions.lookup(&sid).await {
        Lookup::Active(session) => Ok(AdminPrincipal { session }),
        Lookup::Ended(why) => Err(AdmitError::SessionEnded { sid, why }),
        Lookup::Expired => Err(AdmitError::SessionExpired),
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

/// Enforces `X-Session-Pin` on a `require_pin` route.
async fn check_pin(auth: &Auth, session: &Session, headers: &HeaderMap) -> Result<(), AdmitError> {
    let presented = headers
        .get(&X_SESSION_PIN)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or(AdmitError::PinRequired)?;
    let hash = session.pin().hash.ok_or(AdmitError::PinNotSet)?;
    if pin::verify(presented.to_owned(), hash).await {
        session.update_pin(|p| p.failures = 0);
        Ok(())
    } else {
        register_pin_failure(auth, session).await;
        Err(AdmitError::PinIncorrect)
    }
}

/// Counts a wrong PIN; ends the session after [`pin::MAX_FAILURES`] in a row.
pub async fn register_pin_failure(auth: &Auth, session: &Session) {
    let failures = session
        .update_pin(|p| {
            p.failures += 1;
            p.failures
        })
        .unwrap_or(pin::MAX_FAILURES);
    if failures >= pin::MAX_FAILURES {
        tracing::warn!(user = %session.user, session = ?session.id, "too many wrong PINs; session ended");
        auth.sessions.end(&session.id, Ended::LoggedOut).await;
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
            url_param("a=1&token=x%2Ey&b", "token").as_deref(),
            Some("x.y")
        );
        assert_eq!(url_param("a=1", "token"), None);
    }
}
