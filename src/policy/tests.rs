use super::*;

fn rule(path: &str, methods: &[Method], access: Access) -> Rule {
    Rule::new(None, path, methods.to_vec(), access, RuleFlags::default()).unwrap()
}

#[test]
fn first_match_wins_and_default_applies() {
    let policy = Policy::new(
        vec![
            rule("/health", &[], Access::Public),
            rule("/health/**", &[], Access::Admin),
            rule("/agents/*", &[Method::GET], Access::Agent),
            rule("/static/**", &[], Access::Public),
        ],
        Access::Admin,
    );
    assert_eq!(policy.route(&Method::GET, "/health").access, Access::Public);
    assert_eq!(
        policy.route(&Method::GET, "/health/redis").access,
        Access::Admin
    );
    assert_eq!(
        policy.route(&Method::GET, "/agents/a1").access,
        Access::Agent
    );
    assert_eq!(policy.route(&Method::POST, "/agents/a1").name, "default");
    assert_eq!(
        policy.route(&Method::GET, "/static/js/x.js").access,
        Access::Public
    );
    assert_eq!(policy.route(&Method::GET, "/static").access, Access::Admin);
    assert_eq!(policy.route(&Method::GET, "/nope").access, Access::Admin);
}

#[test]
fn the_index_finds_the_first_match_of_the_whole_table() {
    // Wildcard-first rules interleaved with literal ones: a path's first match may be a
    // rule that does not begin with its first segment, before or after one that does.
    let rules = vec![
        rule("/a/x", &[Method::POST], Access::Admin),
        rule("/*/x", &[], Access::Agent),
        rule("/a/**", &[Method::GET], Access::Public),
        rule("/", &[], Access::Public),
        rule("/**", &[Method::DELETE], Access::Deny),
        rule("/b", &[], Access::Temp),
        rule("/a", &[], Access::Passthrough),
        rule("/*", &[Method::PUT], Access::Admin),
        rule("/b/*/c", &[], Access::Agent),
    ];
    let linear = |method: &Method, path: &str| {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        rules
            .iter()
            .find(|r| r.matches(method, &segments))
            .map_or("default", |r| r.name.as_str())
            .to_owned()
    };
    let policy = Policy::new(rules.clone(), Access::Deny);
    let segments = ["a", "b", "c", "x", "zz"];
    let mut paths = vec!["/".to_owned()];
    for one in segments {
        paths.push(format!("/{one}"));
        for two in segments {
            paths.push(format!("/{one}/{two}"));
            for three in segments {
                paths.push(format!("/{one}/{two}/{three}"));
            }
        }
        // Past the 16 segments `route` keeps on the stack.
        paths.push(format!("/{one}{}", "/x".repeat(20)));
    }
    let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
    for path in &paths {
        for method in &methods {
            assert_eq!(
                policy.route(method, path).name,
                linear(method, path),
                "{method} {path}"
            );
        }
    }
}

#[test]
fn long_paths_still_match() {
    let policy = Policy::new(vec![rule("/static/**", &[], Access::Public)], Access::Deny);
    let long = format!("/static{}", "/a".repeat(40));
    assert_eq!(policy.route(&Method::GET, &long).access, Access::Public);
}

#[test]
fn endpoint_names_round_trip() {
    for e in Endpoint::ALL {
        assert_eq!(Endpoint::from_name(e.as_str()), Some(e));
    }
    assert_eq!(Endpoint::from_name("gateway_live"), None);
}

#[test]
fn malformed_patterns_are_rejected() {
    assert!(Pattern::parse("agents").is_err());
    assert!(Pattern::parse("/a/**/b").is_err());
    assert!(Pattern::parse("/a/b*").is_err());
    let pin = RuleFlags {
        require_pin: true,
        ..RuleFlags::default()
    };
    assert!(Rule::new(None, "/x", vec![], Access::Public, pin).is_err());
    let own = RuleFlags {
        own_agent: true,
        ..RuleFlags::default()
    };
    assert!(Rule::new(None, "/agents/x", vec![], Access::Agent, own).is_err());
    assert!(Rule::new(None, "/agents/*", vec![], Access::Admin, own).is_err());
    let rule = Rule::new(None, "/agents/report-metrics/*", vec![], Access::Agent, own);
    assert_eq!(rule.unwrap().owner, Some(2));
}
