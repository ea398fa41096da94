//! `portctl mcp`: a Model Context Protocol server on stdin and stdout, so
//! that coding agents lease ports, look up and stop what holds them, and
//! wait for their servers through portd instead of `lsof | xargs kill`.
//!
//! The server process owns the leases it takes (unless a tool names
//! another pid), so they end, and the servers started with their tag are
//! reaped, when the agent's session ends and the agent closes the server's
//! stdin. Each tool parses its arguments with the matching verb's clap
//! parser and sends the same typed request through [`Client`] as the verb
//! does: it refuses what the CLI refuses, and its error result carries the
//! same error code and exit code. Nothing prompts and nothing depends on a
//! terminal; stdout carries the protocol alone.
//!
//! The server is its own executable, `portctl-mcp`, which `portctl mcp`
//! execs (same pid, so the leases' owner is the process the agent
//! started): rmcp, tokio and schemars more than double portctl's size
//! (docs/DECISIONS.md has the measurements), and the other verbs should not
//! load them. The async runtime (tokio, current thread) runs the protocol;
//! the blocking client runs on tokio's blocking threads.

mod params;
mod results;
mod tools;

use std::path::{Path, PathBuf};

use clap::{ArgMatches, Args, FromArgMatches};
use rmcp::ServiceExt;

use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Register it with an agent as a stdio server whose command is `portctl mcp`
(started in the project's directory: names belong to its git worktree). The
tools: lease, release, list, who, kill, port, wait, env. Leases the server
takes end when the agent's session ends; start a server with the PORT and
PORTD_LEASE values `lease` returns and it is stopped then too. See the
README, \"With coding agents\".")]
pub struct McpArgs {}

/// The executable that serves MCP.
pub const SERVER_BIN: &str = "portctl-mcp";

/// Replaces this process with `portctl-mcp --socket SOCKET`: the one
/// beside this `portctl`, else the first on PATH. Returns only on failure.
pub fn exec_server(socket: &Path) -> ClientError {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(SERVER_BIN)))
        .filter(|path| path.is_file());
    let server = beside.unwrap_or_else(|| PathBuf::from(SERVER_BIN));
    let error = std::process::Command::new(&server)
        .arg("--socket")
        .arg(socket)
        .exec();
    ClientError::Other(format!(
        "cannot start the MCP server {}: {error}; install {SERVER_BIN} beside portctl",
        server.display()
    ))
}

/// Serves MCP on stdio until the client closes stdin.
pub fn run(socket: PathBuf) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Other(format!("cannot start the MCP server's runtime: {e}")))?;
    let server = tools::Ports::new(socket, std::process::id());
    runtime.block_on(async move {
        let service = server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| ClientError::Other(format!("MCP session failed to start: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| ClientError::Other(format!("MCP session failed: {e}")))?;
        Ok(())
    })
}

/// `A` parsed from `argv` as `portctl VERB ARGV...` would parse it; a
/// refusal is a usage error (exit 2) with clap's one-line reason.
fn parse<A: Args + FromArgMatches>(
    verb: &'static str,
    argv: Vec<String>,
) -> Result<A, ClientError> {
    let command = A::augment_args(
        clap::Command::new(verb)
            .no_binary_name(true)
            .disable_help_flag(true),
    );
    let matches: ArgMatches = command
        .try_get_matches_from(&argv)
        .map_err(|e| ClientError::Usage(clap_reason(&e)))?;
    A::from_arg_matches(&matches).map_err(|e| ClientError::Usage(clap_reason(&e)))
}

/// clap's message without its `error: ` prefix and usage lines.
fn clap_reason(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::lease::LeaseArgs;

    #[test]
    fn tool_arguments_are_refused_as_the_cli_refuses_them() {
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect();
        let ok: LeaseArgs = parse("lease", argv(&["8000", "--next"])).unwrap();
        assert_eq!((ok.port, ok.choice.next), (Some(8000), true));
        let both = parse::<LeaseArgs>("lease", argv(&["8000", "--next", "--kill"]));
        let Err(ClientError::Usage(reason)) = both else {
            panic!("{both:?}")
        };
        assert!(reason.contains("--kill"), "{reason}");
        assert!(!reason.starts_with("error:"), "{reason}");
        assert!(parse::<LeaseArgs>("lease", argv(&["--move"])).is_err());
        assert!(parse::<LeaseArgs>("lease", argv(&["--ttl", "soon"])).is_err());
    }
}
