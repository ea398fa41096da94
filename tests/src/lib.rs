//! Harness for the end-to-end tests: the real `portd` and `portctl` binaries,
//! real processes, real sockets.
//!
//! - [`bins`]: where the built binaries are.
//! - [`ports`]: a block of ports that no other test (in this process or any
//!   other) uses at the same time, and whether a port is free or held.
//! - [`daemon`]: a `portd` on a temp socket and a temp database, stopped,
//!   killed or restarted at will, and never left running; and what tests
//!   ask it most (leases, events, health).
//! - [`docker`]: a real Docker Engine (dockerd) of the test's own, and a
//!   busybox image imported without a registry.
//! - [`http`]: a raw HTTP/1.1 client over the Unix socket.
//! - [`procs`]: helper processes (`sleep`, `bash`, a Python web server) that
//!   are killed and reaped when the test ends, commands run to their end
//!   ([`Done`]), and process start times.
//! - [`cli`]: `portctl` as users and their scripts run it, FIFO gates, and
//!   fresh sockets for autostart.
//! - [`servers`]: dev-server look-alikes and the processes they leave behind.
//! - [`pty`]: a command on a pseudo-terminal of its own.
//! - [`wait`]: waiting for a condition with a deadline, never a bare sleep.
//! - [`web`]: HTTP over loopback TCP for the `.localhost` proxy, and
//!   servers to put behind it.
//!
//! Every process the harness starts gets `PR_SET_PDEATHSIG(SIGKILL)`, so even
//! a test binary killed outright leaves nothing running. The signal fires when
//! the *thread* that spawned the process exits: spawn helpers from the test's
//! own thread (or keep the spawning thread alive as long as the process).

pub mod bins;
pub mod cli;
pub mod daemon;
pub mod docker;
pub mod http;
pub mod ports;
pub mod procs;
pub mod pty;
pub mod servers;
pub mod skip;
pub mod wait;
pub mod web;

pub use bins::{portctl_bin, portd_bin};
pub use daemon::{TestDaemon, portd_command, via_bash, wrapped_in, wrapped_running};
pub use http::Response;
pub use ports::PortBlock;
pub use procs::{ChildGuard, Done, finish, output_within, start_time};
pub use wait::{wait_for, wait_until};
