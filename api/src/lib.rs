//! Wire types shared by `portd` and `portctl`.
//!
//! Everything both sides must agree on lives here and nowhere else: the
//! routes of the HTTP API (`routes`), their query strings (`query`) and JSON
//! shapes (`types`), the error codes, how ports, ranges and durations
//! are written, and where the socket and the database live by default. The
//! crate is plain `std` + serde so that the client links no runtime, no
//! database and no HTTP framework.

pub mod error;
pub mod holders;
pub mod parse;
pub mod paths;
pub mod procstat;
pub mod query;
pub mod routes;
pub mod text;
pub mod types;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use holders::*;
pub use parse::{PortRange, parse_duration, parse_port};
pub use types::*;

/// The version both binaries report; the client warns when the daemon's differs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Response header that carries the daemon's version on every answer.
pub const VERSION_HEADER: &str = "portd-version";

/// Environment variable that tags a leased process with its lease id.
pub const LEASE_ENV: &str = "PORTD_LEASE";

/// Environment variable that sets the `.localhost` proxy's port (0: off).
pub const PROXY_PORT_ENV: &str = "PORTD_PROXY_PORT";

/// The `.localhost` proxy's port when nothing else names one: outside the
/// default lease ranges (3000-3999, 8000-8999), below every ephemeral range
/// (Linux 32768+, IANA 49152+), above the privileged ports, and no common
/// dev server's default (docs/DECISIONS.md, "Proxy").
pub const DEFAULT_PROXY_PORT: u16 = 7355;

/// Largest request body the daemon accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
