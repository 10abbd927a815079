//! Secrets given by reference and redacted by type.
//!
//! The YAML never holds a secret: it names an environment variable (`*_env`) or a file
//! (`*_file`). The value is read once at load time into a [`Secret`], whose `Debug` prints
//! nothing of it, so a settings dump or an error chain cannot leak it.

pub use crate::secret::Secret;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl SecretRef {
    /// Picks the one reference given; `field` is the base name (`password`, `secret`).
    /// A file path is used as given (callers resolve relative paths first).
    pub fn from_pair(
        field: &str,
        env: Option<&str>,
        file: Option<&str>,
    ) -> Result<SecretRef, String> {
        match (env, file) {
            (Some(name), None) => Ok(SecretRef::Env(name.to_owned())),
            (None, Some(path)) => Ok(SecretRef::File(path.to_owned())),
            (Some(_), Some(_)) => Err(format!(
                "give either `{field}_env` or `{field}_file`, not both"
            )),
            (None, None) => Err(format!(
                "missing `{field}_env` or `{field}_file` (secrets are never written in the file itself)"
            )),
        }
    }

    /// Reads the secret. Messages name the variable or file, never the value.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable `{name}` is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file `{path}`: {e}"))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(match self {
                SecretRef::Env(name) => format!("environment variable `{name}` is empty"),
                SecretRef::File(path) => format!("secret file `{path}` is empty"),
            });
        }
        Ok(Secret::new(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_reference() {
        let name = "X";
        assert!(SecretRef::from_pair("password", Some(name), Some(name)).is_err());
        assert!(SecretRef::from_pair("password", None, None).is_err());
        assert_eq!(
            SecretRef::from_pair("password", Some(name), None),
            Ok(SecretRef::Env("X".into()))
        );
    }
}
