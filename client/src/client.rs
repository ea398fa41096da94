//! `Client`: talks to the daemon over its Unix socket, after checking that
//! the socket and the daemon behind it can be trusted, and starts the
//! daemon when nothing answers.

use std::cell::Cell;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use portd_api::paths::{check_private_dir, parent_dir};
use portd_api::{ErrorBody, VERSION, VERSION_HEADER};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::autostart;
use crate::error::ClientError;
use crate::transport::{Response, exchange};

/// Set to `1` to never start the daemon from the client.
pub const NO_AUTOSTART_ENV: &str = "PORTD_NO_AUTOSTART";

pub struct Client {
    socket: PathBuf,
    autostart: bool,
    warned: Cell<bool>,
}

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

impl Client {
    /// A client for the daemon on `socket`; autostart unless
    /// `PORTD_NO_AUTOSTART=1`.
    pub fn new(socket: PathBuf) -> Client {
        let autostart = std::env::var(NO_AUTOSTART_ENV).map_or(true, |v| v != "1");
        Client {
            socket,
            autostart,
            warned: Cell::new(false),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request; starts the daemon first if nothing answers.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let stream = match connect(&self.socket) {
            Ok(stream) => stream,
            Err(ConnectError::Absent) if self.autostart => {
                autostart::start(&self.socket)?;
                connect(&self.socket).map_err(|e| self.connect_error(e))?
            }
            Err(e) => return Err(self.connect_error(e)),
        };
        let response = exchange(stream, method, path, body).map_err(|e| {
            ClientError::Other(format!(
                "talking to portd on {}: {e}",
                self.socket.display()
            ))
        })?;
        self.warn_on_version(&response);
        Ok(response)
    }

    fn connect_error(&self, error: ConnectError) -> ClientError {
        match error {
            ConnectError::Absent => ClientError::Unreachable(format!(
                "portd is not running (socket {}); start it with `portd`, or unset {NO_AUTOSTART_ENV}",
                self.socket.display()
            )),
            ConnectError::Untrusted(message) => ClientError::Unreachable(message),
            ConnectError::Config(message) => ClientError::Config(message),
            ConnectError::Io(e) => ClientError::Unreachable(format!(
                "cannot reach portd on {}: {e}",
                self.socket.display()
            )),
        }
    }

    fn warn_on_version(&self, response: &Response) {
        if let Some(theirs) = response.header(VERSION_HEADER) {
            if theirs != VERSION && !self.warned.replace(true) {
                eprintln!(
                    "portctl: warning: the daemon is portd {theirs}, this portctl is {VERSION}"
                );
            }
        }
    }

    /// Sends `body` as JSON and returns the answer, or the daemon's error.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Response, ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("request types serialize"));
        let response = self.call(method, path, bytes.as_deref())?;
        if (200..300).contains(&response.status) {
            Ok(response)
        } else {
            let body: Option<ErrorBody> = serde_json::from_slice(&response.body).ok();
            Err(ClientError::Api {
                status: response.status,
                body,
                raw: response.text(),
            })
        }
    }

    /// `GET path`, decoded.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<(T, Response), ClientError> {
        let response = self.send("GET", path, None::<&()>)?;
        Ok((decode(&response)?, response))
    }
}

/// Decodes a successful answer's JSON body.
pub fn decode<T: DeserializeOwned>(response: &Response) -> Result<T, ClientError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        ClientError::Other(format!(
            "unexpected answer from portd: {e}: {}",
            response.text()
        ))
    })
}
