//! Owner death, as it happens: one pidfd per owner process.
//!
//! A pidfd (opened through `pidfd`) becomes readable when its process exits,
//! so the daemon learns of an owner's death from epoll, not from a poll
//! loop; each death goes out once on a channel that `maintain` turns into
//! ended leases. Each owner gets one pidfd however many leases it holds.
//! Where pidfds are unavailable (old kernels, fd exhaustion), or beyond the
//! budget that keeps descriptors free for connections, `maintain`'s tick
//! checks the owners that have none.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::lease::OwnerId;
use crate::owner::owner_is_alive_now;
use crate::pidfd;

/// How a request to watch an owner turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// A pidfd now watches it (or already did).
    Watching,
    /// It is already gone (or its pid now names another process).
    Dead,
    /// No pidfd could be had; the slow poll will notice its death.
    Polled,
}

/// Descriptors kept free for everything but pidfds and connections:
/// SQLite's files, the listener, epoll, probe sockets and /proc reads.
const RESERVED_FDS: u64 = 128;

/// How many pidfds the daemon may hold at once: its open-file limit less
/// the `connections` the server may hold at once and [`RESERVED_FDS`], and
/// at least a quarter of the limit. Past it, owners are polled: a pidfd
/// for every owner would leave no descriptor to accept a connection, open
/// a probe socket or read /proc with.
pub fn pidfd_budget(connections: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(
        soft.saturating_sub(connections as u64 + RESERVED_FDS)
            .max(soft / 4),
    )
    .unwrap_or(usize::MAX)
}

/// Watches owners and reports each death once on a channel.
pub struct Watcher {
    watched: Mutex<HashMap<OwnerId, AbortHandle>>,
    deaths: mpsc::UnboundedSender<OwnerId>,
    /// Most pidfds held at once; owners beyond it are polled.
    max_pidfds: usize,
    /// The budget was full at the last watch (logged once per episode).
    full: AtomicBool,
}

impl Watcher {
    /// A watcher that holds at most `max_pidfds` pidfds ([`pidfd_budget`]),
    /// and the channel on which it reports deaths.
    pub fn new(max_pidfds: usize) -> (Arc<Watcher>, mpsc::UnboundedReceiver<OwnerId>) {
        let (deaths, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Watcher {
                watched: Mutex::new(HashMap::new()),
                deaths,
                max_pidfds,
                full: AtomicBool::new(false),
            }),
            rx,
        )
    }

    /// Starts watching `owner` unless it is watched already. Must run inside
    /// the tokio runtime.
    pub fn watch(self: &Arc<Self>, owner: OwnerId) -> Watch {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if watched.contains_key(&owner) {
            return Watch::Watching;
        }
        if watched.len() >= self.max_pidfds {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    pidfds = self.max_pidfds,
                    "pidfd budget reached; further owners are polled"
                );
            }
            return Watch::Polled;
        }
        self.full.store(false, Ordering::Relaxed);
        let fd = match pidfd::open(owner.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Watch::Dead,
            Err(e) => {
                tracing::warn!(pid = owner.pid, error = %e, "no pidfd for owner; falling back to polling");
                return Watch::Polled;
            }
        };
        // The pid may have been reused between our reading of it and the
        // open: the pidfd is only ours if the process behind it is the owner.
        if !owner_is_alive_now(owner) {
            return Watch::Dead;
        }
        // SAFETY: tokio asks that the fd stay open, and be the one
        // `as_raw_fd` returns, for as long as the AsyncFd holds it. An
        // OwnedFd moved into the AsyncFd does both: nothing else owns it, it
        // closes only when dropped with the AsyncFd, and its fd never
        // changes. (The safe `with_interest` is deprecated in tokio 1.54 as
        // unsound for inner types without that guarantee.)
        let registered =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
        let fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(pid = owner.pid, error = %e, "cannot poll pidfd; falling back to polling");
                return Watch::Polled;
            }
        };
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let exited = fd.readable().await.is_ok();
            tracing::debug!(pid = owner.pid, fd = fd.as_raw_fd(), exited, "owner exited");
            this.forget(owner);
            let _ = this.deaths.send(owner);
        });
        watched.insert(owner, task.abort_handle());
        Watch::Watching
    }

    fn forget(&self, owner: OwnerId) {
        self.watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&owner);
    }

    /// True while `owner` has a pidfd whose exit has not been seen yet.
    pub fn is_watched(&self, owner: OwnerId) -> bool {
        self.watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&owner)
    }

    /// How many owners have a pidfd open.
    pub fn count(&self) -> usize {
        self.watched.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stops every watch (at shutdown).
    pub fn stop_all(&self) {
        for (_, task) in self
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            task.abort();
        }
    }
}

/// Raises the soft limit on open files to the hard limit: one pidfd per
/// owner adds up on a busy machine.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    use crate::procs::read_stat;

    #[tokio::test]
    async fn a_child_exit_is_reported_once() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let owner = OwnerId {
            pid,
            start_ticks: read_stat(pid).unwrap().start_ticks,
        };
        let (watcher, mut deaths) = Watcher::new(16);
        assert_eq!(watcher.watch(owner), Watch::Watching);
        assert_eq!(watcher.watch(owner), Watch::Watching);
        assert_eq!(watcher.count(), 1);
        child.kill().unwrap();
        let died = tokio::time::timeout(Duration::from_secs(10), deaths.recv())
            .await
            .unwrap();
        assert_eq!(died, Some(owner));
        child.wait().unwrap();
        assert_eq!(watcher.count(), 0);
    }

    #[tokio::test]
    async fn owners_beyond_the_budget_are_polled() {
        let mut children: Vec<_> = (0..3)
            .map(|_| Command::new("sleep").arg("30").spawn().unwrap())
            .collect();
        let owners: Vec<OwnerId> = children
            .iter()
            .map(|c| OwnerId {
                pid: c.id(),
                start_ticks: read_stat(c.id()).unwrap().start_ticks,
            })
            .collect();
        let (watcher, mut deaths) = Watcher::new(2);
        assert_eq!(watcher.watch(owners[0]), Watch::Watching);
        assert_eq!(watcher.watch(owners[1]), Watch::Watching);
        assert_eq!(watcher.watch(owners[2]), Watch::Polled);
        assert_eq!(watcher.count(), 2);
        // A death frees a pidfd for the next owner.
        children[0].kill().unwrap();
        let died = tokio::time::timeout(Duration::from_secs(10), deaths.recv())
            .await
            .unwrap();
        assert_eq!(died, Some(owners[0]));
        assert_eq!(watcher.watch(owners[2]), Watch::Watching);
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[test]
    fn the_budget_leaves_room_for_connections() {
        let connections = 512;
        let budget = pidfd_budget(connections) as u64;
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .unwrap()
            .0;
        let room = connections as u64 + RESERVED_FDS;
        assert!(budget >= soft / 4 && (budget + room <= soft || budget == soft / 4));
    }

    #[tokio::test]
    async fn a_reused_pid_is_not_the_owner() {
        let me = read_stat(std::process::id()).unwrap();
        let (watcher, _deaths) = Watcher::new(16);
        let impostor = OwnerId {
            pid: me.pid,
            start_ticks: me.start_ticks + 1,
        };
        assert_eq!(watcher.watch(impostor), Watch::Dead);
        assert_eq!(watcher.count(), 0);
    }
}
