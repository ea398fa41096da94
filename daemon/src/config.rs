//! The daemon's effective configuration, as `main` resolved it from flags,
//! environment and defaults.

use std::path::PathBuf;
use std::time::Duration;

use portd_api::PortRange;

/// Ports handed out when a request names none.
pub const DEFAULT_RANGE: PortRange = PortRange {
    start: 8000,
    end: 8999,
};
/// How long reaped processes get between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub db: PathBuf,
    pub range: PortRange,
    pub grace: Duration,
    /// How often the maintenance loop expires TTLs and checks owners that
    /// have no pidfd.
    pub poll_interval: Duration,
}

impl Config {
    pub fn new(socket: PathBuf, db: PathBuf) -> Config {
        Config {
            socket,
            db,
            range: DEFAULT_RANGE,
            grace: DEFAULT_GRACE,
            poll_interval: Duration::from_secs(1),
        }
    }
}
