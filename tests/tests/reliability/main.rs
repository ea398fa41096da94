//! Reliability: the daemon under crashes, hostile input, unsafe start-up
//! conditions and resource pressure, end to end with the real binaries.
//!
//! - `openapi`: the served OpenAPI document parses as OpenAPI 3.1 and lists
//!   exactly the routes the router serves.
//! - `crash`: concurrent leases and releases while the daemon is killed
//!   with SIGKILL and restarted; no port is ever held twice, no answered
//!   lease or release is lost, and the database stays sound.
//! - `fuzz`: requests generated from the OpenAPI document, valid and broken,
//!   never get a 5xx, a panic or a dead daemon.
//! - `refusals`: unsafe socket directories the `api` suite does not cover.
//! - `resources`: idle and slow clients, and more owners than file
//!   descriptors.
//! - `stalls`: a crowd of idle and slow clients held open does not hold up
//!   a user's lease.
//!
//! Every test has its own daemon on its own port block; waits are
//! conditions with deadlines.

mod crash;
mod fuzz;
mod openapi;
mod refusals;
mod resources;
mod stalls;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use portd_e2e::http::{Response, parse_response};
use portd_e2e::{TestDaemon, wait_until};

/// How long the daemon may take to notice a death or to come back.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long one exchange may take before the test calls the daemon hung.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Why an exchange got no answer.
#[derive(Debug)]
enum Failure {
    /// Nothing was sent: the request certainly had no effect.
    NotConnected(io::Error),
    /// Sent (perhaps in part) but unanswered: it may or may not have acted.
    Unanswered(io::Error),
}

/// Sends `bytes` on a new connection and reads the answer until the daemon
/// closes; tells a request that never left apart from one left unanswered.
fn exchange(socket: &Path, bytes: &[u8]) -> Result<Response, Failure> {
    let mut stream = UnixStream::connect(socket).map_err(Failure::NotConnected)?;
    let unanswered = Failure::Unanswered;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(unanswered)?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(unanswered)?;
    // A daemon that answers early (413, 400) may stop reading: what it
    // answered counts, not the rest of our write.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !answer.is_empty() => {}
        Err(e) => return Err(Failure::Unanswered(e)),
    }
    parse_response(&answer).map_err(Failure::Unanswered)
}

/// The daemon's log holds no panic (a panicking handler task does not stop
/// the daemon, so only the log shows it).
#[track_caller]
fn assert_no_panic(d: &TestDaemon) {
    let log = d.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
}

/// Raises this test process's soft limit on open files to the hard one:
/// tests here hold a thousand connections at once.
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise RLIMIT_NOFILE");
    }
}

/// The open-file limit (soft and hard, so it cannot raise it) of a daemon
/// whose connection cap, half of it, is below the crowds the tests open.
const CAPPED_NOFILE: usize = 1024;
const CAPPED_CONNECTIONS: usize = CAPPED_NOFILE / 2;

/// A daemon on `range` under [`CAPPED_NOFILE`].
fn capped_daemon(range: portd_api::PortRange) -> TestDaemon {
    let mut d = TestDaemon::new(range);
    d.launch_with(|cmd| portd_e2e::via_bash(&cmd, &format!("ulimit -n {CAPPED_NOFILE}")));
    d
}

/// Open file descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Waits until `socket` accepts connections again (a daemon restarting).
fn wait_for_socket(socket: &Path) -> bool {
    wait_until(DEADLINE, || UnixStream::connect(socket).is_ok())
}
