//! Which Docker container a listener serves: docker-proxy (and, for
//! rootless Docker, rootlesskit or slirp4netns) holds a published port on
//! a container's behalf, and a container on the host's network listens
//! itself from inside the container's cgroup.
//!
//! The container's name, image and Compose labels come from the Docker
//! Engine API (`GET /containers/json`) on the user's socket: `DOCKER_HOST`
//! (a `unix://` one), else `/var/run/docker.sock`, else rootless
//! Docker's `$XDG_RUNTIME_DIR/docker.sock`. One blocking HTTP/1.0 request
//! with a short deadline, cached briefly; no Docker, an unreadable socket or
//! a slow engine leave the holder as it was, never an error. Only called
//! for holders that are forwarders or run in a container, so other holders
//! cost nothing.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use portd_api::{Container, Holder, HolderKind};
use serde::Deserialize;

/// How long one request to the engine may take, connect to last byte.
const DEADLINE: Duration = Duration::from_millis(500);
/// How long a listing answers lookups before it is asked for again.
const FRESH: Duration = Duration::from_secs(2);
/// A listing younger than this is not asked for again on a miss: a port the
/// engine did not list a moment ago is not worth a second request.
const MISS_REFETCH_AFTER: Duration = Duration::from_millis(250);
/// Larger answers are cut off and ignored (thousands of containers).
const MAX_ANSWER: usize = 8 << 20;
/// Compose's labels for the project and the service.
const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Executables that hold ports for containers: Docker's userland proxy,
/// and the port forwarders of rootless Docker (rootlesskit's built-in
/// driver, or slirp4netns).
pub fn is_forwarder(exe_name: &str) -> bool {
    matches!(exe_name, "docker-proxy" | "rootlesskit" | "slirp4netns")
}

/// The id of the Docker container whose cgroup a process is in, from the
/// text of /proc/PID/cgroup: `/docker/<id>` (cgroupfs driver) or
/// `/docker-<id>.scope` (systemd driver), in any hierarchy.
pub fn container_id_in_cgroup(text: &str) -> Option<String> {
    let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find_map(|path| {
            let parts: Vec<&str> = path.split('/').collect();
            parts.iter().enumerate().find_map(|(i, part)| {
                let scoped = part
                    .strip_prefix("docker-")
                    .and_then(|p| p.strip_suffix(".scope"))
                    .filter(|id| is_id(id));
                let nested = (i > 0 && parts[i - 1] == "docker" && is_id(part)).then_some(*part);
                scoped.or(nested).map(str::to_string)
            })
        })
}

/// The container `pid` runs in (its full id), if that is not the one
/// portd itself runs in: inside a container without a cgroup namespace,
/// every process shows the container's cgroup, and they are all peers.
pub fn container_id_of(pid: u32) -> Option<String> {
    static OWN: OnceLock<Option<String>> = OnceLock::new();
    let own = OWN.get_or_init(|| cgroup_container(std::process::id()));
    cgroup_container(pid).filter(|id| Some(id) != own.as_ref())
}

fn cgroup_container(pid: u32) -> Option<String> {
    container_id_in_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// Why `pid` must never be signalled by portd, if it must not: it holds
/// ports for containers, or it runs inside one. Checked right before every
/// signal, the reaper's and the explicit kill's alike.
pub fn never_signalled(pid: u32) -> Option<String> {
    let exe = super::exe(pid);
    let name = exe.as_deref().and_then(Path::file_name)?.to_str()?;
    if is_forwarder(name) {
        return Some(format!(
            "{name} forwards ports to containers; stop the container instead"
        ));
    }
    container_id_of(pid).map(|id| {
        format!(
            "it runs in container {}; stop the container instead",
            short(&id)
        )
    })
}

/// Why an explicit kill leaves `holder` alone because of a container, with
/// the command that stops the container, if it does.
pub fn kill_refusal(holder: &Holder) -> Option<String> {
    match (&holder.container, holder.kind) {
        (Some(container), _) => Some(format!(
            "it serves the port of {}; stop that with `{}`",
            container.describe(),
            container.stop_command()
        )),
        (None, HolderKind::DockerProxy) => Some(
            "it forwards the port to a container that the Docker Engine did not name; \
             `docker ps` shows which, and `docker stop NAME` stops it"
                .to_string(),
        ),
        (None, _) => None,
    }
}

/// Fills in `container` for each of `holders` (listeners of `port`) that
/// is a forwarder or runs in a container, when the engine names it.
pub fn annotate<'a>(port: u16, holders: impl IntoIterator<Item = &'a mut Holder>) {
    for holder in holders {
        let Some(pid) = holder.pid else { continue };
        let want = if holder.kind == HolderKind::DockerProxy {
            Want::Port(port, host_ip(&holder.cmdline))
        } else {
            match container_id_of(pid) {
                Some(id) => Want::Id(id),
                None => continue,
            }
        };
        holder.container = lookup(&want);
    }
}

/// The address docker-proxy listens on, from its `-host-ip` argument.
fn host_ip(cmdline: &[String]) -> Option<IpAddr> {
    let at = cmdline.iter().position(|a| a == "-host-ip")?;
    cmdline.get(at + 1)?.parse().ok()
}

/// What a holder's container is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// The TCP port it publishes, on this host address if known.
    Port(u16, Option<IpAddr>),
    /// Its full id.
    Id(String),
}

/// One container as `GET /containers/json` lists it (the fields used).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    ports: Vec<Published>,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Published {
    #[serde(rename = "IP", default)]
    ip: Option<String>,
    #[serde(rename = "PublicPort", default)]
    public_port: Option<u16>,
    #[serde(rename = "Type", default)]
    kind: String,
}

/// The container of `listing` that `want` names. A port published on two
/// addresses by two containers goes to the one on the forwarder's address.
fn find(listing: &[Listed], want: &Want) -> Option<Container> {
    let found = match want {
        Want::Id(id) => listing.iter().find(|c| &c.id == id),
        Want::Port(port, ip) => {
            let publishing = |c: &&Listed, exact: bool| {
                c.ports.iter().any(|p| {
                    p.kind == "tcp"
                        && p.public_port == Some(*port)
                        && (!exact || p.ip.as_deref().and_then(|a| a.parse::<IpAddr>().ok()) == *ip)
                })
            };
            listing
                .iter()
                .find(|c| ip.is_some() && publishing(c, true))
                .or_else(|| listing.iter().find(|c| publishing(c, false)))
        }
    }?;
    Some(describe(found))
}

fn describe(listed: &Listed) -> Container {
    let label = |key: &str| {
        listed
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let name = listed
        .names
        .first()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| short(&listed.id).to_string());
    Container {
        id: short(&listed.id).to_string(),
        name,
        image: listed.image.clone(),
        compose_project: label(PROJECT_LABEL),
        compose_service: label(SERVICE_LABEL),
    }
}

/// Docker's short id: the first 12 hex digits.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The last listing asked for, and from where.
struct Cached {
    endpoints: Vec<PathBuf>,
    at: Instant,
    /// `None` when no engine answered.
    listing: Option<Vec<Listed>>,
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The container `want` names, from the cached listing or a fresh one.
/// The lock is held across the request, so concurrent lookups wait for one
/// request rather than each sending their own.
fn lookup(want: &Want) -> Option<Container> {
    let endpoints = endpoints();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cached) = cache.as_ref().filter(|c| c.endpoints == endpoints) {
        let age = cached.at.elapsed();
        if age < FRESH {
            let found = cached.listing.as_deref().and_then(|l| find(l, want));
            if found.is_some() || cached.listing.is_none() || age < MISS_REFETCH_AFTER {
                return found;
            }
        }
    }
    let listing = endpoints.iter().find_map(|path| match list(path) {
        Ok(listing) => Some(listing),
        Err(e) => {
            tracing::debug!(socket = %path.display(), error = %e, "no Docker Engine answered");
            None
        }
    });
    let found = listing.as_deref().and_then(|l| find(l, want));
    *cache = Some(Cached {
        endpoints,
        at: Instant::now(),
        listing,
    });
    found
}

/// Where to ask, in order: `DOCKER_HOST` alone when it is set (only
/// `unix://` is spoken: a TCP engine is another host's or needs TLS), else
/// the system socket, then rootless Docker's.
fn endpoints() -> Vec<PathBuf> {
    endpoints_from(
        std::env::var("DOCKER_HOST").ok().as_deref(),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
    )
}

fn endpoints_from(docker_host: Option<&str>, runtime_dir: Option<PathBuf>) -> Vec<PathBuf> {
    match docker_host.filter(|h| !h.is_empty()) {
        Some(host) => host
            .strip_prefix("unix://")
            .map(PathBuf::from)
            .into_iter()
            .collect(),
        None => std::iter::once(PathBuf::from("/var/run/docker.sock"))
            .chain(runtime_dir.map(|d| d.join("docker.sock")))
            .collect(),
    }
}

/// `GET /containers/json` (running containers) from the engine on `socket`.
fn list(socket: &Path) -> io::Result<Vec<Listed>> {
    let deadline = Instant::now() + DEADLINE;
    let mut stream = UnixStream::connect(socket)?;
    stream.set_write_timeout(Some(DEADLINE))?;
    // HTTP/1.0: the engine closes the connection after the answer and
    // never chunks it, so the body is everything after the head.
    stream.write_all(b"GET /containers/json HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf)? {
            0 => break,
            n if answer.len() + n > MAX_ANSWER => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "answer too large",
                ));
            }
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    parse_answer(&answer)
}

/// The listing in a whole HTTP answer; anything but a 200 with a JSON
/// array is an error.
fn parse_answer(answer: &[u8]) -> io::Result<Vec<Listed>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = std::str::from_utf8(&answer[..head_end]).map_err(|_| invalid("head not UTF-8"))?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        return Err(invalid(&format!("status {status}")));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err(invalid("chunked answer to an HTTP/1.0 request"));
    }
    serde_json::from_slice(&answer[head_end + 4..]).map_err(|e| invalid(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "2d4e85a86c16066e5ff15c294b64139b1c2071736753634882cc226c57913297";

    fn listing() -> Vec<Listed> {
        let body = format!(
            r#"[{{"Id":"{ID}","Names":["/shop-web-1"],"Image":"busybox:local",
                "Ports":[{{"IP":"127.0.0.1","PrivatePort":80,"PublicPort":28080,"Type":"tcp"}},
                         {{"PrivatePort":53,"Type":"udp"}}],
                "Labels":{{"com.docker.compose.project":"shop","com.docker.compose.service":"web"}}}},
               {{"Id":"{}","Names":["/plain"],"Image":"sha256:abc","Ports":[
                {{"IP":"127.0.0.2","PrivatePort":80,"PublicPort":28080,"Type":"tcp"}},
                {{"IP":"0.0.0.0","PrivatePort":81,"PublicPort":28081,"Type":"udp"}}],"Labels":{{}}}}]"#,
            "f".repeat(64)
        );
        let answer = format!(
            "HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\r\n{body}"
        );
        parse_answer(answer.as_bytes()).unwrap()
    }

    #[test]
    fn a_published_port_names_its_container_and_compose_labels() {
        let ip = "127.0.0.1".parse().ok();
        let web = find(&listing(), &Want::Port(28080, ip)).unwrap();
        assert_eq!(
            web,
            Container {
                id: ID[..12].to_string(),
                name: "shop-web-1".into(),
                image: "busybox:local".into(),
                compose_project: Some("shop".into()),
                compose_service: Some("web".into()),
            }
        );
        assert_eq!(web.stop_command(), "docker compose -p shop stop web");
        // The same port on another address is the other container's.
        let plain = find(&listing(), &Want::Port(28080, "127.0.0.2".parse().ok())).unwrap();
        assert_eq!(plain.name, "plain");
        assert_eq!(plain.compose_project, None);
        assert_eq!(plain.stop_command(), "docker stop plain");
        // UDP is not a TCP holder's; an unpublished port is nobody's.
        assert_eq!(find(&listing(), &Want::Port(28081, None)), None);
        assert_eq!(find(&listing(), &Want::Port(53, None)), None);
    }

    #[test]
    fn a_container_is_found_by_its_full_id() {
        let found = find(&listing(), &Want::Id(ID.to_string())).unwrap();
        assert_eq!(found.name, "shop-web-1");
        assert_eq!(find(&listing(), &Want::Id("0".repeat(64))), None);
    }

    #[test]
    fn answers_that_are_not_a_listing_are_errors() {
        assert!(parse_answer(b"HTTP/1.0 404 Not Found\r\n\r\n{}").is_err());
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\n\r\n{\"message\":\"x\"}").is_err());
        assert!(
            parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]").is_err()
        );
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\n").is_err());
        assert_eq!(parse_answer(b"HTTP/1.0 200 OK\r\n\r\n[]").unwrap(), []);
    }

    #[test]
    fn docker_host_alone_is_asked_when_set() {
        let run = Some(PathBuf::from("/run/user/1000"));
        assert_eq!(
            endpoints_from(Some("unix:///tmp/d.sock"), run.clone()),
            [PathBuf::from("/tmp/d.sock")]
        );
        assert!(endpoints_from(Some("tcp://10.0.0.1:2376"), run.clone()).is_empty());
        assert_eq!(
            endpoints_from(None, run),
            [
                PathBuf::from("/var/run/docker.sock"),
                PathBuf::from("/run/user/1000/docker.sock")
            ]
        );
        assert_eq!(
            endpoints_from(Some(""), None),
            [PathBuf::from("/var/run/docker.sock")]
        );
    }

    #[test]
    fn container_cgroups_name_the_container_in_either_driver() {
        let cgroupfs = format!("12:memory:/docker/{ID}\n0::/docker/{ID}\n");
        assert_eq!(container_id_in_cgroup(&cgroupfs).as_deref(), Some(ID));
        let systemd = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container_id_in_cgroup(&systemd).as_deref(), Some(ID));
        let rootless = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker.service/docker/{ID}\n"
        );
        assert_eq!(container_id_in_cgroup(&rootless).as_deref(), Some(ID));
        // dockerd itself, and ordinary processes, are in no container.
        assert_eq!(
            container_id_in_cgroup("0::/system.slice/docker.service\n"),
            None
        );
        assert_eq!(container_id_in_cgroup("0::/init.scope\n"), None);
        assert_eq!(container_id_in_cgroup("0::/docker/abc\n"), None);
    }

    #[test]
    fn docker_proxy_says_which_address_it_serves() {
        let args: Vec<String> =
            "/usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 28080"
                .split(' ')
                .map(String::from)
                .collect();
        assert_eq!(host_ip(&args), "127.0.0.1".parse().ok());
        assert_eq!(host_ip(&args[..3]), None);
    }

    #[test]
    fn a_forwarder_without_a_known_container_is_still_refused() {
        let holder = Holder {
            pid: Some(7),
            ppid: Some(1),
            uid: 0,
            user: None,
            cmdline: vec!["docker-proxy".into()],
            start_time: None,
            lease_id: None,
            kind: HolderKind::DockerProxy,
            suspect: false,
            container: None,
        };
        assert!(kill_refusal(&holder).unwrap().contains("docker ps"));
        let container = find(&listing(), &Want::Id(ID.into()));
        let with = Holder {
            container,
            ..holder.clone()
        };
        assert!(
            kill_refusal(&with)
                .unwrap()
                .ends_with("`docker compose -p shop stop web`"),
            "{:?}",
            kill_refusal(&with)
        );
        let process = Holder {
            kind: HolderKind::Process,
            ..holder
        };
        assert_eq!(kill_refusal(&process), None);
    }
}
