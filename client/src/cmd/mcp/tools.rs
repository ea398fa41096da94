//! The MCP tools: one per verb, each running the verb's request through the
//! blocking [`Client`] on tokio's blocking threads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use portd_api::query::{LeasesQuery, NamesQuery, UrlQuery};
use portd_api::routes::{CreateLease, GetPort, GetUrl, KillPort, ListLeases, ListNames};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{Json, ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;

use super::params::{
    EnvParams, KillParams, LeaseParams, ListParams, PortParams, ReleaseParams, WaitParams,
    WhoParams,
};
use super::parse;
use super::results::{
    Env, Killed, LeaseInfo, Leased, Listed, NamePort, NameUrl, Ready, Released, Who, error_value,
};
use crate::client::Client;
use crate::cmd::args::{LeaseRef, project_dir};
use crate::cmd::env::{EnvArgs, project_ports};
use crate::cmd::kill::{self, KillArgs};
use crate::cmd::lease::{self, LeaseArgs};
use crate::cmd::release::{self, ReleaseArgs};
use crate::cmd::wait::{self, WaitArgs};
use crate::cmd::{passed_over, who};
use crate::error::ClientError;

/// What the agent reads when it connects.
const INSTRUCTIONS: &str = "\
portd leases local TCP ports so that parallel sessions and worktrees never \
start two servers on one port or stop each other's servers. Before starting \
a dev server, call `lease` (with a `name` such as \"api\" or \"web\" to keep \
the same port in this project) and start the server with the `env` it \
returns (PORT and PORTD_LEASE) in its environment, e.g. by putting \
`shell_prefix` before its command and passing the port on its command line. \
The lease belongs to this MCP session: when the session ends, the lease ends \
and the servers carrying its tag are stopped. Use `who` to see what holds a \
port and `kill` to stop your own listeners instead of pkill or lsof; a port \
a Docker container publishes is never killed (the answer names the docker \
command). `wait` blocks until a server answers; `port` gives a name's port; \
`env` with project_names gives every name's port for a Compose env file.";

/// The MCP server: the daemon's socket, and the pid that owns leases by
/// default (this process).
#[derive(Debug, Clone)]
pub struct Ports {
    socket: PathBuf,
    owner: u32,
    tool_router: ToolRouter<Ports>,
}

impl Ports {
    pub fn new(socket: PathBuf, owner: u32) -> Ports {
        Ports {
            socket,
            owner,
            tool_router: Ports::tool_router(),
        }
    }

    /// Runs `work` with a client on a blocking thread; a failure becomes
    /// the structured error result.
    async fn blocking<T, F>(&self, work: F) -> Result<Json<T>, CallToolResult>
    where
        T: Serialize + Send + 'static,
        F: FnOnce(&Client) -> Result<T, ClientError> + Send + 'static,
    {
        let socket = self.socket.clone();
        let joined = tokio::task::spawn_blocking(move || work(&Client::new(socket))).await;
        let result =
            joined.unwrap_or_else(|e| Err(ClientError::Other(format!("the tool failed: {e}"))));
        result
            .map(Json)
            .map_err(|e| CallToolResult::structured_error(error_value(&e)))
    }
}

#[tool_router]
impl Ports {
    #[tool(
        description = "Lease a local TCP port for a server you are about to start. \
Returns the port and the environment (PORT, PORTD_LEASE) to start the server with; \
the lease ends when this MCP session ends, and the servers started with that \
environment are stopped then. Refused (exit_code 3, code port_taken) when another \
process holds the port: the answer names it."
    )]
    async fn lease(
        &self,
        Parameters(p): Parameters<LeaseParams>,
    ) -> Result<Json<Leased>, CallToolResult> {
        let owner = self.owner;
        self.blocking(move |client| {
            let args: LeaseArgs = parse("lease", p.argv(owner))?;
            let (lease, _) = client.fetch(&CreateLease(lease::request(&args)?))?;
            let uid = nix::unistd::geteuid().as_raw();
            Ok(Leased::new(&lease, passed_over::notes(&lease, uid)))
        })
        .await
    }

    #[tool(
        description = "End a lease, by port or by name; its servers are stopped \
unless keep is set."
    )]
    async fn release(
        &self,
        Parameters(p): Parameters<ReleaseParams>,
    ) -> Result<Json<Released>, CallToolResult> {
        self.blocking(move |client| {
            let args: ReleaseArgs = parse("release", p.argv())?;
            let (lease, _) = release::end(client, &args)?;
            Ok(Released {
                lease: LeaseInfo::from(&lease),
                kept: args.keep,
            })
        })
        .await
    }

    #[tool(description = "List the active leases (all: ended ones too).")]
    async fn list(
        &self,
        Parameters(p): Parameters<ListParams>,
    ) -> Result<Json<Listed>, CallToolResult> {
        self.blocking(move |client| {
            let (list, _) = client.fetch(&ListLeases(LeasesQuery { all: p.all }))?;
            Ok(Listed {
                leases: list.leases.iter().map(LeaseInfo::from).collect(),
            })
        })
        .await
    }

    #[tool(description = "Show who leases and who listens on a port: processes, \
their commands, leases, and the Docker container a published port belongs to. \
not_found (exit_code 4) when nothing leases or listens on it.")]
    async fn who(&self, Parameters(p): Parameters<WhoParams>) -> Result<Json<Who>, CallToolResult> {
        self.blocking(move |client| {
            let (report, _) = client.fetch(&GetPort { port: p.port })?;
            match who::nothing_there(&report) {
                Some(error) => Err(error),
                None => Ok(Who::from(&report)),
            }
        })
        .await
    }

    #[tool(description = "Stop the processes listening on a port: SIGTERM, then \
SIGKILL after the grace. Only your own processes; never a container's port or \
another session's live lease (forbidden, exit_code 5).")]
    async fn kill(
        &self,
        Parameters(p): Parameters<KillParams>,
    ) -> Result<Json<Killed>, CallToolResult> {
        self.blocking(move |client| {
            let args: KillArgs = parse("kill", p.argv())?;
            let request = KillPort {
                port: args.port,
                request: kill::request(&args),
            };
            let (report, _) = client.fetch(&request)?;
            Ok(Killed::from(&report))
        })
        .await
    }

    #[tool(description = "The port of a name in the project: its active lease's \
port, else the port it remembers. not_found (exit_code 4) for a name never leased.")]
    async fn port(
        &self,
        Parameters(p): Parameters<PortParams>,
    ) -> Result<Json<NamePort>, CallToolResult> {
        self.blocking(move |client| {
            let project = project_dir(p.project.as_deref().map(std::path::Path::new))?;
            let query = NamesQuery {
                project: Some(project.clone()),
                name: Some(p.name.clone()),
            };
            let (list, _) = client.fetch(&ListNames(query))?;
            let entry = list.names.into_iter().next().ok_or_else(|| {
                ClientError::NotFound(format!("no name '{}' remembered in {project}", p.name))
            })?;
            Ok(NamePort {
                port: entry.lease.as_ref().map_or(entry.port, |l| l.port),
                home_port: entry.port,
                lease_id: entry.lease_id,
                name: entry.name,
                project: entry.project,
            })
        })
        .await
    }

    #[tool(description = "The stable URL of a name through portd's .localhost \
proxy (http://NAME.LABEL.localhost:PORT/), whatever port it has today: for a \
browser, or for another server's configuration. not_found (exit_code 4) for \
a name never leased, or when the proxy is off; use `port` then.")]
    async fn url(
        &self,
        Parameters(p): Parameters<PortParams>,
    ) -> Result<Json<NameUrl>, CallToolResult> {
        self.blocking(move |client| {
            let project = project_dir(p.project.as_deref().map(std::path::Path::new))?;
            let (answer, _) = client.fetch(&GetUrl(UrlQuery {
                project,
                name: p.name,
            }))?;
            Ok(NameUrl::from(answer))
        })
        .await
    }

    #[tool(
        description = "Wait until something listens on a port (and, with http, \
until GET of that path answers 2xx or 3xx). Fails (exit_code 1) on timeout."
    )]
    async fn wait(
        &self,
        Parameters(p): Parameters<WaitParams>,
    ) -> Result<Json<Ready>, CallToolResult> {
        self.blocking(move |_| {
            let args: WaitArgs = parse("wait", p.argv())?;
            let port = args.port;
            let started = Instant::now();
            wait::run(args)?;
            Ok(Ready {
                port,
                waited_ms: started.elapsed().as_millis() as u64,
            })
        })
        .await
    }

    #[tool(
        description = "The environment of an existing lease (PORT, PORTD_LEASE), \
by port or name; or, with project_names, NAME_PORT for every name of the project, \
for a Docker Compose env file."
    )]
    async fn env(&self, Parameters(p): Parameters<EnvParams>) -> Result<Json<Env>, CallToolResult> {
        self.blocking(move |client| {
            let args: EnvArgs = parse("env", p.argv())?;
            let variables: BTreeMap<String, String> = if args.project_names {
                let project = project_dir(args.project.as_deref())?;
                project_ports(client, &project)?
                    .into_iter()
                    .map(|(k, v)| (k, v.to_string()))
                    .collect()
            } else {
                let found = LeaseRef {
                    port: args.port,
                    name: args.name.clone(),
                    project: args.project.clone(),
                }
                .lookup(client)?;
                BTreeMap::from([
                    ("PORT".to_string(), found.port.to_string()),
                    (portd_api::LEASE_ENV.to_string(), found.id),
                ])
            };
            let dotenv = variables
                .iter()
                .filter(|(k, _)| *k != portd_api::LEASE_ENV)
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect();
            Ok(Env { variables, dotenv })
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Ports {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("portd", portd_api::VERSION))
            .with_instructions(INSTRUCTIONS)
    }
}
