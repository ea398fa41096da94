//! `portctl-mcp --socket PATH`: the MCP server that `portctl mcp` execs
//! (see `portctl::cmd::mcp`). An executable of its own so that the SDK and
//! its async runtime never load with portctl's other verbs.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let socket = match args.as_slice() {
        [flag, path] if flag == "--socket" => PathBuf::from(path),
        _ => {
            eprintln!("portctl-mcp: usage: portctl-mcp --socket PATH (run it as `portctl mcp`)");
            return ExitCode::from(2);
        }
    };
    match portctl::cmd::mcp::run(socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portctl-mcp: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
