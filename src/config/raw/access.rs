//! The `access` of a route rule as written in YAML: `access: admin`, or for the gateway's
//! own endpoints `access: {gateway: login}` (an unknown endpoint is an error with its line).

use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::policy::Endpoint;

/// The `access` of a rule as written: a kind (`access: admin`), or for the gateway's own
/// endpoints the kind with the endpoint that answers (`access: {gateway: login}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawAccess {
    Public,
    Gateway(Endpoint),
    Admin,
    Agent,
    AgentOnly,
    Temp,
    Passthrough,
    Deny,
}

impl RawAccess {
    const NAMES: &'static [&'static str] = &[
        "public",
        "gateway",
        "admin",
        "agent",
        "agent_only",
        "temp",
        "passthrough",
        "deny",
    ];
}

impl<'de> Deserialize<'de> for RawAccess {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAccess;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an access kind such as `admin`, or `{gateway: ENDPOINT}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAccess, E> {
                Ok(match v {
                    "public" => RawAccess::Public,
                    "admin" => RawAccess::Admin,
                    "agent" => RawAccess::Agent,
                    "agent_only" => RawAccess::AgentOnly,
                    "temp" => RawAccess::Temp,
                    "passthrough" => RawAccess::Passthrough,
                    "deny" => RawAccess::Deny,
                    "gateway" => {
                        return Err(E::custom(
                            "`gateway` names the endpoint that answers: write `{gateway: ENDPOINT}`, e.g. `{gateway: login}`",
                        ))
                    }
                    other => {
                        return Err(E::custom(format!(
                            "unknown variant `{other}`, expected one of {}",
                            RawAccess::NAMES.join(", ")
                        )))
                    }
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawAccess, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("an empty mapping is not an access kind"));
                };
                if key != "gateway" {
                    return Err(de::Error::custom(format!(
                        "`{key}` takes no endpoint; only `gateway` does (`{{gateway: ENDPOINT}}`)"
                    )));
                }
                let endpoint: Endpoint = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "`{gateway: ENDPOINT}` names one endpoint",
                    ));
                }
                Ok(RawAccess::Gateway(endpoint))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for RawAccess {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Access".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let endpoint = generator.subschema_for::<Endpoint>();
        schemars::json_schema!({
            "description": "The credential a route demands, or `{gateway: ENDPOINT}` for an endpoint the gateway answers itself.",
            "oneOf": [
                {
                    "type": "string",
                    "enum": ["public", "admin", "agent", "agent_only", "temp", "passthrough", "deny"]
                },
                {
                    "type": "object",
                    "properties": {"gateway": endpoint},
                    "required": ["gateway"],
                    "additionalProperties": false
                }
            ]
        })
    }
}
