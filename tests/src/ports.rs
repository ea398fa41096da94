//! Port blocks: 20 consecutive ports reserved for one test, so tests that run
//! in parallel (threads of one test binary, or test processes under nextest)
//! never lease, probe or listen on each other's ports.
//!
//! A block is reserved by an exclusive, non-blocking `flock` on
//! `/tmp/portd-e2e-ports/<start>.lock`, held for the block's lifetime. flock
//! locks belong to an open file description, so two threads of one process
//! exclude each other as two processes do, and the kernel drops the lock when
//! a test process dies, however it dies. Lock files are never deleted:
//! deleting one while another process holds or is about to take its lock
//! would let two tests hold "the same" block.
//!
//! Blocks lie in 20000-31999, below the kernel's ephemeral range (32768+ by
//! default), where outgoing connections would take ports at random. A block
//! with a port that something on the machine already binds is skipped.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use portd_api::PortRange;

use crate::wait::wait_until;

/// Ports in one block.
pub const BLOCK_LEN: u16 = 20;
/// First port of the first block.
const FIRST_PORT: u16 = 20000;
/// Blocks in 20000-31999.
const BLOCKS: usize = 600;
/// Where the lock files live; shared by every test process on the machine.
const LOCK_DIR: &str = "/tmp/portd-e2e-ports";

/// Spreads successive reservations of one process over the blocks, so a
/// test rarely gets the ports the previous test just used.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A block of [`BLOCK_LEN`] consecutive ports, reserved until dropped.
#[derive(Debug)]
pub struct PortBlock {
    start: u16,
    _lock: Flock<File>,
}

impl PortBlock {
    /// Reserves a free block; panics if every block is taken.
    pub fn reserve() -> PortBlock {
        let dir = Path::new(LOCK_DIR);
        if !dir.is_dir() {
            fs::create_dir_all(dir).expect("create /tmp/portd-e2e-ports");
            // Sticky and world-writable like /tmp, so tests of another user
            // on the same machine can take their locks too.
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o1777));
        }
        let offset =
            (std::process::id() as usize).wrapping_mul(31) + NEXT.fetch_add(7, Ordering::Relaxed);
        for i in 0..BLOCKS {
            let start = FIRST_PORT + ((offset + i) % BLOCKS) as u16 * BLOCK_LEN;
            let Ok(lock) = lock_block(dir, start) else {
                continue;
            };
            if (start..start + BLOCK_LEN).all(port_is_free) {
                return PortBlock { start, _lock: lock };
            }
        }
        panic!("no free block of {BLOCK_LEN} ports in 20000-31999 (locks in {LOCK_DIR})");
    }

    /// The first port of the block.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// The last port of the block.
    pub fn end(&self) -> u16 {
        self.start + BLOCK_LEN - 1
    }

    /// The whole block as a range (what a [`crate::TestDaemon`] serves).
    pub fn range(&self) -> PortRange {
        PortRange::new(self.start, self.end()).expect("a block is a valid range")
    }

    /// The `index`th port of the block (0-based).
    pub fn port(&self, index: u16) -> u16 {
        assert!(
            index < BLOCK_LEN,
            "a block has {BLOCK_LEN} ports, not {index}"
        );
        self.start + index
    }

    /// `len` ports of the block from the `from`th on.
    pub fn sub_range(&self, from: u16, len: u16) -> PortRange {
        assert!(
            len > 0 && from + len <= BLOCK_LEN,
            "{from}+{len} is outside the block"
        );
        PortRange::new(self.port(from), self.port(from + len - 1)).expect("valid sub-range")
    }
}

fn lock_block(dir: &Path, start: u16) -> io::Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(dir.join(format!("{start}.lock")))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| errno.into())
}

/// True when nothing binds `port` on any address. A bind of `[::]` without
/// IPV6_V6ONLY is dual-stack, so it conflicts with IPv4 and IPv6 sockets
/// alike; hosts without IPv6 get the IPv4 check alone. std sets SO_REUSEADDR,
/// so TIME_WAIT leftovers of an earlier test do not count.
pub fn port_is_free(port: u16) -> bool {
    match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => false,
        Err(_) => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok(),
    }
}

/// How long a port may take to bind again once its holder has exited.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Asserts that the test itself can bind `host:port`, within
/// [`RELEASE_TIMEOUT`]: a socket closes as its process exits, and the exit
/// may be seen first.
#[track_caller]
pub fn assert_port_free(host: &str, port: u16) {
    let bound = wait_until(RELEASE_TIMEOUT, || TcpListener::bind((host, port)).is_ok());
    assert!(bound, "{host}:{port} still cannot be bound");
}

/// Asserts that `host:port` is taken.
#[track_caller]
pub fn assert_port_held(host: &str, port: u16) {
    let err = TcpListener::bind((host, port)).expect_err("the port should still be held");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_blocks_held_at_once_never_overlap() {
        let a = PortBlock::reserve();
        let b = PortBlock::reserve();
        assert!(a.end() < b.start() || b.end() < a.start(), "{a:?} {b:?}");
        assert!((20000..=31999).contains(&a.start()) && a.end() <= 31999);
        assert_eq!(a.range().len(), usize::from(BLOCK_LEN));
    }

    #[test]
    fn a_held_block_cannot_be_locked_again() {
        let block = PortBlock::reserve();
        assert!(lock_block(Path::new(LOCK_DIR), block.start()).is_err());
    }

    #[test]
    fn a_listener_makes_its_port_busy() {
        let block = PortBlock::reserve();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, block.port(3))).unwrap();
        assert!(!port_is_free(block.port(3)));
        drop(listener);
        assert!(port_is_free(block.port(3)));
    }
}
