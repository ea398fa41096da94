//! `portctl`: parse the command line, run one verb, exit with its code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use portctl::cmd::eval_failure;
use portctl::cmd::{
    cleanup, completions, env, install, kill, lease, ls, man, mcp, names, reap, release, run,
    status, uninstall, url, wait, who,
};
use portctl::{Client, ClientError};
use portd_api::paths;

/// Lease local TCP ports from portd, and find or free what holds them.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "\
Start scripts call portctl before starting a service:

  PORT=$(portctl lease 8000 --next)
  eval \"$(portctl lease --name api --shell)\"; uvicorn app:app --port \"$PORT\"

With --shell a refused lease prints `(exit N)`, so the eval fails: a `set -e`
script stops there, an interactive shell stays.

portctl starts the daemon when nothing answers (PORTD_NO_AUTOSTART=1 turns
that off). Exit codes: 0 ok, 1 error, 2 bad usage, 3 port taken, 4 not found,
5 forbidden, 69 daemon unreachable, 78 bad configuration (e.g. a socket
directory open to other users)."
)]
struct Cli {
    /// The daemon's socket [env: PORTD_SOCKET; default:
    /// $XDG_RUNTIME_DIR/portd/portd.sock, else /tmp/portd-$UID/portd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Lease a port: print it on stdout, exit 3 if it is taken
    Lease(lease::LeaseArgs),
    /// End a lease
    Release(release::ReleaseArgs),
    /// List leases
    Ls(ls::LsArgs),
    /// Show who leases and who listens on a port
    Who(who::WhoArgs),
    /// End the orphaned servers of ended leases now
    Reap(reap::ReapArgs),
    /// Stop whatever listens on a port (your processes only)
    Kill(kill::KillArgs),
    /// Lease a port and run a command with it; release it when the command exits
    Run(run::RunArgs),
    /// Wait until something listens on a port (or an HTTP path answers)
    Wait(wait::WaitArgs),
    /// Print an existing lease, or every name's port, as shell exports, dotenv or JSON
    Env(env::EnvArgs),
    /// List the names that remember ports, or forget them
    Names(names::NamesArgs),
    /// Print a name's URL through portd's .localhost proxy
    Url(url::UrlArgs),
    /// Show the daemon's version, paths and counts
    Status(status::StatusArgs),
    /// End leases of dead owners and other boots, then reap orphans (for login)
    Cleanup(cleanup::CleanupArgs),
    /// Write the systemd user units and enable them: portd starts at login
    Install(install::InstallArgs),
    /// Disable and remove the systemd user units
    Uninstall(uninstall::UninstallArgs),
    /// Print a shell completion script (bash, zsh, fish, ...)
    Completions(completions::CompletionsArgs),
    /// Print or write man pages
    Man(man::ManArgs),
    /// Serve MCP on stdio for coding agents; the leases it takes end with the session
    Mcp(mcp::McpArgs),
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == run::LISTEN_FD_SHIM) {
        return ExitCode::from(u8::try_from(run::listen_fd_shim(&argv[2..])).unwrap_or(1));
    }
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            if e.use_stderr() && output_is_evaluated(&argv[1..]) {
                println!("{}", eval_failure(e.exit_code()));
            }
            e.exit()
        }
    };
    let uid = nix::unistd::geteuid().as_raw();
    let client = Client::new(paths::socket_path(cli.socket.as_deref(), uid));
    let result = match cli.verb {
        Verb::Lease(args) => lease::run(&client, args),
        Verb::Release(args) => release::run(&client, args),
        Verb::Ls(args) => ls::run(&client, args),
        Verb::Who(args) => who::run(&client, args),
        Verb::Reap(args) => reap::run(&client, args),
        Verb::Kill(args) => kill::run(&client, args),
        Verb::Run(args) => run::run(&client, args),
        Verb::Wait(args) => wait::run(args),
        Verb::Env(args) => env::run(&client, args),
        Verb::Names(args) => names::run(&client, args),
        Verb::Url(args) => url::run(&client, args),
        Verb::Status(args) => status::run(&client, args),
        Verb::Cleanup(args) => cleanup::run(&client, args),
        Verb::Install(args) => install::run(args, cli.socket.as_deref()),
        Verb::Uninstall(args) => uninstall::run(args),
        Verb::Completions(args) => completions::run(Cli::command(), args),
        Verb::Man(args) => man::run(Cli::command(), args),
        Verb::Mcp(_) => Err(mcp::exec_server(client.socket())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portctl: {e}");
            exit_code(&e)
        }
    }
}

/// True when stdout is meant for `eval`: `lease --shell`, or `env` in its
/// shell format. A usage error must then fail the `eval` too.
fn output_is_evaluated(args: &[std::ffi::OsString]) -> bool {
    let words: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let mut rest = words.iter();
    let verb = loop {
        match rest.next() {
            Some(&"--socket") => {
                rest.next();
            }
            Some(word) if word.starts_with('-') => {}
            Some(word) => break *word,
            None => return false,
        }
    };
    let rest: Vec<&str> = rest.copied().collect();
    match verb {
        "lease" => rest.contains(&"--shell"),
        "env" => {
            let format = rest
                .iter()
                .position(|w| *w == "--format")
                .and_then(|i| rest.get(i + 1).copied())
                .or_else(|| rest.iter().find_map(|w| w.strip_prefix("--format=")));
            format.is_none_or(|f| f == "shell")
        }
        _ => false,
    }
}

fn exit_code(error: &ClientError) -> ExitCode {
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
}
