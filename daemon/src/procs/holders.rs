//! Port -> processes: who listens on a TCP port.
//!
//! Listening sockets only (a browser connected to the port is not a holder).
//! The socket's inode and uid come from the kernel's sock_diag interface
//! (`sockdiag`), or from /proc/net/tcp and tcp6 where netlink is not
//! available; the inode is mapped to processes by scanning /proc/*/fd,
//! starting with the processes of the socket's uid. A process whose fd
//! directory we may not read is skipped; a socket nobody visible holds is
//! reported with `pid: None`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use portd_api::{Holder, HolderKind};

use super::listener::ListenSocket;
use super::{ProcStat, boot_time, cmdline, read_stat, ticks_to_unix, user_name};

const TCP_LISTEN: &str = "0A";

/// Listening sockets on `port` (on any port if `None`) in the text of
/// /proc/net/tcp or tcp6.
pub fn parse_net_tcp(text: &str, port: Option<u16>) -> Vec<ListenSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            let local_port = u16::from_str_radix(local_port, 16).ok()?;
            if port.is_some_and(|p| p != local_port) || *fields.get(3)? != TCP_LISTEN {
                return None;
            }
            Some(ListenSocket {
                port: local_port,
                uid: fields.get(7)?.parse().ok()?,
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .filter(|s| s.inode != 0)
        .collect()
}

/// Listening TCP sockets (IPv4 and IPv6) on `port` (on every port if
/// `None`): from sock_diag, or from /proc/net/tcp{,6} where netlink is not
/// available.
pub fn listening_sockets(port: Option<u16>) -> Vec<ListenSocket> {
    let mut sockets = super::sockdiag::listening_sockets(port).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "sock_diag unavailable; reading /proc/net/tcp");
        proc_net_listeners(port)
    });
    sockets.sort_by_key(|s| s.inode);
    sockets.dedup();
    sockets
}

fn proc_net_listeners(port: Option<u16>) -> Vec<ListenSocket> {
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            sockets.extend(parse_net_tcp(&text, port));
        }
    }
    sockets
}

/// Maps socket inodes to the pids that hold them open, reading /proc/*/fd.
/// Processes owned by `first_uids` are scanned first; the scan stops once
/// every inode has at least one holder and the rest of that uid is done.
fn pids_holding(inodes: &HashSet<u64>, first_uids: &HashSet<u32>) -> HashMap<u64, Vec<u32>> {
    let mut found: HashMap<u64, Vec<u32>> = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    let mut preferred = Vec::new();
    let mut others = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        match entry.metadata() {
            Ok(meta) if first_uids.contains(&meta.uid()) => preferred.push(pid),
            _ => others.push(pid),
        }
    }
    for (pass, pids) in [preferred, others].into_iter().enumerate() {
        if pass == 1 && inodes.iter().all(|i| found.contains_key(i)) {
            break;
        }
        for pid in pids {
            for inode in socket_inodes_of(pid) {
                if inodes.contains(&inode) {
                    let pids = found.entry(inode).or_default();
                    if !pids.contains(&pid) {
                        pids.push(pid);
                    }
                }
            }
        }
    }
    found
}

/// Inodes of the sockets a process has open; empty if its fds are unreadable.
fn socket_inodes_of(pid: u32) -> Vec<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| socket_inode(&target))
        .collect()
}

fn socket_inode(target: &Path) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Pids of the processes that hold a listening socket on `port`.
pub fn listening_pids(port: u16) -> HashSet<u32> {
    let sockets = listening_sockets(Some(port));
    if sockets.is_empty() {
        return HashSet::new();
    }
    let inodes: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let uids: HashSet<u32> = sockets.iter().map(|s| s.uid).collect();
    pids_holding(&inodes, &uids)
        .into_values()
        .flatten()
        .collect()
}

/// The TCP ports each of `pids` listens on, lowest first; pids that listen
/// on nothing (or whose fds are unreadable) are left out.
pub fn listening_ports_of(pids: &HashSet<u32>) -> HashMap<u32, Vec<u16>> {
    let port_of: HashMap<u64, u16> = listening_sockets(None)
        .into_iter()
        .map(|s| (s.inode, s.port))
        .collect();
    let mut found = HashMap::new();
    for &pid in pids {
        let mut ports: Vec<u16> = socket_inodes_of(pid)
            .iter()
            .filter_map(|inode| port_of.get(inode).copied())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        if !ports.is_empty() {
            found.insert(pid, ports);
        }
    }
    found
}

/// A holder and the start time it was seen with, in clock ticks after boot
/// (exact, unlike the Unix seconds of [`Holder::start_time`]): what a signal
/// must find again before it is sent.
#[derive(Debug, Clone)]
pub struct Seen {
    pub holder: Holder,
    pub start_ticks: Option<u64>,
}

/// Everything listening on `port`, one entry per process (a socket shared by
/// a forked server and its workers yields each of them). `lease_id` and
/// `suspect` are left for the caller, who knows the leases.
pub fn holders(port: u16) -> Vec<Holder> {
    seen_holders(port).into_iter().map(|s| s.holder).collect()
}

/// [`holders`], each with the start time it was seen with.
pub fn seen_holders(port: u16) -> Vec<Seen> {
    let sockets = listening_sockets(Some(port));
    if sockets.is_empty() {
        return Vec::new();
    }
    let inodes: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let uids: HashSet<u32> = sockets.iter().map(|s| s.uid).collect();
    let by_inode = pids_holding(&inodes, &uids);
    let btime = boot_time().unwrap_or(0);
    let mut seen = HashSet::new();
    let mut holders = Vec::new();
    for socket in &sockets {
        match by_inode.get(&socket.inode) {
            Some(pids) => {
                for &pid in pids {
                    if seen.insert(pid) {
                        holders.push(describe(pid, socket.uid, btime));
                    }
                }
            }
            None => holders.push(Seen {
                holder: Holder {
                    pid: None,
                    ppid: None,
                    uid: socket.uid,
                    user: user_name(socket.uid),
                    cmdline: Vec::new(),
                    start_time: None,
                    lease_id: None,
                    kind: HolderKind::Process,
                    suspect: false,
                    container: None,
                },
                start_ticks: None,
            }),
        }
    }
    super::containers::annotate(port, holders.iter_mut().map(|s| &mut s.holder));
    holders
}

fn describe(pid: u32, socket_uid: u32, btime: u64) -> Seen {
    let stat: Option<ProcStat> = read_stat(pid).ok();
    let uid = fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid())
        .unwrap_or(socket_uid);
    let cmdline = cmdline(pid);
    let exe = super::exe(pid);
    let holder = Holder {
        pid: Some(pid),
        ppid: stat.map(|s| s.ppid),
        uid,
        user: user_name(uid),
        kind: holder_kind(exe.as_deref(), &cmdline),
        cmdline,
        start_time: stat.map(|s| ticks_to_unix(btime, s.start_ticks)),
        lease_id: None,
        suspect: false,
        container: None,
    };
    Seen {
        holder,
        start_ticks: stat.map(|s| s.start_ticks),
    }
}

/// Containers' port forwarders and systemd managers hold sockets on behalf of others;
/// they are labelled so that nothing signals them by accident.
pub fn holder_kind(exe: Option<&Path>, cmdline: &[String]) -> HolderKind {
    let name = exe
        .and_then(|e| e.file_name())
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .or_else(|| {
            cmdline
                .first()
                .map(|c| c.rsplit('/').next().unwrap_or(c).to_string())
        })
        .unwrap_or_default();
    match name.as_str() {
        name if super::containers::is_forwarder(name) => HolderKind::DockerProxy,
        "systemd" => HolderKind::Systemd,
        _ => HolderKind::Process,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portd_e2e::wait_until;

    /// How long a forked copy of a listener may outlive the original.
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 123457 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn only_listening_sockets_on_the_port_count() {
        assert_eq!(
            parse_net_tcp(TCP, Some(8000)),
            [ListenSocket {
                port: 8000,
                inode: 123456,
                uid: 1000
            }]
        );
        let on_8001 = ListenSocket {
            port: 8001,
            inode: 999,
            uid: 0,
        };
        assert_eq!(parse_net_tcp(TCP, Some(8001)), [on_8001]);
        assert!(parse_net_tcp(TCP, Some(8002)).is_empty());
        // Every port: the two listeners, never the connection.
        assert_eq!(parse_net_tcp(TCP, None).len(), 2);
    }

    #[test]
    fn socket_links_name_their_inode() {
        assert_eq!(socket_inode(Path::new("socket:[123]")), Some(123));
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
        assert_eq!(socket_inode(Path::new("pipe:[5]")), None);
    }

    #[test]
    fn docker_proxy_and_systemd_are_labelled() {
        assert_eq!(
            holder_kind(Some(Path::new("/usr/bin/docker-proxy")), &[]),
            HolderKind::DockerProxy
        );
        assert_eq!(
            holder_kind(Some(Path::new("/usr/lib/systemd/systemd")), &[]),
            HolderKind::Systemd
        );
        assert_eq!(
            holder_kind(None, &["/lib/systemd/systemd".into(), "--user".into()]),
            HolderKind::Systemd
        );
        assert_eq!(
            holder_kind(Some(Path::new("/usr/bin/python3")), &[]),
            HolderKind::Process
        );
    }

    #[test]
    fn finds_a_listener_of_this_process() {
        // Hold the port number on IPv6 too, so that no other test in this
        // process can listen on it meanwhile and blur the answer.
        let (v4, v6) = loop {
            let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = v4.local_addr().unwrap().port();
            match std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, port)) {
                Ok(v6) => break (v4, Some(v6)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(_) => break (v4, None),
            }
        };
        let port = v4.local_addr().unwrap().port();
        // A child another test forks in this moment holds a copy of every
        // fd until it execs: it holds the port too, briefly.
        let me = Some(std::process::id());
        let only_us = wait_until(DEADLINE, || {
            let found = holders(port);
            found.len() == 1 && found[0].pid == me
        });
        assert!(
            only_us,
            "one process, however many sockets: {:?}",
            holders(port)
        );
        drop((v4, v6));
        let gone = wait_until(DEADLINE, || holders(port).is_empty());
        assert!(gone, "{:?}", holders(port));
    }
}
