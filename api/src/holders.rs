//! What holds a port: the listening processes `who`, a refused lease and
//! `GET /v1/ports/{port}` report (`PortReport`, with the lease, is in
//! `types`), and the container a port forwarder belongs to.

use serde::{Deserialize, Serialize};

/// A process listening on a port.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    /// `None` when the socket's process could not be found (its /proc/PID/fd
    /// is unreadable); `uid` is then the socket's.
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    pub uid: u32,
    pub user: Option<String>,
    pub cmdline: Vec<String>,
    pub start_time: Option<f64>,
    pub lease_id: Option<String>,
    pub kind: HolderKind,
    pub suspect: bool,
    /// The container whose published port this forwarder holds, when the
    /// Docker Engine says so. Absent for every other holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

impl Holder {
    /// `pid 1234 (python3 -m http.server 8000)`, or for a container's port
    /// `container web (busybox; compose project shop, service web) through
    /// pid 1234 (docker-proxy ...)` (`container web (busybox), pid 1234
    /// (...)` for a process inside it), for messages.
    pub fn describe(&self) -> String {
        let cmd = if self.cmdline.is_empty() {
            "?".to_string()
        } else {
            self.cmdline.join(" ")
        };
        let process = match self.pid {
            Some(pid) => format!("pid {pid} ({cmd})"),
            None => format!("a process of uid {} that portd cannot see", self.uid),
        };
        match (&self.container, self.kind) {
            (Some(container), HolderKind::DockerProxy) => {
                format!("{} through {process}", container.describe())
            }
            (Some(container), _) => format!("{}, {process}", container.describe()),
            (None, _) => process,
        }
    }
}

/// A Docker container that publishes a port, as the Docker Engine lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Container {
    /// The short id: the first 12 hex digits.
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub image: String,
    /// The `com.docker.compose.project` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    /// The `com.docker.compose.service` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
}

impl Container {
    /// `container web (busybox; compose project shop, service web)`.
    pub fn describe(&self) -> String {
        let compose = match (&self.compose_project, &self.compose_service) {
            (Some(project), Some(service)) => {
                format!("; compose project {project}, service {service}")
            }
            (Some(project), None) => format!("; compose project {project}"),
            _ => String::new(),
        };
        format!("container {} ({}{compose})", self.name, self.image)
    }

    /// The command that stops this container the way its owner started it:
    /// `docker compose -p PROJECT stop SERVICE` for a Compose service,
    /// else `docker stop NAME`.
    pub fn stop_command(&self) -> String {
        match (&self.compose_project, &self.compose_service) {
            (Some(project), Some(service)) => {
                format!("docker compose -p {project} stop {service}")
            }
            _ => format!("docker stop {}", self.name),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HolderKind {
    Process,
    /// A container engine's port forwarder: `docker-proxy`, or for
    /// rootless Docker `rootlesskit` (or `slirp4netns`). Never signalled.
    DockerProxy,
    Systemd,
}
