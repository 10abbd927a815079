//! Password hashing with argon2id (RFC 9106).
//!
//! Verification does equal work for known and unknown users: an unknown name is checked
//! against a dummy hash made with the same parameters, so response time does not reveal
//! which user names exist. Nothing sleeps to pad time.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shipped parameters: 19 MiB, 2 passes, 1 lane (OWASP's argon2id recommendation,
/// `m=19456, t=2, p=1`).
pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

fn argon2() -> Argon2<'static> {
    // The constants above are within argon2's bounds; `Params::DEFAULT` is the fallback.
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash_password(password: &str) -> Result<String, String> {
    hash_with(&argon2(), password)
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("cannot encode salt: {e}"))?;
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash: {e}"))
}

/// A hash of random bytes with the strongest parameters among `phcs` (and at least the
/// shipped ones): verifying an unknown user against it costs what the costliest real user
/// costs, so response time reveals no user names.
pub fn dummy_hash(phcs: &[&str]) -> String {
    let (mut m, mut t, mut p) = (M_COST_KIB, T_COST, P_COST);
    for phc in phcs {
        if let Some(params) = PasswordHash::new(phc)
            .ok()
            .and_then(|h| Params::try_from(&h).ok())
        {
            m = m.max(params.m_cost());
            t = t.max(params.t_cost());
            p = p.max(params.p_cost());
        }
    }
    let params = Params::new(m, t, p, None).unwrap_or(Params::DEFAULT);
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let random: [u8; 16] = rand::random();
    hash_with(&argon2, &format!("{random:?}")).unwrap_or_default()
}

/// Checks that `phc` is an argon2id PHC string at or above the OWASP minimum.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC password hash: {e}"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "hash algorithm is `{}`; argon2id is required",
            hash.algorithm
        ));
    }
    let params = Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    if params.m_cost() < M_COST_KIB || params.t_cost() < 1 {
        return Err(format!(
            "argon2id parameters m={},t={} are below the minimum m={M_COST_KIB},t={T_COST}",
            params.m_cost(),
            params.t_cost()
        ));
    }
    Ok(())
}

/// Verifies `password` against `phc`; `None` (unknown user) verifies against a dummy hash
/// and always fails, doing the same work.
pub fn verify(password: &str, phc: Option<&str>, dummy: &str) -> bool {
    let (phc, real) = match phc {
        Some(p) => (p, true),
        None => (dummy, false),
    };
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    // Parameters come from the PHC string itself.
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok();
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_round_trip() {
        let phc = hash_password("ARCP").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        check_phc(&phc).unwrap();
        assert!(verify("ARCP", Some(&phc), &phc));
        assert!(!verify("arcp", Some(&phc), &phc));
        assert!(!verify("ARCP", None, &phc), "unknown users never verify");
    }

    #[test]
    fn the_dummy_hash_is_as_costly_as_the_costliest_user() {
        let strong = "$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
        let dummy = dummy_hash(&[strong]);
        assert!(
            dummy.starts_with("$argon2id$v=19$m=65536,t=3,p=2$"),
            "{dummy}"
        );
        let shipped = dummy_hash(&[]);
        assert!(
            shipped.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{shipped}"
        );
    }

    #[test]
    fn weak_or_foreign_hashes_are_refused() {
        assert!(check_phc("plaintext").is_err());
        let weak = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check_phc(weak).unwrap_err().contains("below the minimum"));
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check_phc(argon2i).is_err());
    }
}
