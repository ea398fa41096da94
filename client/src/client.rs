//! `Client`: sends the API's requests to the daemon over its Unix socket,
//! after checking that the socket and the daemon behind it can be trusted
//! (`connect`), and starts the daemon when nothing answers (`autostart`).
//! A verb names an endpoint of `portd_api::routes` and gets back that
//! endpoint's answer type.

use std::cell::Cell;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use portd_api::routes::Endpoint;
use portd_api::{ErrorBody, VERSION, VERSION_HEADER};
use serde::de::DeserializeOwned;

use crate::autostart;
use crate::connect::{ConnectError, connect};
use crate::error::ClientError;
use crate::transport::{Response, exchange};

/// Set to `1` to never start the daemon from the client.
pub const NO_AUTOSTART_ENV: &str = "PORTD_NO_AUTOSTART";

pub struct Client {
    socket: PathBuf,
    autostart: bool,
    warned: Cell<bool>,
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

    /// Sends `endpoint`'s request, starting the daemon first if nothing
    /// answers. A 2xx answer is returned as it came; any other is the
    /// daemon's error.
    pub fn call<E: Endpoint>(&self, endpoint: &E) -> Result<Response, ClientError> {
        let response = exchange(self.stream()?, endpoint).map_err(|e| {
            ClientError::Other(format!(
                "talking to portd on {}: {e}",
                self.socket.display()
            ))
        })?;
        self.warn_on_version(&response);
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

    /// [`Client::call`], with the answer decoded as the endpoint's type
    /// (the response too, for `--json`, which prints it as it came).
    pub fn fetch<E: Endpoint>(&self, endpoint: &E) -> Result<(E::Answer, Response), ClientError> {
        let response = self.call(endpoint)?;
        Ok((decode(&response)?, response))
    }

    /// A connection to a daemon we may talk to, started if there is none.
    fn stream(&self) -> Result<UnixStream, ClientError> {
        match connect(&self.socket) {
            Ok(stream) => Ok(stream),
            Err(ConnectError::Absent) if self.autostart => {
                autostart::start(&self.socket)?;
                connect(&self.socket).map_err(|e| self.connect_error(e))
            }
            Err(e) => Err(self.connect_error(e)),
        }
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
        if let Some(theirs) = response.header(VERSION_HEADER)
            && theirs != VERSION
            && !self.warned.replace(true)
        {
            eprintln!("portctl: warning: the daemon is portd {theirs}, this portctl is {VERSION}");
        }
    }
}

/// Decodes a successful answer's JSON body.
fn decode<T: DeserializeOwned>(response: &Response) -> Result<T, ClientError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        ClientError::Other(format!(
            "unexpected answer from portd: {e}: {}",
            response.text()
        ))
    })
}
