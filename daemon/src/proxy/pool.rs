//! Idle connections to leased servers, kept for the next request: per port
//! and lease id, so that one kept for an ended lease is never lent to the
//! next lease on the same port. Each proxy thread has its own pools, so a
//! connection never crosses threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Idle connections kept per port.
const MAX_IDLE: usize = 128;
/// How long an idle connection to a server is kept; [`Pool::sweep`] drops
/// older ones.
pub const IDLE_FOR: Duration = Duration::from_secs(30);

/// A connection a pool can keep.
pub trait Kept {
    /// Its server has closed it (as far as is known without a system call).
    fn is_closed(&self) -> bool;
}

/// The idle connections of one port, and the lease they were made for.
struct Idle<C> {
    lease_id: String,
    /// Each with when it went idle, the newest last.
    conns: Vec<(C, Instant)>,
}

/// One proxy thread's idle connections of one kind.
pub struct Pool<C> {
    idle: Arc<Mutex<HashMap<u16, Idle<C>>>>,
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            idle: Arc::clone(&self.idle),
        }
    }
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Pool {
            idle: Arc::default(),
        }
    }
}

/// Where a connection lent for one request goes back to once its response
/// has been read to the end: its pool, port and lease.
pub struct Home<C> {
    pool: Pool<C>,
    port: u16,
    lease_id: String,
}

impl<C: Kept> Home<C> {
    /// Keeps `conn` for the next request to the same lease.
    pub fn keep(self, conn: C) {
        self.pool.checkin(self.port, &self.lease_id, conn);
    }
}

impl<C: Kept> Pool<C> {
    /// Where a connection to `port` for `lease_id` goes back to.
    pub fn home(&self, port: u16, lease_id: String) -> Home<C> {
        Home {
            pool: self.clone(),
            port,
            lease_id,
        }
    }

    /// An idle connection to `port` made for `lease_id`, newest first;
    /// connections made for an earlier lease on the port are dropped.
    pub fn checkout(&self, port: u16, lease_id: &str) -> Option<C> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = idle.get_mut(&port)?;
        if entry.lease_id != lease_id {
            idle.remove(&port);
            return None;
        }
        while let Some((conn, since)) = entry.conns.pop() {
            if !conn.is_closed() && since.elapsed() < IDLE_FOR {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request to `port`'s lease.
    pub fn checkin(&self, port: u16, lease_id: &str, conn: C) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = idle.entry(port).or_insert_with(|| Idle {
            lease_id: lease_id.to_string(),
            conns: Vec::new(),
        });
        if entry.lease_id != lease_id {
            *entry = Idle {
                lease_id: lease_id.to_string(),
                conns: Vec::new(),
            };
        }
        if entry.conns.len() >= MAX_IDLE {
            entry.conns.retain(|(c, _)| !c.is_closed());
        }
        if entry.conns.len() < MAX_IDLE {
            entry.conns.push((conn, Instant::now()));
        }
    }

    /// Drops the connections idle for longer than [`IDLE_FOR`] or closed by
    /// their server, and the ports left with none.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, entry| {
            entry
                .conns
                .retain(|(conn, since)| !conn.is_closed() && since.elapsed() < IDLE_FOR);
            !entry.conns.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A connection whose closing the test decides.
    struct Fake {
        id: u32,
        closed: Arc<AtomicBool>,
    }

    impl Kept for Fake {
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::Relaxed)
        }
    }

    fn fake(id: u32) -> (Fake, Arc<AtomicBool>) {
        let closed = Arc::new(AtomicBool::new(false));
        let conn = Fake {
            id,
            closed: Arc::clone(&closed),
        };
        (conn, closed)
    }

    #[test]
    fn a_connection_goes_back_to_its_lease_only_and_closed_ones_are_never_lent() {
        let pool = Pool::default();
        let (one, _) = fake(1);
        let (two, two_closed) = fake(2);
        pool.checkin(8000, "lease-a", one);
        pool.checkin(8000, "lease-a", two);
        two_closed.store(true, Ordering::Relaxed);
        // The newest is closed: the one before it is lent.
        assert_eq!(pool.checkout(8000, "lease-a").map(|c| c.id), Some(1));
        assert!(pool.checkout(8000, "lease-a").is_none());
        assert!(pool.checkout(8001, "lease-a").is_none());

        let (three, _) = fake(3);
        pool.checkin(8000, "lease-a", three);
        // The next lease on the port never gets the last lease's connection.
        assert!(pool.checkout(8000, "lease-b").is_none());
        assert!(pool.checkout(8000, "lease-a").is_none(), "dropped");

        let (four, four_closed) = fake(4);
        pool.checkin(8000, "lease-b", four);
        four_closed.store(true, Ordering::Relaxed);
        pool.sweep();
        assert!(pool.idle.lock().unwrap().is_empty(), "swept");
    }
}
