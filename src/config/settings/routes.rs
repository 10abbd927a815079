//! `routes:`: the rule table, with the built-in ARCP profile appended.

use http::Method;
use serde_saphyr::Spanned;

use super::super::raw;
use super::super::raw::RawAccess;
use super::super::{ConfigError, Ctx};
use crate::policy::{Access, Policy, Rule, RuleFlags};

/// Rules of a routes file (the shipped profile has this shape).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    rules: Vec<Spanned<raw::RawRule>>,
}

fn rules(
    raw: &[Spanned<raw::RawRule>],
    prefix: &str,
    ctx: &Ctx<'_>,
) -> Result<Vec<Rule>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let path = format!("{prefix}[{i}]");
        let mut methods = Vec::with_capacity(r.value.methods.len());
        for (j, m) in r.value.methods.iter().enumerate() {
            let method =
                Method::from_bytes(m.value.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    ctx.err(
                        m.referenced,
                        format!("{path}.methods[{j}]"),
                        format!("`{}` is not an HTTP method", m.value),
                        None,
                    )
                })?;
            methods.push(method);
        }
        let access = access(r.value.access.value);
        let require_pin = r.value.require_pin.as_ref().is_some_and(|p| p.value);
        if let Some(pin) = r.value.require_pin.as_ref().filter(|p| p.value) {
            if !matches!(access, Access::Admin | Access::Agent) {
                return Err(ctx.err(
                    pin.referenced,
                    format!("{path}.require_pin"),
                    format!(
                        "`require_pin` needs an admin session; access `{}` has none",
                        access.as_str()
                    ),
                    Some("use it on `admin` or `agent` routes"),
                ));
            }
        }
        let flags = RuleFlags {
            require_pin,
            registration: r.value.registration,
            own_agent: r.value.own_agent,
        };
        let rule = Rule::new(
            r.value.name.clone(),
            &r.value.path.value,
            methods,
            access,
            flags,
        )
        .map_err(|m| ctx.err(r.value.path.referenced, format!("{path}.path"), m, None))?;
        out.push(rule);
    }
    Ok(out)
}

pub(super) fn policy(raw: &raw::RawRoutes, ctx: &Ctx<'_>) -> Result<Policy, ConfigError> {
    let mut all = rules(&raw.rules, "routes.rules", ctx)?;
    let profile = raw.profile.as_ref().map_or("arcp", |p| p.value.as_str());
    match profile {
        "arcp" => {
            let file: RoutesFile =
                super::super::parse_yaml(super::super::ARCP_PROFILE, "config/routes/arcp.yaml")?;
            let profile_ctx = Ctx {
                file: "config/routes/arcp.yaml",
                base: ctx.base,
                structure_only: ctx.structure_only,
            };
            all.extend(rules(&file.rules, "rules", &profile_ctx)?);
        }
        "none" => {}
        other => {
            let at = raw
                .profile
                .as_ref()
                .map_or(serde_saphyr::Location::UNKNOWN, |p| p.referenced);
            return Err(ctx.err(
                at,
                "routes.profile",
                format!("unknown profile `{other}`"),
                Some("use `arcp` (the built-in ARCP 2.1.2 table) or `none`"),
            ));
        }
    }
    let default_access = match &raw.default_access {
        None => Access::Admin,
        Some(a) => match access(a.value) {
            Access::Gateway(_) => {
                return Err(ctx.err(
                    a.referenced,
                    "routes.default_access",
                    "a gateway endpoint cannot be the default for every unmatched path",
                    Some("use `admin` (the default) or `deny`"),
                ))
            }
            other => other,
        },
    };
    Ok(Policy::new(all, default_access))
}

/// The typed access of a rule.
fn access(raw: RawAccess) -> Access {
    match raw {
        RawAccess::Public => Access::Public,
        RawAccess::Gateway(endpoint) => Access::Gateway(endpoint),
        RawAccess::Admin => Access::Admin,
        RawAccess::Agent => Access::Agent,
        RawAccess::AgentOnly => Access::AgentOnly,
        RawAccess::Temp => Access::Temp,
        RawAccess::Passthrough => Access::Passthrough,
        RawAccess::Deny => Access::Deny,
    }
}
