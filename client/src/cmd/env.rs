//! `portctl env`: print an existing lease for eval, a .env file, or JSON.

use clap::{Args, ValueEnum};

use super::args::LeaseRef;
use super::{eval_errors, json_errors, shell_exports};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// export PORT=8000 and export PORTD_LEASE=<id>, one per line; `(exit 4)`
    /// when there is no such lease, so that `eval` fails
    Shell,
    /// PORT=8000 (never the tag: a file would tag unrelated processes)
    Dotenv,
    /// The lease as JSON (the API's error body when there is none)
    Json,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  eval \"$(portctl env --name api)\"\n  portctl env 8000 --format dotenv >> .env"
)]
pub struct EnvArgs {
    #[command(flatten)]
    pub lease: LeaseRef,
    #[arg(long, value_enum, default_value = "shell")]
    pub format: Format,
}

pub fn run(client: &Client, args: EnvArgs) -> Result<(), ClientError> {
    let found = args.lease.lookup(client);
    let found = match args.format {
        Format::Shell => eval_errors(true, found),
        Format::Dotenv => found,
        Format::Json => json_errors(true, found),
    };
    let lease = found?;
    match args.format {
        Format::Shell => println!("{}", shell_exports(&lease)),
        Format::Dotenv => println!("PORT={}", lease.port),
        Format::Json => println!(
            "{}",
            serde_json::to_string(&lease).expect("leases serialize")
        ),
    }
    Ok(())
}
