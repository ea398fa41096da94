//! `portctl env`: print an existing lease for eval, a .env file, or JSON;
//! or, with `--project-names`, the port of every name the project
//! remembers as `NAME_PORT`, for Docker Compose's `--env-file`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};
use portd_api::query::NamesQuery;
use portd_api::routes::ListNames;
use portd_api::{Lease, NameEntry};

use super::args::{LeaseRef, project_dir};
use super::placeholders::{Names, expand};
use super::run::parse_env;
use super::{eval_errors, json_errors, port_arg, shell_exports};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// export PORT=8000 and export PORTD_LEASE=<id>, one per line; `(exit 4)`
    /// when there is no such lease, so that `eval` fails
    Shell,
    /// PORT=8000 (never the tag: a file would tag unrelated processes)
    Dotenv,
    /// The lease as JSON (the API's error body when there is none); with
    /// --project-names, an object from variable to port
    Json,
}

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("which").required(true).args(["port", "name", "project_names"])),
    after_help = "\
Examples:
  eval \"$(portctl env --name api)\"
  portctl env 8000 --format dotenv >> .env
  portctl env --name web --env VITE_API_URL={url@api} --format dotenv > .env.local
  portctl env --project-names --format dotenv > .ports.env
  docker compose --env-file .ports.env up

In --env values {port} becomes the lease's port, {port@NAME} NAME's port and
{url@NAME} NAME's URL through portd's proxy, NAME in the lease's project.

--project-names prints one NAME_PORT per name the project remembers: the
name in capitals, other characters than letters and digits as `_` (`api` ->
API_PORT, `admin-web` -> ADMIN_WEB_PORT), with the port of the name's active
lease, else the port it remembers. Exit 4 when the project remembers no
name, 2 when two names make the same variable."
)]
pub struct EnvArgs {
    /// The leased port
    #[arg(value_parser = port_arg, allow_negative_numbers = true)]
    pub port: Option<u16>,
    /// Name the lease by its name in the project instead
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Every name the project remembers, as NAME_PORT=...
    #[arg(long)]
    pub project_names: bool,
    /// The project of --name or --project-names [default: the git worktree
    /// root, else the directory]
    #[arg(long, value_name = "DIR", conflicts_with = "port")]
    pub project: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "shell")]
    pub format: Format,
    /// Another variable to print, after PORT (placeholders expand); not with
    /// --format json
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env, conflicts_with = "project_names")]
    pub envs: Vec<(String, String)>,
}

pub fn run(client: &Client, args: EnvArgs) -> Result<(), ClientError> {
    if args.project_names {
        return print_project_names(client, &args);
    }
    if matches!(args.format, Format::Json) && !args.envs.is_empty() {
        return Err(ClientError::Usage(
            "--env is for the shell and dotenv formats; --format json prints the lease as the API has it".into(),
        ));
    }
    let lease = LeaseRef {
        port: args.port,
        name: args.name.clone(),
        project: args.project.clone(),
    };
    let found = lease.lookup(client).and_then(|lease| {
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

fn print_project_names(client: &Client, args: &EnvArgs) -> Result<(), ClientError> {
    let variables =
        project_dir(args.project.as_deref()).and_then(|project| project_ports(client, &project));
    let variables = match args.format {
        Format::Shell => eval_errors(true, variables),
        _ => variables,
    }?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string(&variables).expect("a map of ports serializes")
        ),
        format => {
            let export = if format == Format::Shell {
                "export "
            } else {
                ""
            };
            for (variable, port) in &variables {
                println!("{export}{variable}={port}");
            }
        }
    }
    Ok(())
}

/// `NAME_PORT` -> port for every name `project` remembers: the port of the
/// name's active lease (which may not be its home while the home is busy),
/// else the remembered one. Exit 4 when there is none, 2 when two names
/// make one variable.
pub fn project_ports(client: &Client, project: &str) -> Result<BTreeMap<String, u16>, ClientError> {
    let query = NamesQuery {
        project: Some(project.to_string()),
        name: None,
    };
    let (list, _) = client.fetch(&ListNames(query))?;
    if list.names.is_empty() {
        return Err(ClientError::NotFound(format!(
            "no names remembered in {project}; `portctl lease --name NAME` gives a name its port"
        )));
    }
    variables(&list.names)
}

/// The variables of `names`, refusing two names that make one variable.
pub fn variables(names: &[NameEntry]) -> Result<BTreeMap<String, u16>, ClientError> {
    let mut out: BTreeMap<String, (u16, &str)> = BTreeMap::new();
    for entry in names {
        let variable = variable_of(&entry.name);
        let port = entry.lease.as_ref().map_or(entry.port, |l| l.port);
        if let Some((_, other)) = out.insert(variable.clone(), (port, &entry.name)) {
            return Err(ClientError::Usage(format!(
                "names '{other}' and '{}' both make {variable}; forget one with `portctl names forget NAME`",
                entry.name
            )));
        }
    }
    Ok(out.into_iter().map(|(v, (port, _))| (v, port)).collect())
}

/// `api` -> `API_PORT`, `admin-web` -> `ADMIN_WEB_PORT`, `2d` -> `_2D_PORT`:
/// capitals, anything but ASCII letters and digits as `_`, never a leading
/// digit (shells and Compose refuse those).
pub fn variable_of(name: &str) -> String {
    let mut variable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if variable.starts_with(|c: char| c.is_ascii_digit()) {
        variable.insert(0, '_');
    }
    variable + "_PORT"
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

    fn entry(name: &str, port: u16) -> NameEntry {
        NameEntry {
            project: "/p".into(),
            name: name.into(),
            port,
            last_used: "2026-01-01T00:00:00Z".into(),
            lease_id: None,
            lease: None,
        }
    }

    #[test]
    fn names_become_shell_and_compose_variables() {
        assert_eq!(variable_of("api"), "API_PORT");
        assert_eq!(variable_of("admin-web"), "ADMIN_WEB_PORT");
        assert_eq!(variable_of("db.main"), "DB_MAIN_PORT");
        assert_eq!(variable_of("2d"), "_2D_PORT");
        assert_eq!(variable_of("café"), "CAF__PORT");
    }

    #[test]
    fn two_names_that_make_one_variable_are_refused() {
        let found = variables(&[entry("admin-web", 3000), entry("admin_web", 3001)]);
        let Err(ClientError::Usage(message)) = found else {
            panic!("{found:?}")
        };
        assert!(message.contains("'admin-web' and 'admin_web'"), "{message}");
        let ok = variables(&[entry("web", 3000), entry("api", 8000)]).unwrap();
        assert_eq!(
            ok.into_iter().collect::<Vec<_>>(),
            [
                ("API_PORT".to_string(), 8000),
                ("WEB_PORT".to_string(), 3000)
            ]
        );
    }

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
