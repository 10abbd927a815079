//! One upstream admin session for the whole fleet (docs/design.md §4, "Upstream session").
//!
//! ARCP allows five sessions per user name and every login takes ~1.8 s, so replicas must
//! not each log in. With a shared store the brokered credentials live in Redis:
//!
//! * `P upstream:creds`: the token, the fingerprint it is bound to, its generation and
//!   when to refresh / consider it gone (Unix ms), as JSON sealed with AES-256-GCM under a
//!   key derived (HKDF-SHA256) from the gateway's signing secret, the Redis key name as
//!   associated data. TTL = the credentials' remaining life.
//! * `P upstream:lock`: `SET NX PX` with a random token; the holder logs in, stores the
//!   result, releases the lock (compare-and-delete) and publishes `creds`.
//! * `P upstream:generation`: `INCR` gives fleet-wide generation numbers, so a replica that
//!   got a 401 with generation *g* adopts anything newer than *g* instead of logging in.
//!
//! A replica that finds the lock taken waits for the `creds` event (bounded), then reads
//! again. Credentials that cannot be decrypted (another signing key) count as absent.

use std::time::Duration;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use serde::{Deserialize, Serialize};

use crate::fleet::{Fleet, FleetError};

/// How long a lock holder may take to log in before another replica may try.
pub const LOCK_TTL: Duration = Duration::from_secs(15);

/// The credentials as every replica reads them.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedRecord {
    pub token: String,
    pub fingerprint: String,
    pub generation: u64,
    pub refresh_at_ms: i64,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for SharedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRecord")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Handle on the fleet's upstream credentials.
#[derive(Clone)]
pub struct SharedCredentials {
    pub fleet: Fleet,
    key: std::sync::Arc<LessSafeKey>,
    creds_key: String,
    lock_key: String,
    generation_key: String,
}

impl std::fmt::Debug for SharedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCredentials").finish_non_exhaustive()
    }
}

impl SharedCredentials {
    /// `None` only if the key cannot be derived (which HKDF never refuses for 32 bytes).
    pub fn new(fleet: Fleet) -> Option<Self> {
        let key = derive_key(fleet.signing_secret().expose().as_bytes())?;
        Some(SharedCredentials {
            creds_key: fleet.key("upstream:creds"),
            lock_key: fleet.key("upstream:lock"),
            generation_key: fleet.key("upstream:generation"),
            key: std::sync::Arc::new(key),
            fleet,
        })
    }

    /// The stored credentials, if any can be read with our key.
    pub async fn read(&self) -> Result<Option<SharedRecord>, FleetError> {
        let blob: Option<Vec<u8>> = self
            .fleet
            .query(redis::cmd("GET").arg(&self.creds_key))
            .await?;
        let Some(blob) = blob else { return Ok(None) };
        let record = self.open(blob);
        if record.is_none() {
            tracing::warn!("shared upstream credentials cannot be decrypted (another signing key?); ignoring them");
        }
        Ok(record)
    }

    /// Stores credentials for `ttl` and tells every replica (one round trip).
    pub async fn write(&self, record: &SharedRecord, ttl: Duration) -> Result<(), FleetError> {
        let blob = self.seal(record);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&self.creds_key)
            .arg(blob)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.fleet.channel())
            .arg("creds")
            .ignore();
        self.fleet.pipe::<()>(&pipe).await
    }

    /// Tries to become the replica that logs in; `Some(token)` to release with.
    pub async fn lock(&self) -> Result<Option<String>, FleetError> {
        let token = format!("{:032x}", rand::random::<u128>());
        let ok: Option<String> = self
            .fleet
            .query(
                redis::cmd("SET")
                    .arg(&self.lock_key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_TTL.as_millis() as u64),
            )
            .await?;
        Ok(ok.map(|_| token))
    }

    /// Releases the lock if still ours, and wakes the waiting replicas.
    pub async fn unlock(&self, token: &str) -> Result<(), FleetError> {
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end \
             redis.call('PUBLISH', ARGV[2], 'creds') return 1",
        );
        let channel = self.fleet.channel();
        let _: i64 = self
            .fleet
            .script(
                &script,
                &[&self.lock_key],
                &[token.as_bytes(), channel.as_bytes()],
            )
            .await?;
        Ok(())
    }

    /// The next fleet-wide generation number.
    pub async fn next_generation(&self) -> Result<u64, FleetError> {
        self.fleet
            .query(redis::cmd("INCR").arg(&self.generation_key))
            .await
    }

    fn seal(&self, record: &SharedRecord) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut buf = serde_json::to_vec(record).unwrap_or_default();
        let aad = Aad::from(self.creds_key.as_bytes());
        if self
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), aad, &mut buf)
            .is_err()
        {
            return Vec::new();
        }
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    fn open(&self, blob: Vec<u8>) -> Option<SharedRecord> {
        if blob.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let aad = Aad::from(self.creds_key.as_bytes());
        let plain = self.key.open_in_place(nonce, aad, &mut sealed).ok()?;
        serde_json::from_slice(plain).ok()
    }
}

/// AES-256-GCM key = HKDF-SHA256(signing secret, salt and info naming this one use).
fn derive_key(secret: &[u8]) -> Option<LessSafeKey> {
    let salt = hkdf::Salt::new(
        hkdf::HKDF_SHA256,
        b"arcp-gateway shared upstream credentials",
    );
    let info: [&[u8]; 1] = [b"aes-256-gcm v1"];
    let prk = salt.extract(secret);
    let okm = prk.expand(&info, &AES_256_GCM).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::RedisSettings;
    use crate::secret::Secret;

    fn shared(secret: &str) -> SharedCredentials {
        let fleet = Fleet::new(&RedisSettings {
            url: Secret::new("redis://127.0.0.1:1/0"),
            key_prefix: "t:".into(),
            ca_pem: None,
            connect_timeout: Duration::from_millis(100),
            command_timeout: Duration::from_millis(100),
            signing_secret: Secret::new(secret),
        })
        .unwrap();
        SharedCredentials::new(fleet).unwrap()
    }

    #[tokio::test]
    async fn sealed_records_open_only_with_the_same_signing_secret() {
        let a = shared("signing-secret-a-0123456789abcdef0123");
        let b = shared("signing-secret-b-0123456789abcdef0123");
        let rec = SharedRecord {
            token: "upstream.jwt.value".into(),
            fingerprint: "fp".into(),
            generation: 7,
            refresh_at_ms: 1,
            expires_at_ms: 2,
        };
        let blob = a.seal(&rec);
        assert!(!String::from_utf8_lossy(&blob).contains("upstream.jwt.value"));
        assert_eq!(a.open(blob.clone()).unwrap().generation, 7);
        assert!(b.open(blob.clone()).is_none());
        let mut tampered = blob;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(a.open(tampered).is_none());
    }
}
