//! JSON Schema (draft-07) of the configuration file, for editors and CI.
//!
//! Generated from the raw mirror ([`super::raw`]) with `schemars`, so it has the same keys,
//! the same types and the same refusal of unknown keys as the parser. It cannot express the
//! rules across fields or read secrets: `arcp-gateway check-config` stays the authority.
//! `arcp-gateway schema` prints it; the committed copy is `deploy/schema/config.schema.json`
//! (a test fails when the two differ). Example files point editors at it with a first line
//! `# yaml-language-server: $schema=<relative path>`.

use schemars::generate::SchemaSettings;

use super::raw::RawConfig;

/// The schema as pretty-printed JSON with a trailing newline.
pub fn json_schema() -> String {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RawConfig>();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The committed schema is what the code generates. On failure, refresh it with
    /// `cargo run -q -- schema > deploy/schema/config.schema.json` and commit the change.
    #[test]
    fn committed_schema_matches_the_code() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/schema/config.schema.json"
        );
        let committed = std::fs::read_to_string(path).expect("read the committed schema");
        assert!(
            committed == json_schema(),
            "deploy/schema/config.schema.json is out of date; run \
             `cargo run -q -- schema > deploy/schema/config.schema.json`"
        );
    }

    #[test]
    fn draft07_and_strict() {
        let v: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(v["additionalProperties"], false);
        assert_eq!(v["required"], serde_json::json!(["listeners", "upstream"]));
        assert!(v["properties"]["admin"].is_object());
    }
}
