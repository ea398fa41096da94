//! The `.localhost` proxy: every named lease at a stable URL,
//! `http://NAME.LABEL.localhost:PORT/`, whatever port it got today. A
//! sibling of `http`, on loopback TCP instead of the Unix socket: it has
//! no peer credentials, so it offers no control verb and shows nothing of
//! a lease but its name, project label and port.
//!
//! - `listen`: the sockets (bound here, or passed by systemd);
//! - `server`: the accept loops and hyper connections;
//! - `route`: a request to the lease its `Host` names, or a page;
//! - `host`: what a `Host` header asks for;
//! - `forward`: the request to the lease's server and its answer back
//!   (forwarding headers, hyper's client for bodies and upgrades);
//! - `wire`: a request without a body spoken directly on a kept
//!   connection, with `chunked` for the bodies it reads;
//! - `pool`: the connections kept per port and lease;
//! - `pages`: the 404, 502 and index pages, in HTML or JSON.
//!
//! Every request is routed on the lease table as it is at that moment
//! (`Leases::site`): a lease that ended is never served from a cache.

mod chunked;
pub(crate) mod forward;
mod host;
mod listen;
mod pages;
mod pool;
mod route;
mod server;
mod wire;

pub use self::listen::{ProxySockets, open};
pub use self::route::Proxy;
pub use self::server::{max_descriptors, spawn};
