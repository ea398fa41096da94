//! Request and response bodies of the HTTP API (see docs/API.md).

use serde::{Deserialize, Serialize};

use crate::holders::Holder;
use crate::parse::PortRange;

/// A port bound to one owner process.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    /// Globally unique (UUIDv7), also the value of `PORTD_LEASE`.
    pub id: String,
    pub port: u16,
    pub name: Option<String>,
    pub project: Option<String>,
    pub owner: Owner,
    pub state: LeaseState,
    pub end_reason: Option<EndReason>,
    /// RFC 3339 UTC.
    pub granted_at: String,
    pub expires_at: Option<String>,
    pub ended_at: Option<String>,
    /// Set on a grant for a name that did not get its home port: the home
    /// and what holds it. The home stays the name's. Absent everywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Home>,
    /// Set on a grant whose scan skipped another name's home that it would
    /// otherwise have granted. Absent everywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkippedHome>,
    /// The command `portctl run` started for the lease, once registered: it
    /// leads a process group whose members belong to the lease even without
    /// the tag. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_pid: Option<u32>,
}

/// A name's home port that a grant could not give, and what holds it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Home {
    pub port: u16,
    /// The live lease on the home port, if one holds it (the asking
    /// owner's own lease included).
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub lease: Option<Box<Lease>>,
    /// What listens on the home port when no lease holds it; empty when
    /// portd could not tell (the holder may have just exited).
    pub holders: Vec<Holder>,
    /// portd may not bind the home port (a port below 1024).
    pub not_permitted: bool,
}

/// Another name's home port that a scan skipped, though it would otherwise
/// have been the answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SkippedHome {
    pub port: u16,
    /// The name that remembers it, and its project.
    pub name: String,
    pub project: String,
}

/// The process a lease lives and dies with.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Owner {
    pub pid: u32,
    /// Unix seconds, fractional: with `pid` it names one process even after
    /// the pid is reused.
    pub start_time: f64,
    pub uid: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    Active,
    Ended,
}

/// Why a lease ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Released,
    Expired,
    OwnerDied,
    Reaped,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Released => "released",
            EndReason::Expired => "expired",
            EndReason::OwnerDied => "owner_died",
            EndReason::Reaped => "reaped",
        }
    }

    pub fn parse(text: &str) -> Option<EndReason> {
        [
            EndReason::Released,
            EndReason::Expired,
            EndReason::OwnerDied,
            EndReason::Reaped,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// `POST /v1/leases`. Every field is optional; see DESIGN "Which port a
/// request gets" for how they combine.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub next: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PortRange>,
    /// Printable characters only: a control or format character (bidi
    /// overrides, zero-width spaces) is 400.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::text::shown_name"
    )]
    pub name: Option<String>,
    /// An absolute path of at most 4,096 bytes (longer is 400).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::text::project_path"
    )]
    pub project: Option<String>,
    /// Names the owner instead of letting the daemon resolve it from the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerRef>,
    /// Seconds until the lease expires even if its owner lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Free the asked-for port from processes without a live lease first
    /// (explicit kill rules); never takes another owner's live lease.
    #[serde(default, skip_serializing_if = "is_false")]
    pub kill: bool,
    /// Give `name` a new home: the port this lease gets, chosen without
    /// its old home (which is neither tried nor taken by a scan).
    #[serde(rename = "move", default, skip_serializing_if = "is_false")]
    pub move_home: bool,
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// A process named by the caller: the start time guards against pid reuse.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OwnerRef {
    pub pid: u32,
    pub start_time: f64,
}

/// `PUT /v1/leases/{port}/command`: the command `portctl run` started for
/// the lease. It must be a child of the lease's owner, started after the
/// grant, and lead a process group of its own; that group's members then
/// belong to the lease even if they carry no tag.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The lease the command was started for (the port's active lease).
    pub id: String,
    pub pid: u32,
    /// Unix seconds, fractional, as in [`OwnerRef`].
    pub start_time: f64,
}

/// `GET /v1/leases/{port}/processes`: the lease's processes (those carrying
/// its tag, and the members of its command's process group) and the TCP
/// ports each listens on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseProcesses {
    pub lease_id: String,
    pub port: u16,
    pub processes: Vec<LeaseProcess>,
}

/// One process of a lease.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseProcess {
    pub pid: u32,
    pub cmdline: Vec<String>,
    /// TCP ports it listens on (IPv4 or IPv6), lowest first.
    pub listens: Vec<u16>,
}

/// `GET /v1/leases`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseList {
    pub leases: Vec<Lease>,
}

/// `GET /v1/health`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub ok: bool,
    pub version: String,
    pub pid: u32,
}

/// `GET /v1/status`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: f64,
    pub started_at: String,
    pub db: String,
    pub socket: String,
    pub range: PortRange,
    pub grace_secs: f64,
    /// False while the start-up reconcile is still running.
    pub reconciled: bool,
    pub counts: Counts,
    /// The `.localhost` proxy's listener.
    #[serde(default)]
    pub proxy: ProxyStatus,
}

/// Where the proxy listens, or why it does not.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProxyStatus {
    /// The port it serves on; 0 when the proxy is off.
    pub port: u16,
    /// The addresses it listens on (`127.0.0.1:P`, `[::1]:P`); empty when
    /// it is off or could not bind.
    pub listening: Vec<String>,
    /// Why it does not listen, when it should.
    pub error: Option<String>,
}

/// `GET /v1/url?project=DIR&name=N`: a name's stable URL through the proxy.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NameUrl {
    /// `http://NAME.LABEL.localhost:PROXY_PORT/`.
    pub url: String,
    pub name: String,
    pub project: String,
    /// The project's label in proxy host names.
    pub label: String,
    /// The port of the name's active lease, if it has one.
    pub port: Option<u16>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub active_leases: u64,
    pub owners_watched: u64,
    pub names: u64,
    pub events: u64,
}

/// One line of history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub seq: i64,
    /// RFC 3339 UTC.
    pub at: String,
    /// `granted`, `released`, `expired`, `owner_died`, `reaped`, ...
    pub kind: String,
    pub lease_id: Option<String>,
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub detail: Option<String>,
}

/// `GET /v1/events`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventList {
    pub events: Vec<Event>,
}

/// `POST /v1/reap`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReapRequest {
    /// Report what would be signalled; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a reap did, or would do with `dry_run`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReapReport {
    pub dry_run: bool,
    /// Orphans signalled (or, with `dry_run`, that would be).
    pub reaped: Vec<Signalled>,
    /// Processes seen but not signalled, each with the reason.
    pub reported: Vec<Reported>,
}

/// `POST /v1/ports/{port}/kill`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// First signal: `TERM` (default), `INT`, `HUP`, `KILL`, `SIGTERM`, `15`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Seconds between the first signal and SIGKILL (default: the daemon's grace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<f64>,
    /// Also signal systemd socket holders. A container's port forwarder
    /// (docker-proxy) or a process inside a container is never signalled.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

/// What an explicit kill did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KillReport {
    pub port: u16,
    pub signalled: Vec<Signalled>,
    pub skipped: Vec<Reported>,
    /// True when nothing listens on the port afterwards.
    pub free: bool,
}

/// A process portd signalled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Signalled {
    pub pid: u32,
    pub uid: u32,
    pub cmdline: Vec<String>,
    pub port: u16,
    pub lease_id: Option<String>,
    /// The last signal sent (`SIGTERM`, `SIGKILL`); null in a dry run.
    pub signal: Option<String>,
    /// Whether the process is gone.
    pub exited: bool,
}

/// A process portd saw and left alone, and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reported {
    pub pid: Option<u32>,
    pub uid: u32,
    pub cmdline: Vec<String>,
    pub port: u16,
    pub lease_id: Option<String>,
    pub reason: String,
    /// An untagged listener in a dead owner's session.
    pub suspect: bool,
}

/// A name and the port it remembers in its project.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NameEntry {
    pub project: String,
    pub name: String,
    /// The remembered (home) port; an active lease may hold another port
    /// while the home is busy.
    pub port: u16,
    /// RFC 3339 UTC: when the name last got a lease.
    pub last_used: String,
    /// The id of the name's active lease, if any.
    pub lease_id: Option<String>,
    /// The name's active lease, if any (its port may differ from `port`).
    pub lease: Option<Lease>,
}

/// `GET /v1/names[?project=DIR][&name=N]`; also what `DELETE /v1/names`
/// forgot.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NameList {
    pub names: Vec<NameEntry>,
}

/// `POST /v1/cleanup`: what a reconcile and an orphan sweep did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CleanupReport {
    /// Active leases whose owner still runs.
    pub kept: u64,
    /// Leases ended because their owner was gone or from another boot.
    pub ended: u64,
    /// The orphan sweep that followed.
    pub reap: ReapReport,
    /// Names forgotten: their project directory is gone, or they had no
    /// lease for 90 days.
    #[serde(default)]
    pub forgotten: Vec<NameEntry>,
    /// What the daemon's own cleanup did when it started (which a cleanup
    /// asked for later no longer finds to do); null if that one failed.
    #[serde(default)]
    pub startup: Option<StartupCleanup>,
}

/// The cleanup a daemon ran when it started, as every later cleanup
/// reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartupCleanup {
    /// RFC 3339 UTC: when it finished.
    pub at: String,
    pub kept: u64,
    pub ended: u64,
    pub reap: ReapReport,
    pub forgotten: Vec<NameEntry>,
}

/// `GET /v1/ports/{port}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortReport {
    pub port: u16,
    pub lease: Option<Lease>,
    pub holders: Vec<Holder>,
    /// True when no live lease holds the port and a probe bind succeeds.
    pub free: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_request_rejects_unknown_fields() {
        let err = serde_json::from_str::<LeaseRequest>(r#"{"port":8000,"colour":"red"}"#);
        assert!(err.unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn lease_request_takes_a_range_as_text() {
        let req: LeaseRequest =
            serde_json::from_str(r#"{"range":"8000-8010","next":true}"#).unwrap();
        assert_eq!(
            req.range,
            Some(PortRange {
                start: 8000,
                end: 8010
            })
        );
        assert!(req.next);
        assert!(serde_json::from_str::<LeaseRequest>(r#"{"range":"9-8"}"#).is_err());
        assert!(serde_json::from_str::<LeaseRequest>(r#"{"port":70000}"#).is_err());
    }

    #[test]
    fn lease_serializes_with_the_design_fields() {
        let lease = Lease {
            id: "x".into(),
            port: 8000,
            name: None,
            project: None,
            owner: Owner {
                pid: 1,
                start_time: 1.5,
                uid: 0,
            },
            state: LeaseState::Active,
            end_reason: None,
            granted_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
            ended_at: None,
            home: None,
            skipped: None,
            command_pid: None,
        };
        let v = serde_json::to_value(&lease).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "end_reason",
                "ended_at",
                "expires_at",
                "granted_at",
                "id",
                "name",
                "owner",
                "port",
                "project",
                "state"
            ]
        );
        assert_eq!(v["state"], "active");
    }
}
