//! `portctl url NAME`: the name's stable URL through portd's `.localhost`
//! proxy (`GET /v1/url`).

use std::path::PathBuf;

use clap::Args;
use portd_api::query::UrlQuery;
use portd_api::routes::GetUrl;

use super::args::project_dir;
use super::{json_errors, print_body};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Every named lease is reachable through portd's proxy at
http://NAME.PROJECT.localhost:PORT/, whatever port it got today; PROJECT is
the project's label (its directory's name, made unique), PORT the proxy's
(7355 unless configured). Browsers resolve *.localhost to this machine by
themselves. Examples:
  portctl url api                 http://api.shop.localhost:7355/
  open \"$(portctl url web)\"
  portctl run --name web --env VITE_API_URL={url@api} -- npm run dev -- --port {port}

Exit 4 when the project knows no such name (lease it first) or the proxy
is off.")]
pub struct UrlArgs {
    /// The name, in this project
    pub name: String,
    /// The project of NAME [default: the git worktree root, else the directory]
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: UrlArgs) -> Result<(), ClientError> {
    let request = GetUrl(UrlQuery {
        project: project_dir(args.project.as_deref())?,
        name: args.name,
    });
    let (answer, response) = json_errors(args.json, client.fetch(&request))?;
    if args.json {
        print_body(&response);
    } else {
        println!("{}", answer.url);
    }
    Ok(())
}
