use super::GatewayKey;
use super::*;
use jsonwebtoken::EncodingKey;
use std::time::Duration;

const SECRET: &[u8] = b"gateway-test-secret-0123456789abcdef";
const UPSTREAM: &[u8] = b"test-only-jwt-secret-0123456789abcdef0123";

fn auth() -> AuthSettings {
    AuthSettings {
        issuer: "arcp-gateway".into(),
        keys: vec![GatewayKey {
            kid: "k1".into(),
            algorithm: Algorithm::HS256,
            encoding: Some(EncodingKey::from_secret(SECRET)),
            decoding: DecodingKey::from_secret(SECRET),
            hmac_secret: Some(crate::secret::Secret::new(
                std::str::from_utf8(SECRET).unwrap(),
            )),
        }],
        signing_kid: "k1".into(),
        users: vec![],
        login: crate::ratelimit::LoginSettings {
            max_failures_per_ip: 5,
            max_failures_per_user: 20,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            attempts_per_minute_per_ip: 30,
            max_failures_per_address: 50,
            slowdown_max: Duration::from_secs(5),
            max_concurrent_verifications: 4,
            verification_queue_timeout: Duration::from_secs(2),
        },
        upstream_tokens: None,
    }
}

fn tokens(clock: Clock) -> Tokens {
    let mut auth = auth();
    auth.upstream_tokens = Some(UpstreamTokens {
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(UPSTREAM),
        leeway: Duration::from_secs(60),
        expiry_margin: Duration::from_secs(10),
    });
    Tokens::new(&auth, clock)
}

fn sign(header: Header, claims: &Value, secret: &[u8]) -> String {
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[test]
fn issue_and_verify() {
    let clock = Clock::system();
    let t = tokens(clock.clone());
    let sid = SessionId::random();
    let token = t.issue("ARCP", &sid, clock.now() + 60).unwrap();
    assert!(matches!(t.classify(&token), Ok(Kind::Gateway)));
    let verified = t.verify_gateway(&token).unwrap();
    assert_eq!(verified.sid, sid);
    assert_eq!(t.gateway_claims(&token).unwrap().agent_id, "user_ARCP");
    // The fast path and the general path agree on every outcome.
    assert_eq!(t.decode_gateway(&token).unwrap().1, sid);
    clock.advance(61);
    assert_eq!(
        t.verify_gateway(&token),
        Err(TokenError::Expired { sid: Some(sid) })
    );
}

#[test]
fn forged_and_confused_gateway_tokens_fail() {
    let clock = Clock::system();
    let t = tokens(clock.clone());
    let sid = SessionId::random();
    let claims = serde_json::json!({"iss":"arcp-gateway","sub":"ARCP","sid":sid.to_hex(),"role":"admin",
        "agent_id":"user_ARCP","scopes":[],"iat":clock.now(),"exp":clock.now()+60});
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    // wrong secret
    assert_eq!(
        t.verify_gateway(&sign(
            h.clone(),
            &claims,
            b"another-secret-0123456789abcdefxx"
        )),
        Err(TokenError::Invalid)
    );
    // wrong algorithm for the key (HS512 with the right secret)
    let mut h512 = Header::new(Algorithm::HS512);
    h512.kid = Some("k1".into());
    assert_eq!(
        t.verify_gateway(&sign(h512, &claims, SECRET)),
        Err(TokenError::Invalid)
    );
    // unknown kid
    let mut hk = h.clone();
    hk.kid = Some("nope".into());
    let unknown = sign(hk, &claims, SECRET);
    assert!(matches!(t.classify(&unknown), Err(TokenError::UnknownKid)));
    // wrong issuer
    let mut other = claims.clone();
    other["iss"] = "someone-else".into();
    assert_eq!(
        t.verify_gateway(&sign(h.clone(), &other, SECRET)),
        Err(TokenError::Invalid)
    );
    // alg none
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        base64_url(claims.to_string().as_bytes())
    );
    assert!(t.classify(&none).is_err());
    assert!(t.verify_gateway(&none).is_err());
    // a tampered payload under the genuine header and signature
    let genuine = sign(h.clone(), &claims, SECRET);
    let mut tampered_claims = claims.clone();
    tampered_claims["sid"] = SessionId::random().to_hex().into();
    let tampered = sign(
        h.clone(),
        &tampered_claims,
        b"another-secret-0123456789abcdefxx",
    );
    let parts: Vec<&str> = genuine.split('.').collect();
    let other: Vec<&str> = tampered.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other[1], parts[2]);
    assert_eq!(t.verify_gateway(&spliced), Err(TokenError::Invalid));
    // a non-admin role or a missing sid under a genuine signature
    let mut user = claims.clone();
    user["role"] = "user".into();
    assert_eq!(
        t.verify_gateway(&sign(h.clone(), &user, SECRET)),
        Err(TokenError::Invalid)
    );
    let mut no_sid = claims.clone();
    no_sid.as_object_mut().unwrap().remove("sid");
    assert_eq!(
        t.verify_gateway(&sign(h.clone(), &no_sid, SECRET)),
        Err(TokenError::Invalid)
    );
    // the genuine one passes
    assert!(t.verify_gateway(&genuine).is_ok());
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[test]
fn upstream_tokens_are_verified_like_arcp() {
    let clock = Clock::system();
    let t = tokens(clock.clone());
    let now = clock.now();
    let agent = serde_json::json!({"sub":"agent-1","agent_id":"agent-1","role":"agent","iat":now,"exp":now+600});
    let token = sign(Header::new(Algorithm::HS256), &agent, UPSTREAM);
    assert!(matches!(t.classify(&token), Ok(Kind::Upstream)));
    let claims = t.verify_upstream(&token).unwrap();
    assert_eq!(claims.role, "agent");
    // ARCP accepts HS512 under an HS256 configuration; so does the gateway.
    assert!(t
        .verify_upstream(&sign(Header::new(Algorithm::HS512), &agent, UPSTREAM))
        .is_ok());
    // bad signature
    assert_eq!(
        t.verify_upstream(&sign(Header::new(Algorithm::HS256), &agent, SECRET)),
        Err(TokenError::Invalid)
    );
    // expired, or about to: refused from the margin (10 s) before `exp`, so no token can
    // cross `exp` between the gateway's check and upstream's
    let mut old = agent.clone();
    for exp in [now - 120, now - 30, now, now + 10] {
        old["exp"] = exp.into();
        assert_eq!(
            t.verify_upstream(&sign(Header::new(Algorithm::HS256), &old, UPSTREAM)),
            Err(TokenError::Expired { sid: None }),
            "exp {exp}, now {now}"
        );
    }
    old["exp"] = (now + 11).into();
    assert!(t
        .verify_upstream(&sign(Header::new(Algorithm::HS256), &old, UPSTREAM))
        .is_ok());
    // no exp, future iat, non-string sub
    let mut bad = agent.clone();
    bad.as_object_mut().unwrap().remove("exp");
    assert!(t
        .verify_upstream(&sign(Header::new(Algorithm::HS256), &bad, UPSTREAM))
        .is_err());
    let mut bad = agent.clone();
    bad["iat"] = (now + 3600).into();
    assert!(t
        .verify_upstream(&sign(Header::new(Algorithm::HS256), &bad, UPSTREAM))
        .is_err());
    let mut bad = agent.clone();
    bad["sub"] = 5.into();
    assert!(t
        .verify_upstream(&sign(Header::new(Algorithm::HS256), &bad, UPSTREAM))
        .is_err());
    // an admin token signed with the upstream secret is refused at the edge
    let mut admin = agent.clone();
    admin["role"] = "admin".into();
    assert_eq!(
        t.verify_upstream(&sign(Header::new(Algorithm::HS256), &admin, UPSTREAM)),
        Err(TokenError::ForeignAdmin)
    );
}
