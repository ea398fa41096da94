//! Claiming the socket path: the private directory, the lock held for the
//! daemon's whole life, stale-socket replacement, and socket activation.
//!
//! Many clients may autostart a daemon at once; the flock decides which one
//! binds. A second daemon finds the lock taken (or a live socket) and exits
//! with "already running (pid N)".

use std::fs::{self, File};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use portd_api::paths::{check_private_dir, lock_path};

use crate::lockfile::{self, LockError};

/// Longest socket path `sun_path` holds, without its terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("portd is already running (pid {0})")]
    AlreadyRunning(String),
    #[error("socket path {0} is {1} bytes; the limit is {MAX_SOCKET_PATH}")]
    PathTooLong(PathBuf, usize),
    #[error("socket directory: {0}")]
    Directory(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// The bound socket and the lock that makes it ours.
pub struct Claimed {
    pub listener: UnixListener,
    pub path: PathBuf,
    lock: Flock<File>,
}

impl Claimed {
    /// Removes the socket file; the lock goes when `self` drops.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
        let _ = self.lock.set_len(0);
    }
}

/// Claims `path` for this daemon: checks its directory, takes the lock,
/// replaces a stale socket, binds with mode 0600.
pub fn claim(path: &Path) -> Result<Claimed, SocketError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(SocketError::PathTooLong(path.to_path_buf(), len));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let uid = nix::unistd::geteuid().as_raw();
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| SocketError::Io(dir.to_path_buf(), e))?;
    }
    check_private_dir(dir, uid).map_err(SocketError::Directory)?;

    let lock_file = lock_path(path);
    let lock = lockfile::acquire(&lock_file).map_err(|e| match e {
        LockError::Held(pid) => SocketError::AlreadyRunning(pid),
        LockError::Io(path, e) => SocketError::Io(path, e),
    })?;

    if fs::symlink_metadata(path).is_ok() {
        if UnixStream::connect(path).is_ok() {
            // A daemon we do not know of (one started without the lock).
            return Err(SocketError::AlreadyRunning("unknown".into()));
        }
        fs::remove_file(path).map_err(|e| SocketError::Io(path.to_path_buf(), e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| SocketError::Io(path.to_path_buf(), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| SocketError::Io(path.to_path_buf(), e))?;

    Ok(Claimed {
        listener,
        path: path.to_path_buf(),
        lock,
    })
}

/// The listening socket systemd passed us (LISTEN_FDS/LISTEN_PID), if any.
pub fn activated() -> Option<UnixListener> {
    const FIRST_FD: RawFd = 3;
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let count: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || count < 1 {
        return None;
    }
    // Our children must not think the socket is theirs.
    // SAFETY: called at start-up before any thread reads the environment.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    // SAFETY: systemd passes fd 3 open and owned by us when LISTEN_PID is ours.
    Some(unsafe { UnixListener::from_raw_fd(FIRST_FD) })
}
