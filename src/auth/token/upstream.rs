//! Upstream-minted tokens (agent, temp): verified with ARCP's secret exactly as strictly as
//! ARCP will, because ARCP wipes every session of a token's `sub` when it receives one it
//! cannot verify (contract §8.1).

use std::ops::Range;

use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde_json::{Map, Value};

use super::{TokenError, Tokens, UpstreamClaims};

impl Tokens {
    /// Verifies an upstream-minted token as strictly as ARCP would; with its claims, the
    /// seconds of the clock over which that verdict holds (from the latest `iat`/`nbf` less
    /// the leeway, until the margin before `exp`).
    pub(super) fn verify_upstream(
        &self,
        token: &str,
    ) -> Result<(UpstreamClaims, Range<i64>), TokenError> {
        let up = self
            .inner
            .upstream
            .as_ref()
            .ok_or(TokenError::NoUpstreamKey)?;
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.kid.is_some() {
            return Err(TokenError::UnknownKid);
        }
        if !matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let data = decode::<Map<String, Value>>(token, &up.key, &validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let now = self.inner.clock.now();
        let leeway = up.leeway.as_secs() as i64;
        let number = |name: &str| {
            claims
                .get(name)
                .map(|v| v.as_f64().ok_or(TokenError::Invalid))
        };
        let exp = number("exp").ok_or(TokenError::Invalid)??;
        // Refused from `expiry_margin` before `exp`: upstream, which tolerates `leeway` past
        // `exp`, then has margin + leeway against transit time and clock skew.
        let refused_from = (exp as i64).saturating_sub(up.expiry_margin.as_secs() as i64);
        if refused_from <= now {
            return Err(TokenError::Expired { sid: None });
        }
        let mut valid_from = i64::MIN;
        for future_claim in ["iat", "nbf"] {
            if let Some(t) = number(future_claim) {
                let from = (t? as i64).saturating_sub(leeway);
                if from > now {
                    return Err(TokenError::Invalid);
                }
                valid_from = valid_from.max(from);
            }
        }
        let string = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(TokenError::Invalid),
        };
        let sub = string("sub")?;
        let agent_id = string("agent_id")?.or_else(|| sub.clone());
        string("jti")?;
        let role = match claims.get("role") {
            None => "agent".to_owned(),
            Some(Value::String(r)) => r.to_lowercase(),
            Some(_) => return Err(TokenError::Invalid),
        };
        if role == "admin" {
            return Err(TokenError::ForeignAdmin);
        }
        let claims = UpstreamClaims {
            sub,
            agent_id,
            role,
            token_type: string("token_type").ok().flatten(),
            aud: string("aud").ok().flatten(),
            temp_registration: claims.get("temp_registration") == Some(&Value::Bool(true)),
        };
        Ok((claims, valid_from..refused_from))
    }
}
