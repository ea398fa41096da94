//! The tools' structured results (each with its JSON schema), built from
//! the API's answers, and the structured error every tool answers with
//! when the CLI would have failed: the API's error code (or the client's
//! own, for failures found before asking), the message, and portctl's exit
//! code for the same failure.

use std::collections::BTreeMap;

use portd_api::{Container, Holder, HolderKind, KillReport, Lease, LeaseState, PortReport};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use super::super::command_text;
use crate::error::ClientError;

/// A lease, as `lease`, `release` and `list` report it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LeaseInfo {
    /// The lease id, also the value of PORTD_LEASE.
    pub id: String,
    pub port: u16,
    pub name: Option<String>,
    pub project: Option<String>,
    /// The process the lease lives and dies with.
    pub owner_pid: u32,
    /// "active" or "ended".
    pub state: String,
    /// Why it ended: "released", "expired", "owner_died", "reaped".
    pub end_reason: Option<String>,
    /// RFC 3339 UTC.
    pub granted_at: String,
    pub expires_at: Option<String>,
    pub ended_at: Option<String>,
}

impl From<&Lease> for LeaseInfo {
    fn from(lease: &Lease) -> LeaseInfo {
        LeaseInfo {
            id: lease.id.clone(),
            port: lease.port,
            name: lease.name.clone(),
            project: lease.project.clone(),
            owner_pid: lease.owner.pid,
            state: match lease.state {
                LeaseState::Active => "active",
                LeaseState::Ended => "ended",
            }
            .to_string(),
            end_reason: lease.end_reason.map(|r| r.as_str().to_string()),
            granted_at: lease.granted_at.clone(),
            expires_at: lease.expires_at.clone(),
            ended_at: lease.ended_at.clone(),
        }
    }
}

/// What `lease` granted.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Leased {
    pub port: u16,
    pub lease: LeaseInfo,
    /// Start the server with these in its environment (PORT and the
    /// PORTD_LEASE tag): then it belongs to the lease, and is stopped when
    /// the lease ends (this MCP session ends, or `release`).
    pub env: BTreeMap<String, String>,
    /// The same as shell code to put before the server's command.
    pub shell_prefix: String,
    /// Why the lease did not get the name's home port, or skipped another
    /// name's home, when it did not or did.
    pub notes: Vec<String>,
}

impl Leased {
    pub fn new(lease: &Lease, notes: Vec<String>) -> Leased {
        let env = BTreeMap::from([
            ("PORT".to_string(), lease.port.to_string()),
            (portd_api::LEASE_ENV.to_string(), lease.id.clone()),
        ]);
        Leased {
            port: lease.port,
            lease: LeaseInfo::from(lease),
            shell_prefix: format!("PORT={} {}={}", lease.port, portd_api::LEASE_ENV, lease.id),
            env,
            notes,
        }
    }
}

/// What `release` ended.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Released {
    pub lease: LeaseInfo,
    /// True when its processes were left running (`keep`).
    pub kept: bool,
}

/// `list`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Listed {
    pub leases: Vec<LeaseInfo>,
}

/// A container whose published port a holder serves.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ContainerInfo {
    /// The short id.
    pub id: String,
    pub name: String,
    pub image: String,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    /// The command that stops it: `docker compose -p P stop S`, or
    /// `docker stop NAME`.
    pub stop_command: String,
}

impl From<&Container> for ContainerInfo {
    fn from(c: &Container) -> ContainerInfo {
        ContainerInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            compose_project: c.compose_project.clone(),
            compose_service: c.compose_service.clone(),
            stop_command: c.stop_command(),
        }
    }
}

/// A process listening on a port.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HolderInfo {
    /// Null when portd cannot see the process.
    pub pid: Option<u32>,
    pub uid: u32,
    pub user: Option<String>,
    pub command: String,
    /// "process", "docker-proxy" (a container's port forwarder) or
    /// "systemd" (a socket a systemd manager holds).
    pub kind: String,
    /// The lease it belongs to, if any.
    pub lease_id: Option<String>,
    /// An untagged listener in a dead owner's session: check it before
    /// stopping it.
    pub suspect: bool,
    pub container: Option<ContainerInfo>,
}

impl From<&Holder> for HolderInfo {
    fn from(h: &Holder) -> HolderInfo {
        HolderInfo {
            pid: h.pid,
            uid: h.uid,
            user: h.user.clone(),
            command: command_text(&h.cmdline),
            kind: match h.kind {
                HolderKind::Process => "process",
                HolderKind::DockerProxy => "docker-proxy",
                HolderKind::Systemd => "systemd",
            }
            .to_string(),
            lease_id: h.lease_id.clone(),
            suspect: h.suspect,
            container: h.container.as_ref().map(ContainerInfo::from),
        }
    }
}

/// `who`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Who {
    pub port: u16,
    /// True when no live lease holds the port and nothing listens on it.
    pub free: bool,
    pub lease: Option<LeaseInfo>,
    pub holders: Vec<HolderInfo>,
}

impl From<&PortReport> for Who {
    fn from(r: &PortReport) -> Who {
        Who {
            port: r.port,
            free: r.free,
            lease: r.lease.as_ref().map(LeaseInfo::from),
            holders: r.holders.iter().map(HolderInfo::from).collect(),
        }
    }
}

/// One process a kill signalled.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SignalledInfo {
    pub pid: u32,
    pub command: String,
    /// The last signal sent.
    pub signal: Option<String>,
    pub exited: bool,
}

/// One process a kill left alone, and why.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SkippedInfo {
    pub pid: Option<u32>,
    pub command: String,
    pub reason: String,
}

/// `kill`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Killed {
    pub port: u16,
    /// True when nothing listens on the port afterwards.
    pub free: bool,
    pub signalled: Vec<SignalledInfo>,
    pub skipped: Vec<SkippedInfo>,
}

impl From<&KillReport> for Killed {
    fn from(r: &KillReport) -> Killed {
        Killed {
            port: r.port,
            free: r.free,
            signalled: r
                .signalled
                .iter()
                .map(|s| SignalledInfo {
                    pid: s.pid,
                    command: command_text(&s.cmdline),
                    signal: s.signal.clone(),
                    exited: s.exited,
                })
                .collect(),
            skipped: r
                .skipped
                .iter()
                .map(|s| SkippedInfo {
                    pid: s.pid,
                    command: command_text(&s.cmdline),
                    reason: s.reason.clone(),
                })
                .collect(),
        }
    }
}

/// `port`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NamePort {
    pub name: String,
    pub project: String,
    /// The port to use now: the active lease's, else the remembered one.
    pub port: u16,
    /// The port the name remembers (its home).
    pub home_port: u16,
    /// The active lease of the name, if any.
    pub lease_id: Option<String>,
}

/// `url`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NameUrl {
    /// `http://NAME.LABEL.localhost:PROXY_PORT/`.
    pub url: String,
    pub name: String,
    pub project: String,
    /// The project's label in the proxy's host names.
    pub label: String,
    /// The port of the name's active lease, if it has one.
    pub port: Option<u16>,
}

impl From<portd_api::NameUrl> for NameUrl {
    fn from(answer: portd_api::NameUrl) -> NameUrl {
        NameUrl {
            url: answer.url,
            name: answer.name,
            project: answer.project,
            label: answer.label,
            port: answer.port,
        }
    }
}

/// `wait`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Ready {
    pub port: u16,
    /// How long the wait took.
    pub waited_ms: u64,
}

/// `env`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Env {
    /// For a lease: PORT and PORTD_LEASE. For `project_names`: NAME_PORT
    /// for every name of the project.
    pub variables: BTreeMap<String, String>,
    /// The same as a dotenv file, without the PORTD_LEASE tag (a file
    /// would tag unrelated processes).
    pub dotenv: String,
}

/// The result of a tool that failed: `{"error": {"code", "message",
/// ...context}, "exit_code"}`, where the error is the daemon's own body
/// when it refused, and exit_code is what portctl exits with.
pub fn error_value(error: &ClientError) -> Value {
    let (code, context) = match error {
        ClientError::Api {
            body: Some(body), ..
        } => (
            serde_json::to_value(body.error.code).unwrap_or(Value::Null),
            body.error.context.clone(),
        ),
        ClientError::Api { .. } => (json!("internal"), Default::default()),
        ClientError::Other(_) => (json!("failed"), Default::default()),
        ClientError::Usage(_) => (json!("invalid_value"), Default::default()),
        ClientError::Taken(_) => (json!("port_taken"), Default::default()),
        ClientError::NotFound(_) => (json!("not_found"), Default::default()),
        ClientError::Unreachable(_) => (json!("unavailable"), Default::default()),
        ClientError::Config(_) => (json!("bad_configuration"), Default::default()),
        ClientError::Exec { .. } => (json!("cannot_execute"), Default::default()),
    };
    let mut detail = serde_json::Map::new();
    detail.insert("code".into(), code);
    detail.insert("message".into(), json!(error.to_string()));
    detail.extend(context);
    json!({"error": detail, "exit_code": error.exit_code()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use portd_api::{ErrorBody, ErrorCode, ErrorDetail};

    #[test]
    fn a_refusal_carries_the_daemons_code_and_context_and_the_exit_code() {
        let mut context = serde_json::Map::new();
        context.insert("port".into(), json!(8000));
        let refused = ClientError::Api {
            status: 409,
            body: Some(ErrorBody {
                error: ErrorDetail {
                    code: ErrorCode::PortTaken,
                    message: "port 8000 is held by pid 7 (x)".into(),
                    context,
                },
            }),
            raw: String::new(),
        };
        assert_eq!(
            error_value(&refused),
            json!({"error": {"code": "port_taken", "message": "port 8000 is held by pid 7 (x)",
                   "port": 8000}, "exit_code": 3})
        );
        let usage = error_value(&ClientError::Usage("bad".into()));
        assert_eq!(usage["error"]["code"], "invalid_value");
        assert_eq!(usage["exit_code"], 2);
        assert_eq!(
            error_value(&ClientError::NotFound("none".into()))["exit_code"],
            4
        );
    }
}
