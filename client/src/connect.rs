//! Reaching the daemon's socket: its directory must be private, and the
//! process that answers must run as us or as root. Both `Client` and the
//! autostart's health check connect through here.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use portd_api::paths::{check_private_dir, parent_dir};

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing listens there (no directory, no socket, refused).
    Absent,
    /// Something is there that we must not talk to.
    Untrusted(String),
    /// The socket's directory is not private (loose mode, another owner, a
    /// symlink): the settings need fixing.
    Config(String),
    Io(io::Error),
}

/// Connects to `socket` after checking its directory, then checks the peer:
/// our own uid or root.
pub fn connect(socket: &Path) -> Result<UnixStream, ConnectError> {
    let uid = nix::unistd::geteuid().as_raw();
    let dir = parent_dir(socket);
    if !dir.exists() {
        return Err(ConnectError::Absent);
    }
    check_private_dir(dir, uid)
        .map_err(|why| ConnectError::Config(format!("refusing the socket's directory: {why}")))?;
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ConnectError::Absent,
        _ => ConnectError::Io(e),
    })?;
    let peer = getsockopt(&stream, PeerCredentials).map_err(|e| ConnectError::Io(e.into()))?;
    if peer.uid() != uid && peer.uid() != 0 {
        return Err(ConnectError::Untrusted(format!(
            "the daemon on {} runs as uid {}, not as uid {uid}; refusing to talk to it",
            socket.display(),
            peer.uid()
        )));
    }
    Ok(stream)
}
