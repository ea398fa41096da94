//! Group commit: every change to leases, names and events goes through one
//! writer, which folds whatever has queued up into one transaction
//! (`commit`) and answers each submitter only after that transaction has
//! committed.
//!
//! Decisions are made in memory under one lock and submitted in the order
//! they were made (the send happens under that lock), so a batch holds a
//! consistent history.
//!
//! The writer owns the one write connection on a thread of its own, so a
//! batch costs one wake-up of that thread and its statements run back to
//! back on prepared, cached statements: no hand-off between threads per
//! statement, which is what bounds a commit's latency under load.
//! Checkpoints run on a second thread (`checkpoint`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, mpsc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;
use super::checkpoint::{after_commit, checkpoint_when_asked, count_frames, truncate};
use super::commit::{Change, commit_error, prune, write};

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

/// Work for the writer thread, in the order it was queued.
enum Job {
    Write {
        changes: Vec<Change>,
        done: oneshot::Sender<Result<(), CommitError>>,
    },
    /// Drops history older than `cutoff` (Unix ms) or past `keep` rows.
    Prune {
        cutoff: i64,
        keep: i64,
        done: oneshot::Sender<Result<u64, CommitError>>,
    },
    /// Ends the thread; answered once its connection is closed.
    Stop(oneshot::Sender<()>),
}

/// Most batches folded into one transaction.
const MAX_FOLD: usize = 1024;

/// Called by the writer after a commit failed, before it fails the batches
/// already queued (they were decided on state that never reached the
/// database). It runs inside the daemon's tokio runtime.
pub type FailureHook = Box<dyn Fn() + Send + Sync>;

/// The handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    on_failure: Arc<OnceLock<FailureHook>>,
}

/// A submitted batch, to await after the submitting lock is released.
pub struct Pending(Option<oneshot::Receiver<Result<(), CommitError>>>);

impl Pending {
    /// Waits until the batch is committed.
    pub async fn committed(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(result) => Ok(result?),
                Err(_) => Err(CommitError::Stopped.into()),
            },
        }
    }
}

impl Writer {
    /// Starts the writer thread on `conn`, the single write connection to
    /// the database at `db`, and the checkpoint thread on `checkpoints`, a
    /// second connection to it. Call inside the tokio runtime: the failure
    /// hook runs in it.
    pub fn spawn(
        conn: Connection,
        checkpoints: Connection,
        db: PathBuf,
    ) -> std::io::Result<Writer> {
        let (queue, rx) = mpsc::channel();
        let on_failure = Arc::new(OnceLock::new());
        let hook = Arc::clone(&on_failure);
        let runtime = tokio::runtime::Handle::current();
        // Room for one request: asks made while one waits add nothing.
        let (ask, asked) = mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("portd-checkpoint".into())
            .spawn(move || checkpoint_when_asked(&checkpoints, &asked))?;
        count_frames(&conn);
        std::thread::Builder::new()
            .name("portd-writer".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                let stop = run(conn, &db, &rx, &hook, ask);
                // `run` dropped its connection and the checkpoint sender.
                let _ = checkpointer.join();
                if let Some(done) = stop {
                    let _ = done.send(());
                }
            })?;
        Ok(Writer { queue, on_failure })
    }

    /// Sets what runs when a commit fails (once; later calls are ignored).
    pub fn on_failure(&self, hook: FailureHook) {
        let _ = self.on_failure.set(hook);
    }

    /// A marker that commits once everything queued before it has: for an
    /// answer that depends on earlier decisions but changes nothing itself.
    pub fn barrier(&self) -> Pending {
        self.enqueue(Vec::new())
    }

    /// Queues `changes`; call under the lock that made the decision, then
    /// await [`Pending::committed`] after releasing it.
    pub fn submit(&self, changes: Vec<Change>) -> Pending {
        if changes.is_empty() {
            return Pending(None);
        }
        self.enqueue(changes)
    }

    /// Drops ended leases and events older than `cutoff` (Unix ms), and
    /// all but the newest `keep` of each; returns the rows removed.
    pub async fn prune(&self, cutoff: i64, keep: i64) -> Result<u64, StoreError> {
        let (done, rx) = oneshot::channel();
        self.queue
            .send(Job::Prune { cutoff, keep, done })
            .map_err(|_| CommitError::Stopped)?;
        match rx.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CommitError::Stopped.into()),
        }
    }

    /// Stops the writer once everything queued before has been written,
    /// and waits until it has closed its connection. Later submissions fail.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.queue.send(Job::Stop(done)).is_ok() {
            let _ = rx.await;
        }
    }

    fn enqueue(&self, changes: Vec<Change>) -> Pending {
        let (done, rx) = oneshot::channel();
        // A failed send drops `done`, and the receiver reports the stop.
        let _ = self.queue.send(Job::Write { changes, done });
        Pending(Some(rx))
    }
}

/// The writer thread: takes jobs until stopped (returning the stop's
/// answer) or until every handle is gone, folding queued writes into one
/// transaction each time.
fn run(
    mut conn: Connection,
    db: &std::path::Path,
    rx: &mpsc::Receiver<Job>,
    on_failure: &OnceLock<FailureHook>,
    checkpoint: mpsc::SyncSender<()>,
) -> Option<oneshot::Sender<()>> {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return None,
            },
        };
        match job {
            Job::Stop(done) => {
                truncate(&conn);
                return Some(done);
            }
            Job::Prune { cutoff, keep, done } => {
                let result = prune(&mut conn, cutoff, keep).map_err(|e| commit_error(&e, db));
                let _ = done.send(result);
            }
            Job::Write { changes, done } => {
                let mut batches = vec![(changes, done)];
                while batches.len() < MAX_FOLD {
                    match rx.try_recv() {
                        Ok(Job::Write { changes, done }) => batches.push((changes, done)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let changes: Vec<&Change> = batches.iter().flat_map(|(c, _)| c).collect();
                let result = write(&mut conn, &changes).map_err(|e| {
                    tracing::error!(error = %e, changes = changes.len(), "commit failed");
                    commit_error(&e, db)
                });
                let failed = result.is_err();
                for (_, done) in batches {
                    let _ = done.send(result.clone());
                }
                after_commit(&conn, &checkpoint);
                if failed {
                    // The hook stops new decisions; the writes queued already
                    // were decided on state the database does not have: fail
                    // them too (a stop or a prune still runs).
                    if let Some(hook) = on_failure.get() {
                        hook();
                    }
                    while let Ok(job) = rx.try_recv() {
                        match job {
                            Job::Write { done, .. } => {
                                let _ = done.send(Err(CommitError::EarlierFailed));
                            }
                            other => {
                                next = Some(other);
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::store::checkpoint::MAX_WAL_FRAMES;
    use crate::store::settings::open_writer;
    use crate::store::testing::{DEADLINE, active_ids, commit_leases, event, lease, open};

    #[tokio::test]
    async fn a_failed_commit_is_reported_and_calls_the_hook_then_writing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let (called, hook_ran) = mpsc::channel();
        store.on_failure(Box::new(move || {
            let _ = called.send(());
        }));
        // Port 0 breaks the table's CHECK constraint: the commit fails.
        let failed = store.submit(vec![Change::Grant(lease("bad", 0))]);
        let error = failed.committed().await.expect_err("the commit must fail");
        assert!(error.to_string().contains("CHECK"), "{error}");
        hook_ran
            .recv_timeout(DEADLINE)
            .expect("the failure hook ran");
        // After the hook the writer fails what is queued (decided on state
        // the database lacks); a batch may land in that window. Then it
        // writes again.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let later = store.submit(vec![Change::Grant(lease("good", 8000))]);
            match later.committed().await {
                Ok(()) => break,
                Err(e) => {
                    assert!(e.to_string().contains("earlier commit failed"), "{e}");
                    assert!(
                        Instant::now() < deadline,
                        "no batch commits after a failure"
                    );
                }
            }
        }
        assert_eq!(active_ids(&store).await, ["good"]);
        store.close().await;
    }

    #[tokio::test]
    async fn a_full_disk_is_told_apart_from_other_failures() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        // SQLITE_FULL, as a full file system gives it: a writer whose
        // database may not grow by a page (SQLite raises the limit to the
        // pages the file has).
        let conn = open_writer(store.path()).unwrap();
        conn.execute_batch("PRAGMA max_page_count = 1").unwrap();
        let writer = Writer::spawn(
            conn,
            open_writer(store.path()).unwrap(),
            store.path().to_path_buf(),
        )
        .unwrap();
        let mut error = None;
        for at in 0..10_000 {
            if let Err(e) = writer.submit(vec![event(at)]).committed().await {
                error = Some(e);
                break;
            }
        }
        let error = error.expect("10,000 events fit in a database that may not grow");
        match &error {
            StoreError::Commit(CommitError::DiskFull(path)) => assert_eq!(path, store.path()),
            other => panic!("expected a full disk, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains("disk is full"), "{message}");
        assert!(
            message.contains(&store.path().display().to_string()),
            "{message}"
        );
        writer.close().await;
        store.close().await;
    }

    #[tokio::test]
    async fn after_close_nothing_more_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let before = store.submit(vec![Change::Grant(lease("before", 8000))]);
        store.close().await;
        before.committed().await.expect("queued before the close");
        let after = store.submit(vec![Change::Grant(lease("after", 8001))]);
        let error = after.committed().await.expect_err("the writer is gone");
        assert!(error.to_string().contains("stopped"), "{error}");
        assert!(store.prune(i64::MAX, 0).await.is_err());
        drop(store);
        let reopened = open(dir.path()).await;
        assert_eq!(active_ids(&reopened).await, ["before"]);
        reopened.close().await;
    }

    #[tokio::test]
    async fn prune_drops_history_past_the_cutoff_and_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let changes: Vec<Change> = (1..=10).map(event).collect();
        store.submit(changes).committed().await.unwrap();
        // Older than 4: 1, 2, 3; of the rest, only the newest 5 are kept.
        assert_eq!(store.prune(4, 5).await.unwrap(), 5);
        let mut reader = store.read().await.unwrap();
        assert_eq!(reader.event_count().await.unwrap(), 5);
        let newest = reader.events_since(6, 100).await.unwrap();
        assert_eq!(newest.len(), 5, "the five left are the newest: {newest:?}");
        drop(reader);
        store.close().await;
    }

    #[tokio::test]
    async fn the_writer_bounds_the_wal_when_the_checkpoint_thread_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        // A checkpoint thread on a read-only connection: it never copies a
        // frame, as under writes that never pause.
        let read_only =
            Connection::open_with_flags(store.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let writer = Writer::spawn(
            open_writer(store.path()).unwrap(),
            read_only,
            store.path().to_path_buf(),
        )
        .unwrap();
        let wal = dir.path().join("portd.db-wal");
        let frame = 24 + 4096;
        // Past MAX_WAL_FRAMES a commit checkpoints; one that finds the
        // checkpoint thread busy leaves it to the next, so allow half again.
        let bound = MAX_WAL_FRAMES as u64 * 3 / 2 * frame;
        let mut largest = 0;
        commit_leases(
            |c| writer.submit(c),
            4_000,
            || {
                largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            },
        )
        .await;
        assert!(
            largest > bound / 2,
            "the WAL reached only {largest} bytes: the test wrote too little to tell"
        );
        assert!(
            largest <= bound,
            "the WAL grew to {largest} bytes, over {bound}"
        );
        writer.close().await;
        store.close().await;
    }
}
