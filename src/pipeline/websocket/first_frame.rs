//! The I/O-free part of a socket's first-frame check: parse the frame, verify its token,
//! apply the per-kind rules. No session or upstream lookup happens here.

use serde_json::{Map, Value};

use crate::auth::token::{GatewayToken, UpstreamClaims};
use crate::auth::{Tokens, Verified};
use crate::proxy::websocket::CLOSE_UNAUTHORIZED;

use super::{CLOSE_FORBIDDEN, CLOSE_POLICY};

/// What a first frame claims, checked without any session or upstream lookup.
#[doc(hidden)]
#[derive(Debug)]
pub enum Claimed {
    /// A verified gateway token and the frame's (non-empty) fingerprint; the session and
    /// the fingerprint still have to be checked.
    Gateway(GatewayToken, String, Map<String, Value>),
    /// A verified upstream token on an agent socket, outside the registration phase: the
    /// frame goes upstream unchanged.
    Upstream(UpstreamClaims),
}

/// The close code and reason of a refused first frame: ARCP's own for each socket kind.
pub(super) fn refusal(dashboard: bool) -> (u16, &'static str) {
    if dashboard {
        (CLOSE_UNAUTHORIZED, "authentication failed")
    } else {
        (CLOSE_POLICY, "Invalid token")
    }
}

/// The I/O-free part of [`super::authenticate`]: parses the frame and verifies its token. Public
/// only for the fuzz target `ws_first_frame` (`fuzz/`); `dashboard` picks the dashboard
/// socket's rules, else the agent socket's.
#[doc(hidden)]
pub fn parse_first_frame(
    tokens: &Tokens,
    dashboard: bool,
    text: &str,
) -> Result<Claimed, (u16, &'static str)> {
    let (refused, invalid) = refusal(dashboard);
    let frame: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => return Err((refused, "expected a JSON authentication frame")),
    };
    let token = match frame.get("token") {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => return Err((refused, "no token in the first frame")),
    };
    match tokens.verify(token).map_err(|_| (refused, invalid))? {
        Verified::Gateway(t) => {
            // Sessions are bound to their fingerprint; a socket is no exception.
            let fp = match frame.get("fingerprint") {
                Some(Value::String(fp)) if !fp.is_empty() => fp.clone(),
                _ => return Err((refused, "fingerprint required")),
            };
            Ok(Claimed::Gateway(t, fp, frame))
        }
        Verified::Upstream(_) if dashboard => Err((CLOSE_FORBIDDEN, "admin role required")),
        // Registration-phase tokens pass on registration routes only (docs/design.md §5);
        // a temp token, minted for any `agent_id`, would open that agent's socket.
        Verified::Upstream(claims) if claims.is_registration_phase() => Err((refused, invalid)),
        Verified::Upstream(claims) => Ok(Claimed::Upstream(claims)),
    }
}
