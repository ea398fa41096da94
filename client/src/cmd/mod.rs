//! One module per verb; each parses its own arguments (clap) and runs
//! against a [`Client`]. Shared output helpers live here.

pub mod args;
pub mod cleanup;
pub mod completions;
pub mod env;
pub mod install;
pub mod kill;
pub mod lease;
pub mod ls;
pub mod man;
pub mod mcp;
pub mod names;
pub mod passed_over;
pub mod placeholders;
pub mod reap;
pub mod release;
pub mod run;
pub mod status;
pub mod uninstall;
pub mod url;
pub mod wait;
pub mod who;

use std::io::Write;

use portd_api::routes::ListLeases;
use portd_api::{ErrorBody, ErrorCode, ErrorDetail, Lease};

use crate::client::Client;
use crate::error::ClientError;
use crate::transport::Response;

/// Prints an answer's body as it came, for `--json`.
pub fn print_body(response: &Response) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&response.body);
    let _ = writeln!(out);
}

/// Writes generated output (a completion script, a man page) to stdout; a
/// reader that stops early (`| head`) is no error.
pub fn write_stdout(bytes: &[u8]) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(ClientError::Other(format!("writing to stdout: {e}"))),
    }
}

/// With `--json`, a daemon error's body goes to stdout too; so does a 404
/// the client found itself (a lease looked up by name), in the same shape.
pub fn json_errors<T>(json: bool, result: Result<T, ClientError>) -> Result<T, ClientError> {
    match (json, &result) {
        (true, Err(ClientError::Api { raw, .. })) => println!("{raw}"),
        (true, Err(ClientError::NotFound(message))) => {
            let body = ErrorBody {
                error: ErrorDetail {
                    code: ErrorCode::NotFound,
                    message: message.clone(),
                    context: serde_json::Map::new(),
                },
            };
            println!(
                "{}",
                serde_json::to_string(&body).expect("error bodies serialize")
            );
        }
        _ => {}
    }
    result
}

/// Prints the report an action answered (`kill`, `reap`, `cleanup`): with
/// `--json` its body as it came, else `describe`'s text.
pub fn print_report<T>(
    json: bool,
    answer: Result<(T, Response), ClientError>,
    describe: fn(&T) -> String,
) -> Result<(), ClientError> {
    let (report, response) = json_errors(json, answer)?;
    if json {
        print_body(&response);
    } else {
        print!("{}", describe(&report));
    }
    Ok(())
}

/// The active lease `name` holds in `project`.
pub fn lease_by_name(client: &Client, project: &str, name: &str) -> Result<Lease, ClientError> {
    let (list, _) = client.fetch(&ListLeases::default())?;
    list.leases
        .into_iter()
        .find(|l| l.name.as_deref() == Some(name) && l.project.as_deref() == Some(project))
        .ok_or_else(|| {
            ClientError::NotFound(format!("no active lease named '{name}' in {project}"))
        })
}

/// `export PORT=8000` and `export PORTD_LEASE=<id>`, one per line, for
/// `eval`.
pub fn shell_exports(lease: &Lease) -> String {
    format!(
        "export PORT={}\nexport {}={}",
        lease.port,
        portd_api::LEASE_ENV,
        lease.id
    )
}

/// For output meant for `eval`: on failure, print what makes `eval` fail
/// with the same exit code. `(exit N)` ends only the subshell it starts, so
/// a `set -e` script stops at the `eval` while an interactive shell lives
/// on; an empty output would make `eval` succeed and leave `$PORT` unset.
pub fn eval_errors<T>(shell: bool, result: Result<T, ClientError>) -> Result<T, ClientError> {
    if let (true, Err(e)) = (shell, &result) {
        println!("{}", eval_failure(e.exit_code()));
    }
    result
}

/// The shell code that fails `eval` with `code`.
pub fn eval_failure(code: i32) -> String {
    format!("(exit {code})")
}

/// Parses a port for clap, with DESIGN's one-line reason on failure.
pub fn port_arg(text: &str) -> Result<u16, String> {
    portd_api::parse_port(text)
}

/// Joins a command line for display.
pub fn command_text(cmdline: &[String]) -> String {
    if cmdline.is_empty() {
        "?".to_string()
    } else {
        cmdline.join(" ")
    }
}
