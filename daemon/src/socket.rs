//! Claiming the socket path: the private directory, the lock held for the
//! daemon's whole life, stale-socket replacement (only a socket nobody
//! answers on; never a file, directory or symlink someone put there), and
//! socket activation (the socket systemd passes as fd 3, and the proxy's
//! loopback sockets after it, taken through listenfd), and what both
//! listeners do when an accept fails.
//!
//! Many clients may autostart a daemon at once; the flock decides which one
//! binds. A second daemon finds the lock taken (or a live socket) and exits
//! with "already running (pid N)".

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use portd_api::paths::{check_private_dir, create_private_dir, lock_path, parent_dir};

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
    #[error(
        "{0} is {1}, not a socket; portd replaces only a stale socket of its own: \
         pass another --socket (or PORTD_SOCKET), or move it away"
    )]
    NotASocket(PathBuf, &'static str),
    #[error("{0}")]
    Refused(std::io::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(
        "LISTEN_PID and LISTEN_FDS say systemd passed a listening socket as fd 3, \
         but {0}: give portd.socket a Unix path in ListenStream=, or unset both \
         variables to let portd bind its own socket"
    )]
    Activation(std::io::Error),
    #[error(
        "systemd passed {0} sockets and socket {1} is not a TCP listener ({2}): after the \
         Unix socket, portd.socket may list only the proxy's ListenStream=127.0.0.1:PORT \
         and ListenStream=[::1]:PORT; run `portctl install` again to rewrite the units"
    )]
    ProxyActivation(usize, usize, std::io::Error),
}

/// What systemd passed: the API's Unix socket (fd 3) and the proxy's TCP
/// listeners (fd 4 on), in the order portd.socket lists them.
pub struct Activated {
    pub listener: UnixListener,
    pub proxy: Vec<TcpListener>,
}

/// The bound socket and the lock that makes it ours.
pub struct Claimed {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Device and inode of the socket file we bound: at exit the path is
    /// removed only while it still names that file.
    bound: (u64, u64),
    lock: Flock<File>,
}

impl Claimed {
    /// Removes the socket file if it is still ours (something else may have
    /// taken the path meanwhile); the lock goes when `self` drops.
    pub fn remove(self) {
        if file_id(&self.path).ok() == Some(self.bound) {
            let _ = fs::remove_file(&self.path);
        }
        let _ = self.lock.set_len(0);
    }
}

fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    fs::symlink_metadata(path).map(|meta| (meta.dev(), meta.ino()))
}

/// Claims `path` for this daemon: checks its directory, takes the lock,
/// replaces a stale socket (and nothing else), binds with mode 0600.
pub fn claim(path: &Path) -> Result<Claimed, SocketError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(SocketError::PathTooLong(path.to_path_buf(), len));
    }
    let dir = parent_dir(path);
    let uid = nix::unistd::geteuid().as_raw();
    if !dir.exists() {
        create_private_dir(dir).map_err(|e| SocketError::Io(dir.to_path_buf(), e))?;
    }
    check_private_dir(dir, uid).map_err(SocketError::Directory)?;

    let lock_file = lock_path(path);
    let lock = lockfile::acquire(&lock_file).map_err(|e| match e {
        LockError::Held(pid) => SocketError::AlreadyRunning(pid),
        LockError::Io(path, e) => SocketError::Io(path, e),
        LockError::Refused(e) => SocketError::Refused(e),
    })?;

    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path).map_err(|e| SocketError::Io(path.to_path_buf(), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| SocketError::Io(path.to_path_buf(), e))?;
    let bound = file_id(path).map_err(|e| SocketError::Io(path.to_path_buf(), e))?;

    Ok(Claimed {
        listener,
        path: path.to_path_buf(),
        bound,
        lock,
    })
}

/// Removes what is at `path` only if `lstat` says it is a socket and
/// connecting to it is refused (its daemon is gone). A live socket means
/// another daemon; anything else (a file, a directory, a symlink) is
/// someone's and is refused.
fn remove_stale_socket(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SocketError::Io(path.to_path_buf(), e)),
    };
    let kind = meta.file_type();
    if !kind.is_socket() {
        let what = if kind.is_symlink() {
            "a symlink"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "a special file"
        };
        return Err(SocketError::NotASocket(path.to_path_buf(), what));
    }
    match UnixStream::connect(path) {
        // A daemon we do not know of (one started without the lock).
        Ok(_) => Err(SocketError::AlreadyRunning("unknown".into())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|e| SocketError::Io(path.to_path_buf(), e))
        }
        Err(e) => Err(SocketError::Io(path.to_path_buf(), e)),
    }
}

/// After a failed accept: logs it and gives the fd table a moment to drain
/// (EMFILE and friends) before the next one.
pub async fn accept_failed(what: &str, error: &std::io::Error) {
    tracing::warn!(error = %error, "{what} accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// The listening sockets systemd passed us, if any: fd 3, when LISTEN_PID
/// is our pid and LISTEN_FDS at least 1 (variables meant for another
/// process are not ours), and the proxy's TCP sockets after it. listenfd
/// checks that fd 3 is a Unix stream socket and the rest TCP sockets before
/// it takes them, and marks them close-on-exec. The sockets are told apart
/// by their type, not by LISTEN_FDNAMES: one socket unit gives all its
/// sockets one name.
///
/// listenfd also removes LISTEN_PID and LISTEN_FDS from the environment, so
/// this must run before any other thread starts (`main` calls it before it
/// builds the runtime). Nothing depends on the removal: portd starts no
/// processes that could take the variables for theirs.
pub fn activated() -> Result<Option<Activated>, SocketError> {
    let pid = std::env::var("LISTEN_PID").ok();
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(None);
    }
    let mut fds = listenfd::ListenFd::from_env();
    let Some(listener) = fds.take_unix_listener(0).map_err(SocketError::Activation)? else {
        return Ok(None);
    };
    let passed = fds.len();
    let mut proxy = Vec::new();
    for index in 1..passed {
        match fds.take_tcp_listener(index) {
            Ok(Some(socket)) => proxy.push(socket),
            Ok(None) => {}
            Err(e) => return Err(SocketError::ProxyActivation(passed, index + 1, e)),
        }
    }
    Ok(Some(Activated { listener, proxy }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn a_socket_nobody_answers_on_is_replaced() {
        let dir = private_dir();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a closed listener leaves its file");
        let claimed = claim(&path).expect("the stale socket is replaced");
        assert!(UnixStream::connect(&path).is_ok(), "ours now answers");
        claimed.remove();
        assert!(!path.exists(), "our own socket goes at exit");
    }

    #[test]
    fn at_exit_a_path_that_is_no_longer_our_socket_is_left_alone() {
        let dir = private_dir();
        let path = dir.path().join("s.sock");
        let claimed = claim(&path).unwrap();
        // Another program took the path meanwhile (systemd binding its own
        // socket there, say).
        fs::remove_file(&path).unwrap();
        let theirs = UnixListener::bind(&path).unwrap();
        claimed.remove();
        let meta = fs::symlink_metadata(&path).expect("their socket is still there");
        assert!(meta.file_type().is_socket());
        drop(theirs);
    }
}
