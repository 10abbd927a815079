//! People and tokens: password verification, gateway tokens, upstream token checks, PINs
//! and the gateway-owned login.
//!
//! [`Users`] and [`Tokens`] belong to the per-request snapshot (they change with the
//! configuration); the session store and the login throttle are long-lived handles.

pub mod credentials;
pub(crate) mod login;
pub(crate) mod pin;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;

use crate::ratelimit::LoginSettings;
use crate::secret::Secret;
use token::{GatewayKey, UpstreamTokens};
pub use token::{Tokens, Verified};

/// Settings of people and tokens (`auth:` and `upstream.token_verification`).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub issuer: String,
    /// Verification keys; the signing key is among them.
    pub keys: Vec<GatewayKey>,
    pub signing_kid: String,
    pub users: Vec<UserSettings>,
    pub login: LoginSettings,
    /// How upstream-minted agent and temp tokens are verified (`upstream.token_verification`).
    pub upstream_tokens: Option<UpstreamTokens>,
}

/// A person who can log in. `Debug` shows the name and role, never the hash.
#[derive(Clone)]
pub struct UserSettings {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
}

impl std::fmt::Debug for UserSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSettings")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl UserSettings {
    /// A user whose `password_hash` is an argon2id PHC string at or above the OWASP minimum.
    pub fn new(name: &str, password_hash: &str, role: Role) -> Result<UserSettings, String> {
        credentials::check_phc(password_hash)?;
        Ok(UserSettings {
            name: name.to_owned(),
            password_hash: password_hash.to_owned(),
            role,
        })
    }
}

/// What a user may do (today every configured user is an ARCP admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
}

/// The configured users, by name, with a dummy hash for names that are not among them.
#[derive(Clone)]
pub struct Users {
    users: Arc<HashMap<String, UserSettings>>,
    /// A hash with the strongest configured parameters (at least the shipped ones),
    /// verified for unknown users so the response time reveals no user names.
    dummy_hash: Arc<str>,
    /// Keys the references under which names that are no user are logged.
    log_key: Arc<ring::hmac::Key>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// `shared_secret` is the key material every replica of a fleet has (the signing
    /// secret or key): names that are no user then get the same reference on every
    /// replica, so attempts under them are counted fleet-wide exactly like attempts under
    /// a real name, and a failure count cannot tell the two apart. Without it the
    /// references are keyed per process (stable across reloads).
    pub fn new(users: &[UserSettings], shared_secret: Option<&Secret>) -> Self {
        let map = users.iter().map(|u| (u.name.clone(), u.clone())).collect();
        let phcs: Vec<&str> = users.iter().map(|u| u.password_hash.as_str()).collect();
        let dummy = credentials::dummy_hash(&phcs);
        let key = match shared_secret {
            Some(secret) => reference_key(secret.expose().as_bytes()),
            None => *process_reference_key(),
        };
        Users {
            users: Arc::new(map),
            dummy_hash: Arc::from(dummy),
            log_key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key)),
        }
    }

    /// Whether `name` is a configured user.
    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// How a typed user name may appear in a log and under which name its failed logins
    /// are counted: a configured name as is; anything else (people type passwords into
    /// the name field) only as a keyed reference, stable across reloads (and across the
    /// fleet, see [`Users::new`]) so repeated attempts are correlated and counted.
    pub fn log_name(&self, name: &str) -> String {
        if self.contains(name) {
            return name.to_owned();
        }
        let tag = ring::hmac::sign(&self.log_key, name.as_bytes());
        let hex: String = tag.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("unknown-{hex}")
    }

    /// Verifies a password with equal work for known and unknown users, off the async
    /// threads (argon2id takes tens of milliseconds by design). `slot` (a verification
    /// slot) is held by the blocking task itself, so it is released when the work ends,
    /// not when a caller that stopped waiting goes away.
    pub async fn verify_password<S: Send + 'static>(
        &self,
        user: &str,
        password: &str,
        slot: S,
    ) -> bool {
        let phc = self.users.get(user).map(|u| u.password_hash.clone());
        let dummy = self.dummy_hash.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            credentials::verify(&password, phc.as_deref(), &dummy)
        })
        .await
        .unwrap_or(false)
    }
}

/// HMAC key for name references = HKDF-SHA256(shared secret, salt naming this one use).
fn reference_key(secret: &[u8]) -> [u8; 32] {
    struct Len;
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let salt = ring::hkdf::Salt::new(
        ring::hkdf::HKDF_SHA256,
        b"arcp-gateway user name references",
    );
    let mut key = [0u8; 32];
    let filled = salt
        .extract(secret)
        .expand(&[b"hmac-sha256 v1"], Len)
        .and_then(|okm| okm.fill(&mut key));
    // 32 bytes is far below HKDF-SHA256's limit of 255 blocks: expansion cannot fail.
    debug_assert!(filled.is_ok());
    key
}

/// A random key drawn once per process, so references survive configuration reloads.
fn process_reference_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(rand::random)
}
