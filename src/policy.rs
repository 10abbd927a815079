//! Route policy: which credential each request needs.
//!
//! A pure, synchronous lookup from (method, normalised path) to a [`Route`]. Rules are
//! checked in order, the first match wins; paths no rule matches get the configured default
//! (`admin`, so a new upstream route is never accidentally public). The built-in ARCP profile
//! (`config/routes/arcp.yaml`) covers every route of ARCP 2.1.2.
//!
//! Patterns are matched segment by segment: a literal segment matches itself, `*` matches
//! exactly one non-empty segment, and a trailing `**` matches one or more segments.

use std::sync::Arc;

use http::Method;

/// The credential a route demands (docs/design.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Forwarded without credentials: `Authorization` and the fingerprint are stripped.
    Public,
    /// Answered by the gateway itself; the endpoint says which answer and what admission
    /// demands for it.
    Gateway(Endpoint),
    /// A gateway session bound to its fingerprint; forwarded with the brokered upstream
    /// admin credentials.
    Admin,
    /// A verified upstream agent (or temp) token, forwarded unchanged, or an admin session.
    Agent,
    /// A verified upstream agent or temp token only; gateway sessions are refused (used for
    /// upstream's public token oracle, which must never see a gateway token).
    AgentOnly,
    /// A verified upstream temp token (`token_type: temp`).
    Temp,
    /// Upstream's own non-JWT credential (e.g. the metrics scrape token), forwarded as is.
    Passthrough,
    /// Refused at the gateway.
    Deny,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Gateway(_) => "gateway",
            Access::Admin => "admin",
            Access::Agent => "agent",
            Access::AgentOnly => "agent_only",
            Access::Temp => "temp",
            Access::Passthrough => "passthrough",
            Access::Deny => "deny",
        }
    }
}

/// The endpoints the gateway answers itself (a rule names one as `access: {gateway: login}`;
/// an unknown name is a configuration error with its location). Admission checks what
/// each demands ([`Endpoint::demand`]) before the answer stage runs, so an answer always
/// holds its proof value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Liveness of the gateway process.
    Live,
    /// Readiness: the upstream admin session is established.
    Ready,
    /// `POST /auth/login`: people authenticate against the gateway's users.
    Login,
    /// `POST /auth/logout`: ends the caller's session.
    Logout,
    /// `POST /auth/set_pin`.
    SetPin,
    /// `POST /auth/verify_pin`.
    VerifyPin,
    /// `GET /auth/pin_status`.
    PinStatus,
    /// `GET /auth/session_status`.
    SessionStatus,
    /// `POST /tokens/refresh`: a gateway token is re-issued here, an agent token forwarded.
    TokenRefresh,
    /// `/tokens/validate`, upstream's public token oracle, which never sees a gateway token.
    TokenValidate,
}

/// The credential a gateway endpoint demands before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// None: probes, and the login (which checks a password itself).
    Nothing,
    /// A live gateway session bound to the presented fingerprint.
    Session,
    /// A gateway session (answered here) or a verified upstream token (forwarded).
    SessionOrAgent,
    /// Whatever token is presented is classified, and never refused with a problem:
    /// the token oracle answers `valid: false` itself.
    TokenProbe,
}

impl Endpoint {
    /// Every endpoint, in the order error messages list them.
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Live,
        Endpoint::Ready,
        Endpoint::Login,
        Endpoint::Logout,
        Endpoint::SetPin,
        Endpoint::VerifyPin,
        Endpoint::PinStatus,
        Endpoint::SessionStatus,
        Endpoint::TokenRefresh,
        Endpoint::TokenValidate,
    ];

    /// The name used in YAML (`endpoint: login`).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Live => "live",
            Endpoint::Ready => "ready",
            Endpoint::Login => "login",
            Endpoint::Logout => "logout",
            Endpoint::SetPin => "set_pin",
            Endpoint::VerifyPin => "verify_pin",
            Endpoint::PinStatus => "pin_status",
            Endpoint::SessionStatus => "session_status",
            Endpoint::TokenRefresh => "token_refresh",
            Endpoint::TokenValidate => "token_validate",
        }
    }

    /// The endpoint named `name` in YAML.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// What admission checks before this endpoint is answered.
    pub fn demand(self) -> Demand {
        match self {
            Endpoint::Live | Endpoint::Ready | Endpoint::Login => Demand::Nothing,
            Endpoint::Logout
            | Endpoint::SetPin
            | Endpoint::VerifyPin
            | Endpoint::PinStatus
            | Endpoint::SessionStatus => Demand::Session,
            Endpoint::TokenRefresh => Demand::SessionOrAgent,
            Endpoint::TokenValidate => Demand::TokenProbe,
        }
    }
}

/// What the policy decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// Rule name for logs (`default` when no rule matched).
    pub name: &'a str,
    pub access: Access,
    /// The gateway demands a verified `X-Session-Pin` (admin sessions only).
    pub require_pin: bool,
    /// Registration-phase tokens (temp, validated) are accepted here.
    pub registration: bool,
    /// The path segment (index among the segments) that names the agent acted on: an
    /// agent token must speak for that agent.
    pub owner: Option<usize>,
}

impl<'a> Route<'a> {
    /// A route with no PIN, registration or ownership rule.
    pub const fn new(name: &'a str, access: Access) -> Self {
        Route {
            name,
            access,
            require_pin: false,
            registration: false,
            owner: None,
        }
    }
}

/// What a rule demands beyond its access kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleFlags {
    /// `require_pin: true`: a verified `X-Session-Pin` for admin sessions.
    pub require_pin: bool,
    /// `registration: true`: registration-phase tokens (temp, validated) are accepted.
    pub registration: bool,
    /// `own_agent: true`: the segment the pattern's first `*` matches names an agent, and an
    /// agent token may only act on its own agent there.
    pub own_agent: bool,
}

/// One rule of the table.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pattern: Pattern,
    /// Empty means every method.
    methods: Vec<Method>,
    pub access: Access,
    pub require_pin: bool,
    pub registration: bool,
    /// Segment index of the agent id, for `own_agent` rules.
    pub owner: Option<usize>,
}

impl Rule {
    /// Builds a rule; fails with a message when the pattern is malformed.
    pub fn new(
        name: Option<String>,
        path: &str,
        methods: Vec<Method>,
        access: Access,
        flags: RuleFlags,
    ) -> Result<Rule, String> {
        let pattern = Pattern::parse(path)?;
        if flags.require_pin && access != Access::Admin && access != Access::Agent {
            return Err(format!(
                "`require_pin` needs an admin session; access `{}` has none",
                access.as_str()
            ));
        }
        if (flags.registration || flags.own_agent) && access != Access::Agent {
            return Err(format!(
                "`registration` and `own_agent` are rules for agent tokens; access `{}` takes none",
                access.as_str()
            ));
        }
        let owner = if flags.own_agent {
            Some(
                pattern
                    .0
                    .iter()
                    .position(|s| *s == Seg::One)
                    .ok_or_else(|| {
                        format!("`own_agent` needs a `*` segment naming the agent in `{path}`")
                    })?,
            )
        } else {
            None
        };
        Ok(Rule {
            name: name.unwrap_or_else(|| path.to_owned()),
            pattern,
            methods,
            access,
            require_pin: flags.require_pin,
            registration: flags.registration,
            owner,
        })
    }

    fn matches(&self, method: &Method, segments: &[&str]) -> bool {
        (self.methods.is_empty() || self.methods.contains(method)) && self.pattern.matches(segments)
    }
}

/// The ordered rule table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Arc<[Rule]>,
    index: Arc<Index>,
    default_access: Access,
}

/// Which rules a path can match, by its first segment, in table order: the first match of
/// a lookup is the table's first match while comparing a few rules instead of all of them.
#[derive(Debug, Default)]
struct Index {
    /// Per first literal segment (sorted for a binary search): the rules that begin with it,
    /// merged in table order with those that begin with anything else than a literal.
    by_first: Vec<(Box<str>, Box<[usize]>)>,
    /// The rules that do not begin with a literal (`*`, `**`, the empty pattern `/`): all a
    /// path whose first segment no rule names can match.
    others: Box<[usize]>,
}

impl Index {
    fn of(rules: &[Rule]) -> Index {
        fn first(rule: &Rule) -> Option<&str> {
            match rule.pattern.0.first() {
                Some(Seg::Literal(lit)) => Some(lit.as_str()),
                _ => None,
            }
        }
        let mut literals: Vec<&str> = rules.iter().filter_map(first).collect();
        literals.sort_unstable();
        literals.dedup();
        let by_first = literals
            .into_iter()
            .map(|lit| {
                let matching = (0..rules.len())
                    .filter(|&i| first(&rules[i]).is_none_or(|l| l == lit))
                    .collect();
                (Box::from(lit), matching)
            })
            .collect();
        let others = (0..rules.len())
            .filter(|&i| first(&rules[i]).is_none())
            .collect();
        Index { by_first, others }
    }

    fn candidates(&self, first: Option<&str>) -> &[usize] {
        first
            .and_then(|seg| {
                self.by_first
                    .binary_search_by(|(lit, _)| (**lit).cmp(seg))
                    .ok()
            })
            .map_or(&self.others, |at| &self.by_first[at].1)
    }
}

impl Policy {
    pub fn new(rules: Vec<Rule>, default_access: Access) -> Self {
        let index = Arc::new(Index::of(&rules));
        Policy {
            rules: rules.into(),
            index,
            default_access,
        }
    }

    /// Looks up the route of an already normalised path.
    pub fn route(&self, method: &Method, path: &str) -> Route<'_> {
        let mut buf = [""; 16];
        let mut n = 0;
        let mut overflow = Vec::new();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            if n < buf.len() {
                buf[n] = seg;
                n += 1;
            } else {
                if overflow.is_empty() {
                    overflow.extend_from_slice(&buf);
                }
                overflow.push(seg);
            }
        }
        let segments: &[&str] = if overflow.is_empty() {
            &buf[..n]
        } else {
            &overflow
        };
        for &at in self.index.candidates(segments.first().copied()) {
            let rule = &self.rules[at];
            if rule.matches(method, segments) {
                return Route {
                    name: &rule.name,
                    access: rule.access,
                    require_pin: rule.require_pin,
                    registration: rule.registration,
                    owner: rule.owner,
                };
            }
        }
        Route::new("default", self.default_access)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(String),
    One,
    Rest,
}

#[derive(Debug, Clone)]
struct Pattern(Vec<Seg>);

impl Pattern {
    fn parse(path: &str) -> Result<Pattern, String> {
        if !path.starts_with('/') {
            return Err(format!("path pattern `{path}` must start with `/`"));
        }
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut segs = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            segs.push(match *part {
                "*" => Seg::One,
                "**" if i + 1 == parts.len() => Seg::Rest,
                "**" => return Err(format!("`**` may only end a pattern (in `{path}`)")),
                p if p.contains('*') => {
                    return Err(format!(
                        "`*` must be a whole segment (in `{path}`); write `/a/*/b`"
                    ))
                }
                p => Seg::Literal(p.to_owned()),
            });
        }
        Ok(Pattern(segs))
    }

    fn matches(&self, segments: &[&str]) -> bool {
        let mut i = 0;
        for seg in &self.0 {
            match seg {
                Seg::Rest => return segments.len() > i,
                Seg::One => {
                    if i >= segments.len() {
                        return false;
                    }
                }
                Seg::Literal(lit) => {
                    if segments.get(i) != Some(&lit.as_str()) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        i == segments.len()
    }
}

#[cfg(test)]
mod tests;
