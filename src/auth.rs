//! People and tokens: password verification, gateway tokens, upstream token checks, PINs
//! and the gateway-owned `/auth/*` endpoints.

pub mod credentials;
pub mod pin;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{Settings, UserSettings};
use crate::ratelimit::LoginThrottle;
use crate::session::SessionStore;
pub use token::Tokens;

/// Handles for authentication, built once.
#[derive(Clone, Debug)]
pub struct Auth {
    pub tokens: Tokens,
    pub sessions: SessionStore,
    pub throttle: LoginThrottle,
    /// How fast login and PIN bodies must arrive (`server.body_*`).
    pub body_pace: crate::body::Pace,
    users: Arc<HashMap<String, UserSettings>>,
    /// A hash with the shipped parameters, verified for unknown users (equal work).
    dummy_hash: Arc<str>,
}

impl Auth {
    pub fn new(settings: &Settings, clock: Clock) -> Self {
        let users = settings
            .auth
            .users
            .iter()
            .map(|u| (u.name.clone(), u.clone()))
            .collect();
        let random: [u8; 16] = rand::random();
        let dummy = credentials::hash_password(&format!("{random:?}")).unwrap_or_default();
        Auth {
            tokens: Tokens::new(
                &settings.auth,
                settings.upstream.token_verification.clone(),
                clock.clone(),
            ),
            sessions: SessionStore::new(&settings.sessions, clock),
            throttle: LoginThrottle::new(&settings.auth.login),
            body_pace: settings.server.body_pace(),
            users: Arc::new(users),
            dummy_hash: Arc::from(dummy),
        }
    }

    /// Verifies a password with equal work for known and unknown users, off the async
    /// threads (argon2id takes tens of milliseconds by design).
    pub async fn verify_password(&self, user: &str, password: &str) -> bool {
        let phc = self.users.get(user).map(|u| u.password_hash.clone());
        let dummy = self.dummy_hash.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || credentials::verify(&password, phc.as_deref(), &dummy))
            .await
            .unwrap_or(false)
    }
}
