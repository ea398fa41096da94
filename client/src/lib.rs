//! portctl: the client of the portd daemon.
//!
//! `main` parses the command line and dispatches to one module per verb in
//! `cmd`; each verb sends the requests of `portd_api::routes` through
//! [`Client`], a blocking HTTP/1.1 client over the Unix socket
//! (`transport`) that checks whom it talks to (`connect`) and starts the
//! daemon when nothing answers (`autostart`). `units` holds the systemd
//! user units that `install` writes.

pub mod autostart;
pub mod client;
pub mod cmd;
pub mod connect;
pub mod error;
pub mod project;
pub mod proxy_port;
pub mod transport;
pub mod units;

pub use client::Client;
pub use error::ClientError;
