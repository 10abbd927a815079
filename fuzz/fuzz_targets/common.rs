//! Shared by the fuzz targets: a configuration with keys, and the secrets it names.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Once;

use arcp_gateway::auth::Tokens;
use arcp_gateway::clock::Clock;
use arcp_gateway::config::{self, Settings};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// The gateway's HS256 signing secret (`kid: k1`) and ARCP's `JWT_SECRET`.
pub const SIGNING_SECRET: &str = "fuzz-gateway-signing-secret-0123456789abcdef";
pub const OLD_SECRET: &str = "fuzz-gateway-rotated-secret-0123456789abcdef";
pub const JWT_SECRET: &str = "fuzz-arcp-jwt-secret-0123456789abcdef0123";
pub const ADMIN_PASSWORD: &str = "fuzz-admin-password-0123456789";

/// A configuration whose token settings the token and WebSocket targets use.
pub const TOKEN_CONFIG: &str = "
listeners:
  - address: 127.0.0.1:8443
    plain_http: true
upstream:
  url: http://127.0.0.1:8001
  service_account: {username: admin, password_env: FUZZ_ADMIN_PASSWORD}
  token_verification: {algorithm: HS256, secret_env: FUZZ_JWT_SECRET, leeway: 60s}
auth:
  signing_key: k1
  keys:
    - {kid: k1, algorithm: HS256, secret_env: FUZZ_SIGNING_SECRET}
    - {kid: k0, algorithm: HS256, secret_env: FUZZ_OLD_SECRET}
routes:
  profile: arcp
";

/// Sets the environment variables the configurations name (once per process).
pub fn set_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("FUZZ_SIGNING_SECRET", SIGNING_SECRET);
        std::env::set_var("FUZZ_OLD_SECRET", OLD_SECRET);
        std::env::set_var("FUZZ_JWT_SECRET", JWT_SECRET);
        std::env::set_var("FUZZ_ADMIN_PASSWORD", ADMIN_PASSWORD);
        // The names the shipped configurations use.
        std::env::set_var("ARCP_GATEWAY_SIGNING_SECRET", SIGNING_SECRET);
        std::env::set_var("ARCP_JWT_SECRET", JWT_SECRET);
        std::env::set_var("ARCP_ADMIN_PASSWORD", ADMIN_PASSWORD);
    });
}

pub fn settings() -> Settings {
    set_env();
    config::from_str(TOKEN_CONFIG, "fuzz.yaml", Path::new("/nonexistent")).expect("fuzz config")
}

pub fn tokens() -> Tokens {
    Tokens::new(&settings().auth, Clock::system())
}

/// `header.payload.signature` with an HMAC over the given header and payload bytes.
pub fn sign_raw(header: &[u8], payload: &[u8], algorithm: Algorithm, secret: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        algorithm,
    )
    .expect("HMAC signing");
    format!("{signing_input}.{signature}")
}

/// A genuine upstream agent token (as ARCP mints them), valid for an hour.
pub fn upstream_token(now: i64) -> String {
    let claims = serde_json::json!({
        "sub": "agent-007", "agent_id": "agent-007", "role": "agent", "jti": "j1",
        "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("upstream token")
}
