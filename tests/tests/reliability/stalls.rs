//! Slow and idle clients cannot stall others. A crowd of 1,200 idle
//! connections, 600 that stop halfway through their headers and 500 that
//! stop halfway through their bodies is held open at once; meanwhile five
//! `portctl lease --next` in a row must each be answered with a lease.
//!
//! The speed target (each lease under 100 ms) is the benchmark's
//! (`bench/slow_clients.py`, docs/BENCHMARKS.md). Here each lease must
//! come within [`LIVENESS`]: a daemon that makes a user wait behind the
//! crowd fails it by far (before the fix, 1,200 idle connections alone
//! held `portctl lease` for 10 s behind a 512-connection cap and two 5 s
//! header timeouts, and the whole crowd longer), while a busy CI machine
//! still has twenty times the benchmark's target.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use portd_e2e::{PortBlock, TestDaemon, cli, finish};

use super::{CAPPED_CONNECTIONS, assert_no_panic, capped_daemon, raise_own_fd_limit};

const IDLE: usize = 1200;
const PARTIAL_HEADERS: usize = 600;
const SLOW_BODIES: usize = 500;
const CROWD: usize = IDLE + PARTIAL_HEADERS + SLOW_BODIES;
/// `portctl lease --next` calls in a row.
const LEASES: usize = 5;
/// The longest one lease may take with the crowd held open.
const LIVENESS: Duration = Duration::from_secs(2);

/// A request cut off in its headers, and one whose body (64 bytes
/// announced) stops after one byte.
const PARTIAL_HEAD: &[u8] = b"POST /v1/leases HTTP/1.1\r\nHost: portd\r\nContent-Type: applica";
const SLOW_BODY: &[u8] =
    b"POST /v1/leases HTTP/1.1\r\nHost: portd\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{";

/// The crowd: every connection open, each kind having sent what it sends.
fn crowd(socket: &Path) -> Vec<UnixStream> {
    let mut crowd = Vec::with_capacity(CROWD);
    for i in 0..CROWD {
        let mut stream =
            UnixStream::connect(socket).unwrap_or_else(|e| panic!("crowd connection {i}: {e}"));
        let sends: &[u8] = if i < IDLE {
            b""
        } else if i < IDLE + PARTIAL_HEADERS {
            PARTIAL_HEAD
        } else {
            SLOW_BODY
        };
        stream
            .write_all(sends)
            .unwrap_or_else(|e| panic!("crowd connection {i}: {e}"));
        crowd.push(stream);
    }
    crowd
}

/// How many of `crowd` the daemon has closed (or answered).
fn closed_by_the_daemon(crowd: &[UnixStream]) -> usize {
    crowd
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).expect("nonblocking");
            let mut byte = [0u8; 1];
            !matches!((&**stream).read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
        })
        .count()
}

/// Five `portctl lease --next` in a row, each within [`LIVENESS`], each
/// granted a port of the daemon's range that is then actively leased.
fn five_leases(d: &TestDaemon) -> Vec<Duration> {
    let range = d.range();
    let mut ports = Vec::new();
    let mut took = Vec::new();
    for _ in 0..LEASES {
        let started = Instant::now();
        let out = finish(cli::portctl(d.socket()).args(["lease", "--next"]), LIVENESS);
        took.push(started.elapsed());
        out.expect(0);
        let port: u16 = out
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a port: {out}"));
        assert!(range.contains(port), "{port} outside {range}: {out}");
        assert!(!ports.contains(&port), "{port} granted twice: {out}");
        ports.push(port);
    }
    for port in &ports {
        assert!(d.active_lease(*port).is_some(), "no active lease on {port}");
    }
    took
}

#[test]
fn a_crowd_of_idle_and_slow_clients_does_not_hold_up_a_lease() {
    raise_own_fd_limit();
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let crowd = crowd(d.socket());
    let took = five_leases(&d);
    // The crowd was there all along: the daemon has closed none of it (its
    // header and body deadlines are seconds away).
    assert_eq!(
        closed_by_the_daemon(&crowd),
        0,
        "the crowd was gone before the leases were asked for"
    );
    eprintln!("stalls: five leases beside {CROWD} held connections took {took:?}");
    drop(crowd);
    d.assert_healthy("the crowd");
    assert_no_panic(&d);
}

/// A daemon whose open-file limit is 1,024 serves at most 512 connections,
/// fewer than the crowd: it sheds idle and stuck connections to admit new
/// clients, and a lease is still answered.
#[test]
fn a_crowd_larger_than_the_connection_cap_is_shed_and_a_lease_is_answered() {
    const CAP: usize = CAPPED_CONNECTIONS;
    raise_own_fd_limit();
    let block = PortBlock::reserve();
    let d = capped_daemon(block.range());
    let crowd = crowd(d.socket());
    let took = five_leases(&d);
    let closed = closed_by_the_daemon(&crowd);
    assert!(
        closed >= CROWD - CAP,
        "{closed} of {CROWD} crowd connections closed with a cap of {CAP}"
    );
    eprintln!("stalls: capped at {CAP}, {closed} of {CROWD} shed; five leases took {took:?}");
    drop(crowd);
    d.assert_healthy("the crowd");
    assert_no_panic(&d);
}
