//! Tokens: the gateway's own admin tokens, and upstream-minted agent/temp tokens.
//!
//! * Gateway tokens (RFC 7519 JWT) carry a `kid` naming one of the configured keys; the
//!   algorithm is pinned per key, the issuer is pinned, `exp` is the session's absolute cap.
//!   `alg: none` cannot even be parsed, and an HS token cannot verify against an EdDSA key
//!   (or the reverse) because each key accepts exactly its own algorithm.
//! * Upstream tokens have no `kid` (ARCP signs with `JWT_SECRET`). They are verified with
//!   that secret exactly as strictly as ARCP will (HS256/384/512, `exp` required, `iat`/`nbf`
//!   not in the future, string `sub`/`jti`), because ARCP wipes every session of a token's
//!   `sub` when it receives one it cannot verify (contract §8.1).
//! * A token is classified by its header `kid`, never by trying keys until one fits.
//!
//! Times are checked against the injected [`Clock`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthSettings;
use crate::clock::Clock;
use crate::session::SessionId;
use std::time::Duration;

use jsonwebtoken::EncodingKey;

use crate::secret::Secret;

/// How upstream-minted agent and temp tokens are verified.
#[derive(Clone)]
pub struct UpstreamTokens {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    pub leeway: Duration,
    /// Tokens whose `exp` is this close are refused, so none can expire between the
    /// gateway's check and upstream's (which tolerates `leeway` past `exp` on top).
    pub expiry_margin: Duration,
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("algorithm", &self.algorithm)
            .field("leeway", &self.leeway)
            .field("expiry_margin", &self.expiry_margin)
            .finish_non_exhaustive()
    }
}

/// A gateway token key with its `kid`.
#[derive(Clone)]
pub struct GatewayKey {
    pub kid: String,
    pub algorithm: Algorithm,
    /// `None` for verification-only keys (kept during a rotation).
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
    /// The HMAC secret of an HS256 key (for the allocation-free verification path).
    pub hmac_secret: Option<Secret>,
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.encoding.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token names an unknown key")]
    UnknownKid,
    #[error("token signature or claims are invalid")]
    Invalid,
    /// Signature valid, `exp` passed. For gateway tokens `sid` says which session.
    #[error("token has expired")]
    Expired { sid: Option<SessionId> },
    #[error("token role `admin` was not issued by this gateway")]
    ForeignAdmin,
    #[error("no upstream token verification is configured")]
    NoUpstreamKey,
    #[error("cannot sign a token")]
    Sign,
}

/// Claims of a gateway admin token. `Debug` leaves the session id out (ids are redacted in
/// logs; docs/design.md §4).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GatewayClaims {
    pub iss: String,
    pub sub: String,
    pub sid: String,
    pub role: String,
    pub agent_id: String,
    pub scopes: Vec<String>,
    pub iat: i64,
    pub exp: i64,
}

impl std::fmt::Debug for GatewayClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClaims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("role", &self.role)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// What the gateway learned from a verified upstream token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamClaims {
    pub sub: Option<String>,
    /// The agent the token speaks for (`agent_id`; `sub` for tokens without one).
    pub agent_id: Option<String>,
    pub role: String,
    pub token_type: Option<String>,
    pub aud: Option<String>,
    pub temp_registration: bool,
}

impl UpstreamClaims {
    pub fn is_temp(&self) -> bool {
        self.token_type.as_deref() == Some("temp") && self.aud.as_deref() == Some("arcp:validate")
    }

    /// A token of the registration phases (temp or validated; contract §3.2): only the
    /// registration routes accept it. Elsewhere it would act as a full agent token for
    /// whatever `agent_id` it was requested for, and `/tokens/refresh` would launder it
    /// into one (contract §8.9).
    pub fn is_registration_phase(&self) -> bool {
        self.temp_registration
            || matches!(self.token_type.as_deref(), Some("temp" | "validated"))
            || matches!(self.aud.as_deref(), Some("arcp:validate" | "arcp:register"))
    }
}

/// A bearer token, classified by its header.
enum Kind {
    Gateway,
    Upstream,
}

/// What a verified bearer token proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A gateway admin token: its session still has to be looked up.
    Gateway(GatewayToken),
    /// An upstream-minted agent or temp token, verified as strictly as ARCP would.
    Upstream(UpstreamClaims),
}

struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
}

/// An HS256 gateway key on the fast path: the exact header segment this gateway writes for
/// it, and a ring HMAC key.
struct FastKey {
    header_b64: String,
    hmac: ring::hmac::Key,
}

/// What a verified gateway token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayToken {
    pub sid: SessionId,
    pub exp: i64,
}

/// The claims the fast path reads, borrowed from the decoded payload.
#[derive(Deserialize)]
struct ClaimsRef<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    sid: Cow<'a, str>,
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    #[allow(dead_code)]
    sub: Cow<'a, str>,
    exp: i64,
}

/// Issues and verifies gateway tokens; verifies upstream tokens. Cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    signing_kid: String,
    signing: Option<(Algorithm, jsonwebtoken::EncodingKey)>,
    keys: HashMap<String, Key>,
    fast: Vec<FastKey>,
    upstream: Option<UpstreamTokens>,
    clock: Clock,
    /// Names this set of keys in the per-thread verdicts ([`verdicts`]).
    generation: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.inner.issuer)
            .field("signing_kid", &self.inner.signing_kid)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(auth: &AuthSettings, clock: Clock) -> Self {
        let upstream = auth.upstream_tokens.clone();
        let keys = auth
            .keys
            .iter()
            .map(|k| {
                (
                    k.kid.clone(),
                    Key {
                        algorithm: k.algorithm,
                        decoding: k.decoding.clone(),
                    },
                )
            })
            .collect();
        let signing = auth
            .keys
            .iter()
            .find(|k| k.kid == auth.signing_kid)
            .and_then(|k| k.encoding.clone().map(|e| (k.algorithm, e)));
        let fast = auth
            .keys
            .iter()
            .filter(|k| k.algorithm == Algorithm::HS256)
            .filter_map(|k| {
                let secret = k.hmac_secret.as_ref()?;
                Some(FastKey {
                    header_b64: header_segment(&k.kid)?,
                    hmac: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes()),
                })
            })
            .collect();
        Tokens {
            inner: Arc::new(Inner {
                issuer: auth.issuer.clone(),
                signing_kid: auth.signing_kid.clone(),
                signing,
                keys,
                fast,
                upstream,
                clock,
                generation: verdicts::next_generation(),
            }),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Verifies any bearer token: classified by its header `kid` (never by trying keys),
    /// then checked with the one key and algorithm that class allows. The one entry point
    /// for admission, the gateway's answers and the WebSocket first frame.
    /// A token this thread already verified under these keys gets the same verdict while its
    /// lifetime lasts ([`verdicts`]).
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let generation = self.inner.generation;
        if let Some(verified) = verdicts::recall(generation, token, self.inner.clock.now()) {
            return Ok(verified);
        }
        let (verified, holds) = self.verify_in_full(token)?;
        verdicts::remember(generation, token, &verified, holds);
        Ok(verified)
    }

    /// [`Tokens::verify`] without the per-thread verdicts, neither read nor kept (the fuzz
    /// targets hold the two to the same answer).
    pub fn verify_afresh(&self, token: &str) -> Result<Verified, TokenError> {
        self.verify_in_full(token).map(|(verified, _)| verified)
    }

    /// The verdict, and the seconds of the clock over which it holds.
    fn verify_in_full(&self, token: &str) -> Result<(Verified, Range<i64>), TokenError> {
        Ok(match self.classify(token)? {
            Kind::Gateway => {
                let gateway = self.verify_gateway(token)?;
                (Verified::Gateway(gateway), i64::MIN..gateway.exp)
            }
            Kind::Upstream => {
                let (claims, holds) = self.verify_upstream(token)?;
                (Verified::Upstream(claims), holds)
            }
        })
    }

    /// Classifies a token by its header `kid`.
    fn classify(&self, token: &str) -> Result<Kind, TokenError> {
        if self.fast_key(token).is_some() {
            return Ok(Kind::Gateway);
        }
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        match header.kid {
            Some(kid) if self.inner.keys.contains_key(&kid) => Ok(Kind::Gateway),
            Some(_) => Err(TokenError::UnknownKid),
            None => Ok(Kind::Upstream),
        }
    }

    /// Signs a token for a session.
    pub fn issue(&self, user: &str, sid: &SessionId, exp: i64) -> Result<String, TokenError> {
        let (algorithm, key) = self.inner.signing.as_ref().ok_or(TokenError::Sign)?;
        let mut header = Header::new(*algorithm);
        header.kid = Some(self.inner.signing_kid.clone());
        let claims = GatewayClaims {
            iss: self.inner.issuer.clone(),
            sub: user.to_owned(),
            sid: sid.to_hex(),
            role: "admin".into(),
            agent_id: format!("user_{user}"),
            scopes: vec!["admin".into(), "agent_management".into()],
            iat: self.inner.clock.now(),
            exp,
        };
        encode(&header, &claims, key).map_err(|_| TokenError::Sign)
    }

    /// Verifies a gateway token: known `kid`, that key's algorithm, our issuer, `exp`.
    fn verify_gateway(&self, token: &str) -> Result<GatewayToken, TokenError> {
        if let Some(key) = self.fast_key(token) {
            return self.verify_fast(key, token);
        }
        let (claims, sid) = self.decode_gateway(token)?;
        self.check_lifetime(sid, claims.exp)
    }

    /// The full claims of a gateway token (for `/tokens/validate`); verifies like
    /// [`Tokens::verify_gateway`].
    pub fn gateway_claims(&self, token: &str) -> Result<GatewayClaims, TokenError> {
        let (claims, sid) = self.decode_gateway(token)?;
        self.check_lifetime(sid, claims.exp)?;
        Ok(claims)
    }

    fn check_lifetime(&self, sid: SessionId, exp: i64) -> Result<GatewayToken, TokenError> {
        if exp <= self.inner.clock.now() {
            return Err(TokenError::Expired { sid: Some(sid) });
        }
        Ok(GatewayToken { sid, exp })
    }

    /// The general path: any configured key and algorithm, through jsonwebtoken.
    fn decode_gateway(&self, token: &str) -> Result<(GatewayClaims, SessionId), TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.ok_or(TokenError::UnknownKid)?;
        let key = self.inner.keys.get(&kid).ok_or(TokenError::UnknownKid)?;
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // `exp` is checked against the injected clock.
        validation.validate_exp = false;
        validation.validate_aud = false;
        let data = decode::<GatewayClaims>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let sid = SessionId::from_hex(&claims.sid).ok_or(TokenError::Invalid)?;
        if claims.role != "admin" {
            return Err(TokenError::Invalid);
        }
        Ok((claims, sid))
    }

    /// The HS256 key whose exact header segment `token` starts with.
    fn fast_key(&self, token: &str) -> Option<&FastKey> {
        let header = token.split('.').next()?;
        self.inner.fast.iter().find(|k| k.header_b64 == header)
    }

    /// HS256 verification without a general JWT parser and without heap allocation: the
    /// header is byte-identical to the one this gateway writes (so `alg` and `kid` are
    /// pinned), the MAC is checked by ring in constant time, then the payload is decoded
    /// into a stack buffer and parsed once, borrowing its strings.
    fn verify_fast(&self, key: &FastKey, token: &str) -> Result<GatewayToken, TokenError> {
        let mut parts = token.splitn(3, '.');
        let (Some(header), Some(payload), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let mut mac = [0u8; 48];
        let n = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut mac)
            .map_err(|_| TokenError::Invalid)?;
        let signed = &token[..header.len() + 1 + payload.len()];
        ring::hmac::verify(&key.hmac, signed.as_bytes(), &mac[..n])
            .map_err(|_| TokenError::Invalid)?;
        let mut buf = [0u8; 1024];
        let Ok(n) = URL_SAFE_NO_PAD.decode_slice(payload, &mut buf) else {
            // Longer than the stack buffer (a long user name full of characters JSON
            // escapes), or not base64: the general path decides.
            let (claims, sid) = self.decode_gateway(token)?;
            return self.check_lifetime(sid, claims.exp);
        };
        let claims: ClaimsRef<'_> =
            serde_json::from_slice(&buf[..n]).map_err(|_| TokenError::Invalid)?;
        if claims.iss != self.inner.issuer.as_str() || claims.role != "admin" {
            return Err(TokenError::Invalid);
        }
        let sid = SessionId::from_hex(&claims.sid).ok_or(TokenError::Invalid)?;
        self.check_lifetime(sid, claims.exp)
    }
}

/// The base64url header segment this gateway writes for `kid` (as jsonwebtoken encodes it).
fn header_segment(kid: &str) -> Option<String> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    let token = encode(
        &header,
        &serde_json::json!({}),
        &jsonwebtoken::EncodingKey::from_secret(b"header-only"),
    )
    .ok()?;
    token.split('.').next().map(str::to_owned)
}

mod upstream;
mod verdicts;

#[cfg(test)]
mod tests;
