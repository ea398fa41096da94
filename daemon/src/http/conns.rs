//! The connections the server holds, what each one is doing, and which one
//! gives way when a new client arrives at the cap.
//!
//! Every connection carries an [`Activity`]: the server's I/O wrapper, the
//! request wrapper and the JSON body extractor move it through
//! `Fresh -> Idle -> Pending -> Busy -> Idle ...`. At the cap, a new
//! connection is admitted by shedding (closing) another: an idle one first
//! (nothing of a request yet), then one stuck halfway through its headers
//! or body, the longest waiting first; a new connection that has not yet
//! been read is shed last, and a request a handler is working on never.
//! When every slot is busy, the new client waits until one frees.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Accepted, not yet read from: it may hold a request already.
    Fresh = 0,
    /// Waiting for a request: nothing of one has arrived.
    Idle = 1,
    /// Part of a request has arrived (headers, or a body still coming).
    Pending = 2,
    /// A handler works on its request.
    Busy = 3,
}

impl State {
    fn from_u8(value: u8) -> State {
        match value {
            0 => State::Fresh,
            1 => State::Idle,
            2 => State::Pending,
            _ => State::Busy,
        }
    }
}

/// One connection's state and since when (milliseconds since the server
/// started): the last answer or the accept for `Idle`, the request's first
/// byte for `Pending`.
#[derive(Debug)]
pub struct Activity {
    state: AtomicU8,
    since_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        Activity {
            state: AtomicU8::new(State::Fresh as u8),
            since_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            epoch,
        }
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    fn since_ms(&self) -> u64 {
        self.since_ms.load(Ordering::Acquire)
    }

    fn stamp(&self) {
        self.since_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
    }

    /// The connection was read from; `bytes` arrived.
    fn read(&self, bytes: usize) {
        let state = self.state();
        if bytes > 0 && matches!(state, State::Fresh | State::Idle) {
            self.stamp();
            self.state.store(State::Pending as u8, Ordering::Release);
        } else if state == State::Fresh {
            self.state.store(State::Idle as u8, Ordering::Release);
        }
    }

    /// A request's headers are in: its handler runs.
    pub fn busy(&self) {
        self.state.store(State::Busy as u8, Ordering::Release);
    }

    /// The handler waits for the request's body: nothing is done yet, so the
    /// connection may give way like one stuck in its headers.
    pub fn reading_body(&self) {
        self.state.store(State::Pending as u8, Ordering::Release);
    }

    /// The answer is ready: the connection waits for its next request.
    pub fn answered(&self) {
        self.stamp();
        self.state.store(State::Idle as u8, Ordering::Release);
    }
}

/// The connection to shed among `open` (id, state, since): the longest idle
/// first, then the longest pending, then the oldest fresh one; never a busy
/// one.
pub fn victim(open: impl IntoIterator<Item = (u64, State, u64)>) -> Option<u64> {
    open.into_iter()
        .filter_map(|(id, state, since)| {
            let rank = match state {
                State::Idle => 0,
                State::Pending => 1,
                State::Fresh => 2,
                State::Busy => return None,
            };
            Some(((rank, since, id), id))
        })
        .min_by_key(|(key, _)| *key)
        .map(|(_, id)| id)
}

struct Entry {
    activity: Arc<Activity>,
    shed: CancellationToken,
}

/// The open connections, at most `cap` of them.
pub struct Conns {
    cap: usize,
    epoch: Instant,
    open: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    /// Notified when a connection closes.
    freed: Notify,
}

impl Conns {
    pub fn new(cap: usize) -> Arc<Conns> {
        Arc::new(Conns {
            cap,
            epoch: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            freed: Notify::new(),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// How many connections are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: at once below the cap, else by shedding
    /// another connection, else once one closes.
    pub async fn admit(self: &Arc<Self>) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a close in between wakes us.
            freed.as_mut().enable();
            if let Some(slot) = self.try_admit() {
                return slot;
            }
            freed.await;
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.len() >= self.cap {
            let candidates = open
                .iter()
                .map(|(id, e)| (*id, e.activity.state(), e.activity.since_ms()));
            let shed = victim(candidates)?;
            if let Some(entry) = open.remove(&shed) {
                tracing::debug!(state = ?entry.activity.state(), "connection cap reached; shedding a connection");
                entry.shed.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(self.epoch));
        let shed = CancellationToken::new();
        open.insert(
            id,
            Entry {
                activity: Arc::clone(&activity),
                shed: shed.clone(),
            },
        );
        Some(Slot {
            id,
            activity,
            shed,
            conns: Arc::clone(self),
        })
    }
}

/// One admitted connection; its slot frees when this drops.
pub struct Slot {
    id: u64,
    activity: Arc<Activity>,
    shed: CancellationToken,
    conns: Arc<Conns>,
}

impl Slot {
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Cancelled when the connection is shed to admit another.
    pub fn shed(&self) -> &CancellationToken {
        &self.shed
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
        self.conns.freed.notify_waiters();
    }
}

/// A connection's stream, telling its [`Activity`] what it reads.
pub struct Tracked<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(stream: S, activity: Arc<Activity>) -> Tracked<S> {
        Tracked { stream, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.activity.read(buf.filled().len() - before);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_give_way_first_the_longest_idle_first() {
        let open = [
            (1, State::Pending, 10),
            (2, State::Idle, 50),
            (3, State::Idle, 20),
            (4, State::Fresh, 0),
            (5, State::Busy, 0),
        ];
        assert_eq!(victim(open), Some(3));
    }

    #[test]
    fn then_requests_stuck_halfway_the_longest_waiting_first() {
        let open = [
            (1, State::Pending, 30),
            (2, State::Pending, 10),
            (4, State::Fresh, 0),
            (5, State::Busy, 0),
        ];
        assert_eq!(victim(open), Some(2));
    }

    #[test]
    fn a_connection_not_yet_read_goes_last_and_a_busy_one_never() {
        assert_eq!(
            victim([(4, State::Fresh, 7), (6, State::Fresh, 3)]),
            Some(6)
        );
        assert_eq!(victim([(5, State::Busy, 0), (7, State::Busy, 1)]), None);
        assert_eq!(victim([]), None);
    }

    #[test]
    fn activity_follows_a_request() {
        let activity = Activity::new(Instant::now());
        assert_eq!(activity.state(), State::Fresh);
        activity.read(0);
        assert_eq!(activity.state(), State::Idle);
        activity.read(12);
        assert_eq!(activity.state(), State::Pending);
        activity.busy();
        activity.read(5);
        assert_eq!(activity.state(), State::Busy, "reads during a handler");
        activity.reading_body();
        assert_eq!(activity.state(), State::Pending);
        activity.busy();
        activity.answered();
        assert_eq!(activity.state(), State::Idle);
    }

    #[tokio::test]
    async fn at_the_cap_an_idle_connection_is_shed_and_a_busy_one_is_waited_for() {
        let conns = Conns::new(2);
        let idle = conns.admit().await;
        idle.activity().read(0);
        let busy = conns.admit().await;
        busy.activity().busy();
        let third = conns.admit().await;
        assert!(idle.shed().is_cancelled(), "the idle connection gives way");
        assert!(!busy.shed().is_cancelled());
        assert_eq!(conns.len(), 2);
        drop(idle);
        assert_eq!(conns.len(), 2, "a shed slot was already freed");

        third.activity().busy();
        let waiting = tokio::spawn({
            let conns = Arc::clone(&conns);
            async move { conns.admit().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "every slot is busy");
        drop(busy);
        let fourth = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("admitted once a slot freed")
            .unwrap();
        assert!(!third.shed().is_cancelled());
        assert_eq!(conns.len(), 2);
        drop((third, fourth));
        assert_eq!(conns.len(), 0);
    }
}
