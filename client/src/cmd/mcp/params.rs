//! The tools' arguments, as JSON schemas for the agent, and how each
//! becomes the command line of the matching verb. Every tool's arguments
//! go through that verb's own clap parser, so a tool refuses exactly what
//! the CLI refuses (`kill` without a port, `next` with `kill`, `move`
//! without a name), with the same exit code.

use schemars::JsonSchema;
use serde::Deserialize;

/// `lease`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseParams {
    /// The port to lease: exactly this one unless `next` is set.
    pub port: Option<u16>,
    /// A name that keeps its port (its home) in the project, such as "api"
    /// or "web". While something else holds the home, the lease takes
    /// another port of the name's range for this time only.
    pub name: Option<String>,
    /// If `port` is taken, take the first free port above it. Every call
    /// with `next` gets a port this owner does not hold yet.
    #[serde(default)]
    pub next: bool,
    /// Search this range instead of the daemon's, written "A-B" (e.g.
    /// "3000-3999").
    pub range: Option<String>,
    /// Make the port this lease gets the name's new home (needs `name`).
    #[serde(default, rename = "move")]
    pub move_home: bool,
    /// The project directory a name belongs to [default: the git worktree
    /// root of this server's directory].
    pub project: Option<String>,
    /// Tie the lease to this process (e.g. a dev server's pid) instead of
    /// this MCP server: it ends when that process exits.
    pub owner_pid: Option<u32>,
    /// End the lease after this long even if its owner lives: "90", "90s",
    /// "5m", "2h".
    pub ttl: Option<String>,
    /// Free `port` first from listeners without a live lease (only your
    /// own processes), then lease it; never takes another owner's live
    /// lease, never stops a container.
    #[serde(default)]
    pub kill: bool,
}

impl LeaseParams {
    pub fn argv(&self, default_owner: u32) -> Vec<String> {
        let mut argv = Vec::new();
        push_opt(&mut argv, None, self.port);
        push_opt(&mut argv, Some("--name"), self.name.as_ref());
        push_flag(&mut argv, "--next", self.next);
        push_opt(&mut argv, Some("--range"), self.range.as_ref());
        push_flag(&mut argv, "--move", self.move_home);
        push_opt(&mut argv, Some("--project"), self.project.as_ref());
        push_opt(
            &mut argv,
            Some("--owner"),
            Some(self.owner_pid.unwrap_or(default_owner)),
        );
        push_opt(&mut argv, Some("--ttl"), self.ttl.as_ref());
        push_flag(&mut argv, "--kill", self.kill);
        argv
    }
}

/// `release`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseParams {
    /// The leased port (or give `name`).
    pub port: Option<u16>,
    /// The lease's name in the project instead of its port.
    pub name: Option<String>,
    /// The project of `name` [default: the git worktree root of this
    /// server's directory].
    pub project: Option<String>,
    /// Leave the lease's processes running instead of stopping them.
    #[serde(default)]
    pub keep: bool,
}

impl ReleaseParams {
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        push_opt(&mut argv, None, self.port);
        push_opt(&mut argv, Some("--name"), self.name.as_ref());
        push_opt(&mut argv, Some("--project"), self.project.as_ref());
        push_flag(&mut argv, "--keep", self.keep);
        argv
    }
}

/// `list`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Also list ended leases (newest first).
    #[serde(default)]
    pub all: bool,
}

/// `who`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoParams {
    /// The port to look at.
    pub port: u16,
}

/// `kill`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillParams {
    /// The port whose listeners to stop (your own processes only).
    pub port: u16,
    /// First signal: "TERM" (default), "INT", "HUP", "KILL" or a number.
    pub signal: Option<String>,
    /// Time between the first signal and SIGKILL: "0", "2s", "500ms"
    /// [default: the daemon's grace].
    pub grace: Option<String>,
    /// Also signal a systemd socket holder. A container's port is never
    /// signalled: the answer names the docker command that stops it.
    #[serde(default)]
    pub force: bool,
}

impl KillParams {
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        push_opt(&mut argv, None, Some(self.port));
        push_opt(&mut argv, Some("--signal"), self.signal.as_ref());
        push_opt(&mut argv, Some("--grace"), self.grace.as_ref());
        push_flag(&mut argv, "--force", self.force);
        argv
    }
}

/// `port` and `url`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortParams {
    /// The name, as given to `lease` (e.g. "api").
    pub name: String,
    /// Its project [default: the git worktree root of this server's
    /// directory].
    pub project: Option<String>,
}

/// `wait`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The port to wait for (on 127.0.0.1 or ::1).
    pub port: u16,
    /// Give up after this long: "30s" (default), "2m".
    pub timeout: Option<String>,
    /// Also wait until GET of this path (e.g. "/health") answers 2xx or
    /// 3xx.
    pub http: Option<String>,
}

impl WaitParams {
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        push_opt(&mut argv, None, Some(self.port));
        push_opt(&mut argv, Some("--timeout"), self.timeout.as_ref());
        push_opt(&mut argv, Some("--http"), self.http.as_ref());
        argv
    }
}

/// `env`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvParams {
    /// A leased port (or give `name`, or `project_names`).
    pub port: Option<u16>,
    /// A lease's name in the project.
    pub name: Option<String>,
    /// Every name the project remembers, as NAME_PORT variables (for a
    /// Docker Compose env file).
    #[serde(default)]
    pub project_names: bool,
    /// The project of `name` or `project_names` [default: the git worktree
    /// root of this server's directory].
    pub project: Option<String>,
}

impl EnvParams {
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        push_opt(&mut argv, None, self.port);
        push_opt(&mut argv, Some("--name"), self.name.as_ref());
        push_flag(&mut argv, "--project-names", self.project_names);
        push_opt(&mut argv, Some("--project"), self.project.as_ref());
        argv
    }
}

/// Appends `FLAG VALUE` (or the bare value for a positional) when set.
/// A value that starts with `-` is joined to its flag (`--name=-x`), so
/// it is never read as another option.
fn push_opt(argv: &mut Vec<String>, flag: Option<&str>, value: Option<impl ToString>) {
    let Some(value) = value.map(|v| v.to_string()) else {
        return;
    };
    match flag {
        Some(flag) if value.starts_with('-') => argv.push(format!("{flag}={value}")),
        Some(flag) => argv.extend([flag.to_string(), value]),
        None => argv.push(value),
    }
}

fn push_flag(argv: &mut Vec<String>, flag: &str, on: bool) {
    if on {
        argv.push(flag.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_owned_by_the_server_unless_a_pid_is_named() {
        let params = LeaseParams {
            port: Some(8000),
            next: true,
            name: Some("api".into()),
            ..LeaseParams::default()
        };
        assert_eq!(
            params.argv(42),
            ["8000", "--name", "api", "--next", "--owner", "42"]
        );
        let tied = LeaseParams {
            owner_pid: Some(7),
            ..LeaseParams::default()
        };
        assert_eq!(tied.argv(42), ["--owner", "7"]);
    }

    #[test]
    fn values_that_look_like_options_stay_values() {
        let params = ReleaseParams {
            name: Some("--keep".into()),
            ..ReleaseParams::default()
        };
        assert_eq!(params.argv(), ["--name=--keep"]);
    }
}
