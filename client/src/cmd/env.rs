//! `portctl env`: print an existing lease for eval, a .env file, or JSON.

use clap::{Args, ValueEnum};
use portd_api::Lease;

use super::args::{LeaseRef, project_dir};
use super::placeholders::{Names, expand};
use super::run::parse_env;
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
    after_help = "Examples:\n  eval \"$(portctl env --name api)\"\n  portctl env 8000 --format dotenv >> .env\n  \
portctl env --name web --env VITE_API_URL={url@api} --format dotenv > .env.local\n\n\
In --env values {port} becomes the lease's port, {port@NAME} NAME's port and\n\
{url@NAME} NAME's URL through portd's proxy, NAME in the lease's project."
)]
pub struct EnvArgs {
    #[command(flatten)]
    pub lease: LeaseRef,
    #[arg(long, value_enum, default_value = "shell")]
    pub format: Format,
    /// Another variable to print, after PORT (placeholders expand); not with
    /// --format json
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub envs: Vec<(String, String)>,
}

pub fn run(client: &Client, args: EnvArgs) -> Result<(), ClientError> {
    if matches!(args.format, Format::Json) && !args.envs.is_empty() {
        return Err(ClientError::Usage(
            "--env is for the shell and dotenv formats; --format json prints the lease as the API has it".into(),
        ));
    }
    let found = args.lease.lookup(client).and_then(|lease| {
        let extra = extra_vars(client, &args, &lease)?;
        Ok((lease, extra))
    });
    let found = match args.format {
        Format::Shell => eval_errors(true, found),
        Format::Dotenv => found,
        Format::Json => json_errors(true, found),
    };
    let (lease, extra) = found?;
    match args.format {
        Format::Shell => {
            println!("{}", shell_exports(&lease));
            for (key, value) in &extra {
                println!("export {key}={}", shell_quote(value));
            }
        }
        Format::Dotenv => {
            println!("PORT={}", lease.port);
            for (key, value) in &extra {
                println!("{key}={}", dotenv_quote(value));
            }
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string(&lease).expect("leases serialize")
        ),
    }
    Ok(())
}

/// The `--env` pairs with their placeholders expanded in the lease's
/// project (else the current one).
fn extra_vars(
    client: &Client,
    args: &EnvArgs,
    lease: &Lease,
) -> Result<Vec<(String, String)>, ClientError> {
    if args.envs.is_empty() {
        return Ok(Vec::new());
    }
    let project = match &lease.project {
        Some(project) => project.clone(),
        None => project_dir(None)?,
    };
    let mut names = Names::new(client, &project);
    let mut lookup = |wanted, name: &str| names.lookup(wanted, name);
    args.envs
        .iter()
        .map(|(key, value)| Ok((key.clone(), expand(value, lease.port, &mut lookup)?)))
        .collect()
}

/// `value` as one shell word: as it is when it holds only characters no
/// shell reads specially, else in single quotes.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    match plain {
        true => value.to_string(),
        false => format!("'{}'", value.replace('\'', "'\\''")),
    }
}

/// `value` for a .env file: as it is when plain, else in double quotes
/// with `\` and `"` escaped (what dotenv parsers agree on).
fn dotenv_quote(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    match plain {
        true => value.to_string(),
        false => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_a_shell_or_dotenv_would_misread_them() {
        assert_eq!(
            shell_quote("http://api.shop.localhost:7355/"),
            "http://api.shop.localhost:7355/"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            dotenv_quote("http://x.localhost:1/"),
            "http://x.localhost:1/"
        );
        assert_eq!(dotenv_quote("a \"b\""), "\"a \\\"b\\\"\"");
    }
}
