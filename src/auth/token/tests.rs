use super::GatewayKey;
use super::*;
use jsonwebtoken::EncodingKey;
use serde_json::Value;
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

#[test]
fn a_token_for_the_longest_user_name_of_escaped_characters_verifies() {
    // 255 characters that JSON escapes (6 bytes each as `\u0001`): the payload is far longer
    // than the fast path's stack buffer.
    let clock = Clock::system();
    let t = tokens(clock.clone());
    let sid = SessionId::random();
    let name = "\u{1}".repeat(255);
    let token = t.issue(&name, &sid, clock.now() + 60).unwrap();
    assert!(token.len() > 3000);
    assert_eq!(
        t.verify_afresh(&token),
        Ok(Verified::Gateway(GatewayToken {
            sid,
            exp: clock.now() + 60
        }))
    );
    // The same size with a claim wrong is refused as the fast path refuses it.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let now = clock.now();
    let claims = serde_json::json!({"iss":"arcp-gateway","sub":name,"sid":sid.to_hex(),
        "role":"admin","agent_id":format!("user_{name}"),"scopes":["admin"],"iat":now,"exp":now+60});
    assert!(t.verify_afresh(&sign(h.clone(), &claims, SECRET)).is_ok());
    for (claim, value) in [
        ("iss", serde_json::json!("someone-else")),
        ("role", serde_json::json!("agent")),
        ("sid", serde_json::json!("not-hex")),
    ] {
        let mut wrong = claims.clone();
        wrong[claim] = value;
        let token = sign(h.clone(), &wrong, SECRET);
        assert!(token.len() > 3000);
        assert_eq!(t.verify_afresh(&token), Err(TokenError::Invalid), "{claim}");
    }
    let mut expired = claims.clone();
    expired["exp"] = (now - 1).into();
    assert_eq!(
        t.verify_afresh(&sign(h.clone(), &expired, SECRET)),
        Err(TokenError::Expired { sid: Some(sid) })
    );
    assert_eq!(
        t.verify_afresh(&sign(h, &claims, b"another-secret-0123456789abcdef")),
        Err(TokenError::Invalid)
    );
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
    let (claims, holds) = t.verify_upstream(&token).unwrap();
    assert_eq!(claims.role, "agent");
    assert_eq!(holds, now - 60..now + 600 - 10);
    // ARCP accepts HS512 under an HS256 configuration; so does the gateway.
    assert!(t
        .verify_upstream(&sign(Header::new(Algorithm::HS512), &agent, UPSTREAM))
        .is_ok());
    // bad signature
    assert_eq!(
        t.verify_upstream(&sign(Header::new(Algorithm::HS256), &agent, SECRET))
            .map(|(c, _)| c),
        Err(TokenError::Invalid)
    );
    // expired, or about to: refused from the margin (10 s) before `exp`, so no token can
    // cross `exp` between the gateway's check and upstream's
    let mut old = agent.clone();
    for exp in [now - 120, now - 30, now, now + 10] {
        old["exp"] = exp.into();
        assert_eq!(
            t.verify_upstream(&sign(Header::new(Algorithm::HS256), &old, UPSTREAM))
                .map(|(c, _)| c),
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
        t.verify_upstream(&sign(Header::new(Algorithm::HS256), &admin, UPSTREAM))
            .map(|(c, _)| c),
        Err(TokenError::ForeignAdmin)
    );
}

#[test]
fn verdicts_are_kept_per_token_within_their_lifetime() {
    let clock = Clock::system();
    let t = tokens(clock.clone());
    let now = clock.now();
    let sid = SessionId::random();
    let gateway = t.issue("ARCP", &sid, now + 60).unwrap();
    let first = t.verify(&gateway).unwrap();
    assert_eq!(verdicts::kept(), 1);
    assert_eq!(
        verdicts::recall(t.inner.generation, &gateway, now),
        Some(first.clone())
    );
    assert_eq!(t.verify(&gateway).unwrap(), first);
    assert_eq!(t.verify_afresh(&gateway).unwrap(), first);

    // A token differing in one byte (here: its signature), or a prefix of the kept one, is
    // not the kept one: it is verified in full, fails, and is not kept.
    let mut forged = gateway.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let prefix = &gateway[..gateway.len() - 1];
    // Same last bytes (those that pick the slot), another payload: the slot's whole-token
    // comparison fails.
    let mut same_tail = gateway.clone().into_bytes();
    let dot = same_tail.iter().position(|&b| b == b'.').unwrap();
    same_tail[dot + 2] = if same_tail[dot + 2] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let same_tail = String::from_utf8(same_tail).unwrap();
    assert!(
        dot + 2 < gateway.len() - 64,
        "the change must lie before the tail"
    );
    for other in [forged.as_str(), prefix, same_tail.as_str()] {
        assert_eq!(verdicts::recall(t.inner.generation, other, now), None);
        assert_eq!(t.verify(other), Err(TokenError::Invalid));
    }
    assert_eq!(verdicts::kept(), 1);
    assert_eq!(
        verdicts::recall(t.inner.generation, &gateway, now),
        Some(first.clone())
    );

    // The lifetime is checked on every use: at `exp` the kept verdict no longer holds, it is
    // dropped, and the full path says why.
    clock.advance(60);
    assert_eq!(
        t.verify(&gateway),
        Err(TokenError::Expired { sid: Some(sid) })
    );
    assert_eq!(verdicts::kept(), 0);
}

#[test]
fn kept_upstream_verdicts_hold_only_between_iat_and_the_margin_before_exp() {
    let clock = Clock::system();
    let t = tokens(clock.clone());
    let now = clock.now();
    let agent = serde_json::json!({"sub":"a","agent_id":"a","role":"agent","iat":now,"exp":now+30});
    let agent = sign(Header::new(Algorithm::HS256), &agent, UPSTREAM);
    assert!(matches!(t.verify(&agent), Ok(Verified::Upstream(_))));
    let generation = t.inner.generation;
    // From `iat` less the leeway (60 s) until the margin (10 s) before `exp`.
    assert!(verdicts::recall(generation, &agent, now - 60).is_some());
    assert!(verdicts::recall(generation, &agent, now + 19).is_some());
    assert_eq!(verdicts::recall(generation, &agent, now + 20), None);
    // A clock stepped back past the leeway refuses the token as a fresh verification does.
    assert!(t.verify(&agent).is_ok());
    clock.advance(-61);
    assert_eq!(t.verify(&agent), Err(TokenError::Invalid));
    assert_eq!(t.verify_afresh(&agent), Err(TokenError::Invalid));
    clock.advance(61 + 20);
    assert_eq!(t.verify(&agent), Err(TokenError::Expired { sid: None }));
}

#[test]
fn verdicts_are_forgotten_with_the_keys_they_were_reached_under() {
    let clock = Clock::system();
    let t = tokens(clock.clone());
    let now = clock.now();
    let gateway = t.issue("ARCP", &SessionId::random(), now + 60).unwrap();
    let agent = serde_json::json!({"sub":"a","agent_id":"a","iat":now,"exp":now+600});
    let agent = sign(Header::new(Algorithm::HS256), &agent, UPSTREAM);
    assert!(t.verify(&gateway).is_ok());
    assert!(t.verify(&agent).is_ok());
    assert_eq!(verdicts::kept(), 2);

    // A reload to other keys: `k1` gone, another upstream secret. Neither token verifies
    // under them, and the old verdicts are dropped when the new keys are first used.
    const OTHER: &[u8] = b"another-gateway-secret-0123456789abcdef";
    let mut settings = auth();
    settings.keys[0].kid = "k2".into();
    settings.keys[0].decoding = DecodingKey::from_secret(OTHER);
    settings.keys[0].encoding = Some(EncodingKey::from_secret(OTHER));
    settings.keys[0].hmac_secret = Some(crate::secret::Secret::new(
        std::str::from_utf8(OTHER).unwrap(),
    ));
    settings.signing_kid = "k2".into();
    settings.upstream_tokens = Some(UpstreamTokens {
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(b"another-upstream-secret-0123456789abcdef"),
        leeway: Duration::from_secs(60),
        expiry_margin: Duration::from_secs(10),
    });
    let reloaded = Tokens::new(&settings, clock.clone());
    assert_ne!(reloaded.inner.generation, t.inner.generation);
    assert_eq!(reloaded.verify(&gateway), Err(TokenError::UnknownKid));
    assert_eq!(verdicts::kept(), 0);
    assert_eq!(reloaded.verify(&agent), Err(TokenError::Invalid));
    // The same keys rebuilt (a reload that changed something else) are a new generation too.
    let rebuilt = tokens(clock.clone());
    assert!(rebuilt.verify(&gateway).is_ok());
    assert_eq!(verdicts::recall(t.inner.generation, &gateway, now), None);
}

#[test]
fn verdicts_are_bounded_in_count_and_token_length() {
    let clock = Clock::system();
    let t = tokens(clock.clone());
    let now = clock.now();
    // A token longer than the bound verifies, and is not kept.
    let name = "a".repeat(verdicts::LONGEST);
    let agent = serde_json::json!({"sub":name,"agent_id":name,"iat":now,"exp":now+600});
    let long = sign(Header::new(Algorithm::HS256), &agent, UPSTREAM);
    assert!(long.len() > verdicts::LONGEST);
    assert!(t.verify(&long).is_ok());
    assert_eq!(verdicts::kept(), 0);
    for _ in 0..verdicts::CAPACITY + 10 {
        let token = t.issue("ARCP", &SessionId::random(), now + 60).unwrap();
        assert!(t.verify(&token).is_ok());
        assert!(verdicts::kept() <= verdicts::CAPACITY);
    }
    assert_eq!(verdicts::kept(), verdicts::CAPACITY);
}
