//! JWT helpers for the session and WebSocket tests: sign HS256 tokens the way ARCP and forgers
//! would ([`hs256`], [`agent_token`], [`assemble_jwt`] for hand-made headers and signatures),
//! and read the header and claims of a token the gateway issued without verifying it
//! ([`claims_of`], [`header_of`]).
//!
//! Nothing here verifies a token; the ARCP stub does that for agent tokens
//! ([`super::arcp_stub::verify_agent_token`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::arcp_stub::UPSTREAM_SECRET;

/// Seconds since the Unix epoch, by the system clock (what `iat`/`exp` are compared with).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 JWT of `claims` with `kid` (if any), signed with `key`.
pub fn hs256(kid: Option<&str>, claims: &Value, key: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

/// An agent token as ARCP mints it (`registry.create_access_token`), valid for an hour.
pub fn agent_token(sub: &str) -> String {
    let now = now();
    hs256(
        None,
        &json!({"sub": sub, "agent_id": sub, "scopes": [], "role": "agent", "iat": now, "exp": now + 3600}),
        UPSTREAM_SECRET.as_bytes(),
    )
}

/// `header.payload.signature` from JSON parts and raw signature bytes.
pub fn assemble_jwt(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The claims of a JWT, unverified (for assertions on tokens the gateway issued).
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The header of a JWT, unverified.
pub fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}
