//! `portctl names`: the names that remember ports, per project
//! (`GET /v1/names`), and forgetting them (`DELETE /v1/names`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use portd_api::query::{ForgetQuery, NamesQuery};
use portd_api::routes::{ForgetNames, ListNames};
use portd_api::{ErrorCode, NameEntry};

use super::args::project_dir;
use super::{json_errors, print_body};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
A name (`lease --name api`) remembers its port in its project: the git
worktree root of the directory, else the directory. Examples:
  portctl names                         this project's names
  portctl names --all                   every project's
  portctl names forget api              forget what 'api' remembers here
  portctl names forget --project DIR    forget every name of DIR (gone or not)

Names of projects whose directory is gone, and names without a lease for 90
days, are forgotten at cleanup and hourly."
)]
pub struct NamesArgs {
    #[command(subcommand)]
    pub action: Option<NamesAction>,
    /// List every project's names, not only this project's
    #[arg(long, conflicts_with = "project")]
    pub all: bool,
    /// The project to list [default: the git worktree root, else the directory]
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum NamesAction {
    /// Forget what names remember: one name of a project, or all of its names
    Forget(ForgetArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
A name with an active lease is not forgotten (exit 3): release it first.
Exit 4 when the project remembers no such name.")]
pub struct ForgetArgs {
    /// The name to forget; without it, every name of --project
    #[arg(required_unless_present = "project")]
    pub name: Option<String>,
    /// The project [default: the git worktree root, else the directory]; its
    /// directory may be gone
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: NamesArgs) -> Result<(), ClientError> {
    match args.action {
        Some(NamesAction::Forget(forget)) => run_forget(client, forget),
        None => list(client, args),
    }
}

fn list(client: &Client, args: NamesArgs) -> Result<(), ClientError> {
    let project = if args.all {
        None
    } else {
        Some(project_dir(args.project.as_deref())?)
    };
    let request = ListNames(NamesQuery {
        project: project.clone(),
        name: None,
    });
    let (list, response) = json_errors(args.json, client.fetch(&request))?;
    if args.json {
        print_body(&response);
    } else if list.names.is_empty() {
        match &project {
            Some(project) => eprintln!("no names remembered in {project}"),
            None => eprintln!("no names remembered"),
        }
    } else {
        print!("{}", table(&list.names, project.is_none()));
    }
    Ok(())
}

fn run_forget(client: &Client, args: ForgetArgs) -> Result<(), ClientError> {
    let project = forget_project(args.project.as_deref())?;
    let request = ForgetNames(ForgetQuery {
        project: project.clone(),
        name: args.name,
    });
    let answer = client
        .fetch(&request)
        .map_err(|e| with_release_hint(e, &project));
    let (list, response) = json_errors(args.json, answer)?;
    if args.json {
        print_body(&response);
    } else {
        for name in &list.names {
            println!(
                "forgot '{}' in {} (it remembered port {})",
                name.name, name.project, name.port
            );
        }
    }
    Ok(())
}

/// The project to forget names of: as `project_dir` works it out, or, for a
/// directory that no longer exists, the path as given (made absolute):
/// forgetting the names of a deleted checkout must work.
fn forget_project(flag: Option<&Path>) -> Result<String, ClientError> {
    match (project_dir(flag), flag) {
        (Ok(project), _) => Ok(project),
        (Err(_), Some(dir)) if !dir.exists() => std::path::absolute(dir)
            .map(|dir| dir.display().to_string())
            .map_err(|e| ClientError::Usage(format!("{}: {e}", dir.display()))),
        (Err(e), _) => Err(e),
    }
}

/// A name that cannot be forgotten while leased: say how to end the lease.
fn with_release_hint(error: ClientError, project: &str) -> ClientError {
    match error {
        ClientError::Api {
            status,
            body: Some(mut body),
            raw,
        } if body.error.code == ErrorCode::NameTaken => {
            let name = body.error.context.get("name").and_then(|n| n.as_str());
            if let Some(name) = name {
                body.error.message.push_str(&format!(
                    "; release it first (`portctl release --name {name} --project {project}`), \
                     then forget it"
                ));
            }
            ClientError::Api {
                status,
                body: Some(body),
                raw,
            }
        }
        other => other,
    }
}

/// An aligned table: [PROJECT] NAME PORT LAST-USED LEASE.
pub fn table(names: &[NameEntry], with_project: bool) -> String {
    let mut rows = vec![
        ["PROJECT", "NAME", "PORT", "LAST USED", "LEASE"]
            .map(String::from)
            .to_vec(),
    ];
    for entry in names {
        let lease = match &entry.lease {
            Some(lease) => format!("port {} (pid {})", lease.port, lease.owner.pid),
            None => "-".to_string(),
        };
        rows.push(vec![
            entry.project.clone(),
            entry.name.clone(),
            entry.port.to_string(),
            entry.last_used.clone(),
            lease,
        ]);
    }
    let first = usize::from(!with_project);
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = (first..5)
            .map(|c| format!("{:<w$}", row[c], w = widths[c]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(project: &str, name: &str, port: u16) -> NameEntry {
        NameEntry {
            project: project.into(),
            name: name.into(),
            port,
            last_used: "2026-01-02T03:04:05.000Z".into(),
            lease_id: None,
            lease: None,
        }
    }

    #[test]
    fn the_table_shows_the_project_only_for_every_project() {
        let names = [entry("/p", "api", 8000), entry("/p", "web", 3000)];
        assert_eq!(
            table(&names, false),
            "NAME  PORT  LAST USED                 LEASE\n\
             api   8000  2026-01-02T03:04:05.000Z  -\n\
             web   3000  2026-01-02T03:04:05.000Z  -\n"
        );
        assert!(table(&names, true).starts_with("PROJECT  NAME  PORT"));
    }

    #[test]
    fn a_gone_project_is_named_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("deleted-checkout");
        assert_eq!(
            forget_project(Some(&gone)).unwrap(),
            gone.display().to_string()
        );
    }
}
