//! The per-person audit trail: who changed what, through which session.
//!
//! One event for every admitted admin request that may change state (any method but `GET`,
//! `HEAD` and `OPTIONS`) and one for every WebSocket once its first frame decided who is on
//! it. An event holds the time, the user, the session's public reference (`sess_…`, as the
//! problem documents show it), the client address, the method, the normalised path (never
//! the query), whether the route demanded the session PIN, the gateway's and the upstream's
//! status and the request id. Never a token, a PIN, a fingerprint or a body.
//!
//! Events go to `audit: {file: PATH}` as JSON lines (opened for appending, mode 0600, one
//! `write` per line so concurrent events never interleave), or, without a file, to the log
//! stream as events with target `audit` (kept at `info` whatever `logging.level` says).
//! Writes are synchronous and small, as an access log's; the line is on disk before the
//! response leaves.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::session::SessionId;

/// `audit:` in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSettings {
    /// JSON lines are appended here; `None` sends events to the log stream (target `audit`).
    pub file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit file {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One audit event, borrowed from the request it describes.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    /// `http` or `websocket`.
    pub kind: &'static str,
    /// The session's user or the agent token's subject; `None` on a public socket.
    pub user: Option<&'a str>,
    #[serde(serialize_with = "public_ref")]
    pub session: Option<SessionId>,
    pub client: IpAddr,
    pub method: &'a str,
    pub path: &'a str,
    /// The route demanded `X-Session-Pin` and the session's PIN was checked.
    pub pin: bool,
    /// What the gateway answered (101 for a WebSocket).
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub request_id: &'a str,
}

fn public_ref<S: serde::Serializer>(id: &Option<SessionId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.serialize_str(&id.public_ref()),
        None => s.serialize_none(),
    }
}

/// Cheap-to-clone handle on where events go.
#[derive(Clone)]
pub struct Audit(Arc<Sink>);

enum Sink {
    Log,
    /// The lock is held for one `write_all`, never across an `.await`.
    File {
        path: PathBuf,
        file: Mutex<std::fs::File>,
    },
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Sink::Log => f.write_str("Audit(log)"),
            Sink::File { path, .. } => write!(f, "Audit({})", path.display()),
        }
    }
}

impl Default for Audit {
    fn default() -> Self {
        Audit(Arc::new(Sink::Log))
    }
}

impl Audit {
    /// Opens the audit file, if the settings name one.
    pub fn open(settings: &AuditSettings) -> Result<Audit, AuditError> {
        let Some(path) = &settings.file else {
            return Ok(Audit::default());
        };
        let file = open_append(path).map_err(|source| AuditError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Audit(Arc::new(Sink::File {
            path: path.clone(),
            file: Mutex::new(file),
        })))
    }

    /// Records one event (a failure to write is logged, never fails the request).
    pub fn record(&self, event: &AuditEvent<'_>) {
        let time = crate::clock::rfc3339_now();
        match &*self.0 {
            Sink::Log => tracing::info!(
                target: "audit",
                kind = event.kind,
                user = event.user,
                session = event.session.map(|s| s.public_ref()),
                client = %event.client,
                method = event.method,
                path = event.path,
                pin = event.pin,
                status = event.status,
                upstream_status = event.upstream_status,
                request_id = event.request_id,
                "audit"
            ),
            Sink::File { path, file } => {
                #[derive(Serialize)]
                struct Line<'a> {
                    time: &'a str,
                    #[serde(flatten)]
                    event: &'a AuditEvent<'a>,
                }
                let mut line = match serde_json::to_vec(&Line { time: &time, event }) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode an audit event");
                        return;
                    }
                };
                line.push(b'\n');
                let written = match file.lock() {
                    Ok(mut f) => f.write_all(&line),
                    Err(_) => Err(std::io::Error::other("audit file lock poisoned")),
                };
                if let Err(e) = written {
                    tracing::error!(error = %e, file = %path.display(), request_id = event.request_id, "cannot write an audit event");
                }
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_file_gets_one_json_line_per_event_with_the_public_session_ref() {
        let dir = std::env::temp_dir().join(format!("arcp-audit-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let audit = Audit::open(&AuditSettings {
            file: Some(path.clone()),
        })
        .unwrap();
        let sid = SessionId::random();
        for _ in 0..2 {
            audit.record(&AuditEvent {
                kind: "http",
                user: Some("alice"),
                session: Some(sid),
                client: "127.0.0.1".parse().unwrap(),
                method: "DELETE",
                path: "/agents/a1",
                pin: true,
                status: 200,
                upstream_status: Some(200),
                request_id: "req_1",
            });
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["session"], sid.public_ref());
        assert_eq!(lines[0]["user"], "alice");
        assert_eq!(lines[0]["pin"], true);
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert!(
            !text.contains(&sid.to_hex()),
            "full session id in the trail"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
