//! Group commit: every change to leases, names and events goes through one
//! write connection, and each submitter is answered only after the
//! transaction holding its change has committed.
//!
//! Decisions are made in memory under one lock and submitted in the order
//! they were made (the submission happens under that lock), so the
//! database sees a consistent history.
//!
//! Two ways to commit, one connection:
//!
//! - **Inline.** When nothing is queued and no commit is running, a
//!   submission claims the connection, and the submitter commits its own
//!   change on its own thread when it awaits [`Pending::committed`]: no
//!   hand-off to another thread and back, which is most of one client's
//!   wait.
//! - **Queued.** Otherwise the change joins a queue, and the writer thread
//!   (`thread`) folds whatever has queued into one transaction
//!   (`commit`) as soon as the connection is free: under load, one commit
//!   answers many requests.
//!
//! A claim only reserves the connection: when something queues behind it
//! (or its submitter drops it), the writer thread takes the claimed change
//! and commits it first, folded with what queued after it. So no one ever
//! waits on a submitter that has not awaited yet, and commits keep the
//! order of decisions: a change queued while the connection is claimed or
//! in use was decided after the one claiming it. Checkpoints run on a
//! second thread (`checkpoint`).

#[cfg(test)]
mod tests;
mod thread;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use self::thread::run;
use super::StoreError;
use super::checkpoint::{
    WalFrames, WalNeeds, ask_for_checkpoint, checkpoint_when_asked, count_frames,
};
use super::commit::{Change, commit_error, write};

/// How long after a commit found others waiting behind it changes keep
/// going to the writer thread rather than committing inline.
const CONTENDED_FOR: Duration = Duration::from_millis(10);

/// Why a change did not reach the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// SQLITE_FULL: the file system that holds the database has no room.
    #[error(
        "the disk is full: portd cannot write to {}; free some space on its file system, then ask again",
        .0.display()
    )]
    DiskFull(PathBuf),
    /// Any other failure, as SQLite put it.
    #[error("{0}")]
    Failed(String),
    /// Queued behind a commit that failed: decided on state the database
    /// does not have.
    #[error("an earlier commit failed; ask again")]
    EarlierFailed,
    #[error("the writer stopped")]
    Stopped,
}

/// Where a batch's outcome is sent.
pub(super) type Done = oneshot::Sender<Result<(), CommitError>>;

/// Work for the writer thread, in the order it was queued.
pub(super) enum Job {
    Write {
        changes: Vec<Change>,
        done: Done,
    },
    /// Drops history older than `cutoff` (Unix ms) or past `keep` rows.
    Prune {
        cutoff: i64,
        keep: i64,
        done: oneshot::Sender<Result<u64, CommitError>>,
    },
    /// The WAL passed its bound during an inline commit: checkpoint on the
    /// write connection before the next commit.
    Checkpoint,
    /// Ends the thread; answered once its connection is closed.
    Stop(oneshot::Sender<()>),
}

/// A change that claimed the free connection, to be committed inline by
/// its submitter, or by the writer thread if something needs the
/// connection first.
pub(super) struct Claim {
    ticket: u64,
    pub(super) changes: Vec<Change>,
    pub(super) done: Done,
}

/// Called after a commit failed, before the batches queued behind it fail
/// too (they were decided on state that never reached the database). It
/// runs inside the daemon's tokio runtime, on the thread that committed,
/// never under the lock that submits changes.
pub type FailureHook = Box<dyn Fn() + Send + Sync>;

/// What the writer thread and the submitters share.
pub(super) struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread: a job was queued, a claim was abandoned,
    /// the connection came back to a queue, or the last handle went.
    pub(super) wake: Condvar,
    on_failure: OnceLock<FailureHook>,
    pub(super) db: PathBuf,
    /// The WAL's size after the last commit: when to ask for a checkpoint.
    pub(super) wal: WalFrames,
}

pub(super) struct State {
    pub(super) queue: VecDeque<Job>,
    /// A change claiming the connection; the queue was empty when it came.
    pub(super) claim: Option<Claim>,
    /// The write connection, while no commit is using it.
    pub(super) conn: Option<Connection>,
    /// Asks the checkpoint thread for a checkpoint; dropped when the writer
    /// thread ends, which ends the checkpoint thread.
    pub(super) ask: Option<mpsc::SyncSender<()>>,
    /// The last claim's ticket.
    tickets: u64,
    /// When a commit last found other changes waiting behind it. For
    /// [`CONTENDED_FOR`] after that, changes go to the writer thread to be
    /// committed in groups, not inline: an inline commit is a transaction
    /// of its own, and under many clients inline commits kept changes
    /// from being folded (docs/DECISIONS.md, "Store").
    pub(super) contended_at: Option<Instant>,
    /// A stop is queued or done: nothing more is accepted.
    pub(super) stopping: bool,
    /// Every [`Writer`] handle is gone: the thread ends once nothing is
    /// left to write.
    pub(super) abandoned: bool,
}

impl State {
    /// Whether a commit found others waiting within [`CONTENDED_FOR`].
    fn is_contended(&self) -> bool {
        self.contended_at
            .is_some_and(|at| at.elapsed() < CONTENDED_FOR)
    }

    /// After a commit or a job: notes whether changes waited behind it,
    /// `folded` into its transaction or still queued.
    pub(super) fn note_contention(&mut self, folded: bool) {
        if folded || !self.queue.is_empty() {
            self.contended_at = Some(Instant::now());
        }
    }

    /// Whether the writer thread has something to do.
    pub(super) fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.claim.is_some()
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the connection back after a commit (or a job) and wakes the
    /// writer thread if something waits for it.
    pub(super) fn give_back(&self, mut state: MutexGuard<'_, State>, conn: Connection) {
        state.conn = Some(conn);
        if state.has_work() || state.abandoned {
            self.wake.notify_one();
        }
    }

    /// After a failed commit, with the connection still taken: runs the
    /// hook, which stops new decisions, then fails the writes queued
    /// meanwhile (decided on state the database does not have). A prune
    /// or a stop behind them still runs.
    pub(super) fn failed(&self) {
        if let Some(hook) = self.on_failure.get() {
            hook();
        }
        let mut state = self.lock();
        while let Some(Job::Write { .. }) = state.queue.front() {
            if let Some(Job::Write { done, .. }) = state.queue.pop_front() {
                let _ = done.send(Err(CommitError::EarlierFailed));
            }
        }
    }
}

/// Commits `changes` on `conn` in one transaction; a failure is logged and
/// turned into what its callers are told.
pub(super) fn commit(
    conn: &mut Connection,
    changes: &[&Change],
    shared: &Shared,
) -> Result<(), CommitError> {
    write(conn, changes).map_err(|e| {
        tracing::error!(error = %e, changes = changes.len(), "commit failed");
        commit_error(&e, &shared.db)
    })
}

/// The handle to the writer. Clones share it; when the last one goes, the
/// writer thread ends after what is left to write.
#[derive(Clone)]
pub struct Writer {
    handle: Arc<Handle>,
}

struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.lock().abandoned = true;
        self.0.wake.notify_one();
    }
}

/// A submitted batch, to await after the submitting lock is released.
#[must_use = "a change is durable only once `committed` returns"]
pub struct Pending(Waiting);

enum Waiting {
    /// Nothing to wait for.
    Done,
    Queued(oneshot::Receiver<Result<(), CommitError>>),
    /// Committed when awaited, on the awaiting thread, unless the writer
    /// thread took the claim first and answers on `rx`.
    Claimed {
        shared: Arc<Shared>,
        ticket: u64,
        rx: oneshot::Receiver<Result<(), CommitError>>,
    },
}

impl Pending {
    /// Waits until the batch is committed.
    pub async fn committed(mut self) -> Result<(), StoreError> {
        let rx = match std::mem::replace(&mut self.0, Waiting::Done) {
            Waiting::Done => return Ok(()),
            Waiting::Queued(rx) => rx,
            Waiting::Claimed { shared, ticket, rx } => match commit_claim(&shared, ticket) {
                Some(result) => return Ok(result?),
                None => rx,
            },
        };
        match rx.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CommitError::Stopped.into()),
        }
    }

    /// Whether the batch claimed the connection.
    #[cfg(test)]
    pub(super) fn is_claimed(&self) -> bool {
        matches!(self.0, Waiting::Claimed { .. })
    }

    /// Whether the batch is already committed.
    #[cfg(test)]
    pub(super) fn is_done(&self) -> bool {
        matches!(self.0, Waiting::Done)
    }
}

impl Drop for Pending {
    /// A claim nobody will commit inline goes to the writer thread.
    fn drop(&mut self) {
        if let Waiting::Claimed { shared, ticket, .. } = &self.0 {
            let state = shared.lock();
            if state.claim.as_ref().is_some_and(|c| c.ticket == *ticket) {
                shared.wake.notify_one();
            }
        }
    }
}

/// Commits the claim `ticket` on this thread, if the writer thread has not
/// taken it; `None` if it has (its answer comes on the claim's channel).
fn commit_claim(shared: &Shared, ticket: u64) -> Option<Result<(), CommitError>> {
    let (claim, mut conn) = {
        let mut state = shared.lock();
        if state.claim.as_ref().is_none_or(|c| c.ticket != ticket) {
            return None;
        }
        let conn = state.conn.take().expect("a claimed connection is free");
        (state.claim.take().expect("checked above"), conn)
    };
    let refs: Vec<&Change> = claim.changes.iter().collect();
    let result = commit(&mut conn, &refs, shared);
    if result.is_err() {
        shared.failed();
    }
    let needs = shared.wal.needs();
    let mut state = shared.lock();
    state.note_contention(false);
    match needs {
        WalNeeds::Nothing => {}
        WalNeeds::Checkpoint => ask_for_checkpoint(state.ask.as_ref()),
        // Left to the writer thread, before anything else it commits.
        WalNeeds::CheckpointHere => state.queue.push_front(Job::Checkpoint),
    }
    shared.give_back(state, conn);
    Some(result)
}

impl Writer {
    /// Starts the writer thread with `conn`, the single write connection to
    /// the database at `db`, and the checkpoint thread on `checkpoints`, a
    /// second connection to it. Call inside the tokio runtime: the failure
    /// hook runs in it.
    pub fn spawn(
        conn: Connection,
        checkpoints: Connection,
        db: PathBuf,
    ) -> std::io::Result<Writer> {
        let runtime = tokio::runtime::Handle::current();
        // Room for one request: asks made while one waits add nothing.
        let (ask, asked) = mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("portd-checkpoint".into())
            .spawn(move || checkpoint_when_asked(&checkpoints, &asked))?;
        count_frames(&conn);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                claim: None,
                conn: Some(conn),
                ask: Some(ask),
                tickets: 0,
                contended_at: None,
                stopping: false,
                abandoned: false,
            }),
            wake: Condvar::new(),
            on_failure: OnceLock::new(),
            db,
            wal: WalFrames::default(),
        });
        let for_thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("portd-writer".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                let stop = run(&for_thread);
                // `run` closed the connection and dropped the checkpoint
                // sender, which ends the checkpoint thread.
                let _ = checkpointer.join();
                if let Some(done) = stop {
                    let _ = done.send(());
                }
            })?;
        Ok(Writer {
            handle: Arc::new(Handle(shared)),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.0
    }

    /// Sets what runs when a commit fails (once; later calls are ignored).
    pub fn on_failure(&self, hook: FailureHook) {
        let _ = self.shared().on_failure.set(hook);
    }

    /// Commits once everything submitted before it has: for an answer that
    /// depends on earlier decisions but changes nothing itself. Done at
    /// once when nothing is claimed, queued or being committed.
    pub fn barrier(&self) -> Pending {
        let mut state = self.shared().lock();
        if !state.stopping && !state.has_work() && state.conn.is_some() {
            return Pending(Waiting::Done);
        }
        self.enqueue(&mut state, Vec::new())
    }

    /// Submits `changes`; call under the lock that made the decision, then
    /// await [`Pending::committed`] after releasing it. When nothing is
    /// claimed, queued or being committed, the batch claims the connection
    /// and commits inline when awaited.
    pub fn submit(&self, changes: Vec<Change>) -> Pending {
        if changes.is_empty() {
            return Pending(Waiting::Done);
        }
        let mut state = self.shared().lock();
        if state.stopping || state.is_contended() || state.has_work() || state.conn.is_none() {
            return self.enqueue(&mut state, changes);
        }
        state.tickets += 1;
        let ticket = state.tickets;
        let (done, rx) = oneshot::channel();
        state.claim = Some(Claim {
            ticket,
            changes,
            done,
        });
        Pending(Waiting::Claimed {
            shared: Arc::clone(self.shared()),
            ticket,
            rx,
        })
    }

    /// Drops ended leases and events older than `cutoff` (Unix ms), and
    /// all but the newest `keep` of each; returns the rows removed.
    pub async fn prune(&self, cutoff: i64, keep: i64) -> Result<u64, StoreError> {
        let (done, rx) = oneshot::channel();
        {
            let mut state = self.shared().lock();
            if state.stopping {
                return Err(CommitError::Stopped.into());
            }
            state.queue.push_back(Job::Prune { cutoff, keep, done });
            self.shared().wake.notify_one();
        }
        match rx.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CommitError::Stopped.into()),
        }
    }

    /// Stops the writer once everything submitted before has been written,
    /// and waits until it has closed its connection. Later submissions fail.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        {
            let mut state = self.shared().lock();
            if state.stopping {
                return;
            }
            state.stopping = true;
            state.queue.push_back(Job::Stop(done));
            self.shared().wake.notify_one();
        }
        let _ = rx.await;
    }

    /// Queues `changes` for the writer thread; after a stop, the batch
    /// fails as stopped.
    fn enqueue(&self, state: &mut State, changes: Vec<Change>) -> Pending {
        let (done, rx) = oneshot::channel();
        if !state.stopping {
            state.queue.push_back(Job::Write { changes, done });
            self.shared().wake.notify_one();
        }
        // Else `done` is dropped, and the receiver reports the stop.
        Pending(Waiting::Queued(rx))
    }
}
