//! Group commit: every change to leases, names and events goes through one
//! writer, which folds whatever has queued up into one transaction and
//! answers each submitter only after that transaction has committed.
//!
//! Decisions are made in memory under one lock and submitted in the order
//! they were made (the send happens under that lock), so a batch holds a
//! consistent history: a lease may be granted and released within it. The
//! batch is written as its net effect.
//!
//! The writer owns the one write connection on a thread of its own, so a
//! batch costs one wake-up of that thread and its statements run back to
//! back on prepared, cached statements: no hand-off between threads per
//! statement, which is what bounds a commit's latency under load.
//!
//! Checkpoints (copying the WAL back into the database file, with two
//! fsyncs) run on a second thread and connection, not inside a commit as
//! SQLite's automatic checkpoint would: a commit never waits for one.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::{Arc, OnceLock, mpsc};

use portd_api::EndReason;
use rusqlite::hooks::Wal;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{LeaseRow, StoreError};
/// One change to the durable state.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new active lease.
    Grant(LeaseRow),
    /// An active lease ends.
    End {
        id: String,
        reason: EndReason,
        at: i64,
    },
    /// `portctl run` started the command `pid` (which leads its own process
    /// group) for the active lease `id`.
    Command {
        id: String,
        pid: u32,
        start_ticks: u64,
    },
    /// The lease `id` was released with `keep` at `ticks` (clock ticks after
    /// boot): its processes running then are left alone.
    Kept { id: String, ticks: u64 },
    /// `(project, name)` remembers `port`.
    Remember {
        project: String,
        name: String,
        port: u16,
        at: i64,
    },
    /// `(project, name)` remembers nothing any more.
    Forget { project: String, name: String },
    /// A line of history.
    Event {
        at: i64,
        kind: String,
        lease_id: Option<String>,
        port: Option<u16>,
        pid: Option<u32>,
        detail: Option<String>,
    },
}

/// Work for the writer thread, in the order it was queued.
enum Job {
    Write {
        changes: Vec<Change>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Drops history older than `cutoff` (Unix ms) or past `keep` rows.
    Prune {
        cutoff: i64,
        keep: i64,
        done: oneshot::Sender<Result<u64, String>>,
    },
    /// Ends the thread; answered once its connection is closed.
    Stop(oneshot::Sender<()>),
}

/// Most batches folded into one transaction.
const MAX_FOLD: usize = 1024;
/// WAL frames (pages) after which a commit asks for a checkpoint: SQLite's
/// own automatic threshold.
const CHECKPOINT_FRAMES: c_int = 1000;
/// WAL frames after which the writer checkpoints itself, between two
/// commits. Under sustained writes the checkpoint thread never quite
/// catches up (frames keep arriving while it copies), and the WAL restarts
/// from its beginning only once every frame is copied: this bounds it.
pub const MAX_WAL_FRAMES: c_int = 8 * CHECKPOINT_FRAMES;

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
pub struct Pending(Option<oneshot::Receiver<Result<(), String>>>);

impl Pending {
    /// Waits until the batch is committed.
    pub async fn committed(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(message)) => Err(StoreError::Commit(message)),
                Err(_) => Err(stopped()),
            },
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Commit("the writer stopped".into())
}

impl Writer {
    /// Starts the writer thread on `conn`, the single write connection, and
    /// the checkpoint thread on `checkpoints`, a second connection to the
    /// same database. Call inside the tokio runtime: the failure hook runs
    /// in it.
    pub fn spawn(conn: Connection, checkpoints: Connection) -> std::io::Result<Writer> {
        let (queue, rx) = mpsc::channel();
        let on_failure = Arc::new(OnceLock::new());
        let hook = Arc::clone(&on_failure);
        let runtime = tokio::runtime::Handle::current();
        // Room for one request: asks made while one waits add nothing.
        let (ask, asked) = mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("portd-checkpoint".into())
            .spawn(move || checkpoint_when_asked(&checkpoints, &asked))?;
        conn.wal_hook(Some(note_wal_frames));
        std::thread::Builder::new()
            .name("portd-writer".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                let stop = run(conn, &rx, &hook, ask);
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

    /// Waits until everything submitted so far has committed: reads from
    /// SQLite after this see every change already answered or decided.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.barrier().committed().await
    }

    /// Drops ended leases and events older than `cutoff` (Unix ms), and
    /// all but the newest `keep` of each; returns the rows removed.
    pub async fn prune(&self, cutoff: i64, keep: i64) -> Result<u64, StoreError> {
        let (done, rx) = oneshot::channel();
        self.queue
            .send(Job::Prune { cutoff, keep, done })
            .map_err(|_| stopped())?;
        match rx.await {
            Ok(result) => result.map_err(StoreError::Commit),
            Err(_) => Err(stopped()),
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
thread_local! {
    /// Frames in the WAL after the writer thread's last commit.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// SQLite's WAL hook on the write connection, called after each commit on
/// the writer thread. Setting it also turns off the automatic checkpoint.
fn note_wal_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// The checkpoint thread: a passive checkpoint whenever the writer asks,
/// until the writer is gone. Passive: it copies what no reader still needs
/// and never blocks the writer or a reader.
fn checkpoint_when_asked(conn: &Connection, asked: &mpsc::Receiver<()>) {
    while asked.recv().is_ok() {
        if let Err(e) = passive_checkpoint(conn) {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }
}

/// Copies what it can of the WAL into the database; never waits for locks.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    let (busy, frames, copied) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    tracing::trace!(busy, frames, copied, "checkpoint");
    Ok(())
}

/// The writer thread: takes jobs until stopped (returning the stop's
/// answer) or until every handle is gone, folding queued writes into one
/// transaction each time.
fn run(
    mut conn: Connection,
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
                // Everything into the database file, the WAL emptied: a
                // clean stop leaves one file that holds it all, whichever
                // connection closes last.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "final checkpoint failed");
                }
                return Some(done);
            }
            Job::Prune { cutoff, keep, done } => {
                let result = prune(&mut conn, cutoff, keep).map_err(|e| e.to_string());
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
                    e.to_string()
                });
                let failed = result.is_err();
                for (_, done) in batches {
                    let _ = done.send(result.clone());
                }
                let frames = WAL_FRAMES.get();
                if frames >= MAX_WAL_FRAMES {
                    // Busy (the checkpoint thread is at it) is fine: the
                    // next commit tries again.
                    if let Err(e) = passive_checkpoint(&conn) {
                        tracing::warn!(error = %e, frames, "checkpoint failed");
                    }
                } else if frames >= CHECKPOINT_FRAMES {
                    // Full means a checkpoint is already asked for.
                    let _ = checkpoint.try_send(());
                }
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
                                let _ =
                                    done.send(Err("an earlier commit failed; ask again".into()));
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

/// The net effect of a run of changes.
#[derive(Default)]
struct Net<'a> {
    /// Leases granted in this batch, with their state at its end.
    granted: Vec<LeaseRow>,
    /// Ends of leases granted before this batch.
    ended: Vec<(&'a str, EndReason, i64)>,
    /// The last word on each name: the port it remembers and when it was
    /// used, or `None` when it was forgotten.
    names: HashMap<(&'a str, &'a str), Option<(u16, i64)>>,
    /// Commands registered for leases granted before this batch.
    commands: Vec<(&'a str, u32, u64)>,
    /// Releases with `keep` of leases granted before this batch.
    kept: Vec<(&'a str, u64)>,
    events: Vec<&'a Change>,
}

fn net<'a>(changes: &[&'a Change]) -> Net<'a> {
    let mut net = Net::default();
    let mut granted_at: HashMap<&str, usize> = HashMap::new();
    for change in changes {
        match change {
            Change::Grant(row) => {
                granted_at.insert(row.id.as_str(), net.granted.len());
                net.granted.push(row.clone());
            }
            Change::End { id, reason, at } => match granted_at.get(id.as_str()) {
                Some(&index) => {
                    let row = &mut net.granted[index];
                    row.state = "ended".into();
                    row.end_reason = Some(reason.as_str().into());
                    row.ended_at = Some(*at);
                }
                None => net.ended.push((id, *reason, *at)),
            },
            Change::Command {
                id,
                pid,
                start_ticks,
            } => match granted_at.get(id.as_str()) {
                Some(&index) => {
                    let row = &mut net.granted[index];
                    row.command_pid = Some(i64::from(*pid));
                    row.command_start_ticks = Some(*start_ticks as i64);
                }
                None => net.commands.push((id, *pid, *start_ticks)),
            },
            Change::Kept { id, ticks } => match granted_at.get(id.as_str()) {
                Some(&index) => net.granted[index].kept_ticks = Some(*ticks as i64),
                None => net.kept.push((id, *ticks)),
            },
            Change::Remember {
                project,
                name,
                port,
                at,
            } => {
                net.names.insert((project, name), Some((*port, *at)));
            }
            Change::Forget { project, name } => {
                net.names.insert((project, name), None);
            }
            Change::Event { .. } => net.events.push(change),
        }
    }
    net
}

fn write(conn: &mut Connection, changes: &[&Change]) -> rusqlite::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let net = net(changes);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        // Ends first: they free ports that leases granted in this batch take.
        let mut end = tx.prepare_cached(
            "UPDATE leases SET state = 'ended', end_reason = ?2, ended_at = ?3
             WHERE id = ?1 AND state = 'active'",
        )?;
        for (id, reason, at) in &net.ended {
            end.execute(params![id, reason.as_str(), at])?;
        }
        let mut grant = tx.prepare_cached(
            "INSERT INTO leases (id, port, name, project, owner_pid, owner_start_ticks,
                owner_start_time, owner_uid, owner_sid, boot_id, state, end_reason, granted_at,
                granted_ticks, expires_at, ended_at, command_pid, command_start_ticks,
                kept_ticks)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18, ?19)",
        )?;
        for row in &net.granted {
            grant.execute(params![
                row.id,
                row.port,
                row.name,
                row.project,
                row.owner_pid,
                row.owner_start_ticks,
                row.owner_start_time,
                row.owner_uid,
                row.owner_sid,
                row.boot_id,
                row.state,
                row.end_reason,
                row.granted_at,
                row.granted_ticks,
                row.expires_at,
                row.ended_at,
                row.command_pid,
                row.command_start_ticks,
                row.kept_ticks,
            ])?;
        }
        // The command is recorded even if the lease has ended since: its
        // process group is how the lease's orphans are found.
        let mut command = tx.prepare_cached(
            "UPDATE leases SET command_pid = ?2, command_start_ticks = ?3 WHERE id = ?1",
        )?;
        for (id, pid, start_ticks) in &net.commands {
            command.execute(params![id, pid, *start_ticks as i64])?;
        }
        let mut kept = tx.prepare_cached("UPDATE leases SET kept_ticks = ?2 WHERE id = ?1")?;
        for (id, ticks) in &net.kept {
            kept.execute(params![id, *ticks as i64])?;
        }
        let mut remember = tx.prepare_cached(
            "INSERT INTO names (project, name, port, last_used) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (project, name) DO UPDATE
                SET port = excluded.port, last_used = excluded.last_used",
        )?;
        let mut forget = tx.prepare_cached("DELETE FROM names WHERE project = ?1 AND name = ?2")?;
        for ((project, name), last) in &net.names {
            match last {
                Some((port, at)) => remember.execute(params![project, name, port, at])?,
                None => forget.execute(params![project, name])?,
            };
        }
        let mut record = tx.prepare_cached(
            "INSERT INTO events (at, kind, lease_id, port, pid, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for change in &net.events {
            if let Change::Event {
                at,
                kind,
                lease_id,
                port,
                pid,
                detail,
            } = change
            {
                record.execute(params![at, kind, lease_id, port, pid, detail])?;
            }
        }
    }
    tx.commit()
}

/// Drops history older than `cutoff` or past the newest `keep` rows of each
/// table; returns the rows removed.
fn prune(conn: &mut Connection, cutoff: i64, keep: i64) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let events = tx.execute(
        "DELETE FROM events WHERE at < ?1
            OR seq <= (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        params![cutoff, keep],
    )?;
    let leases = tx.execute(
        "DELETE FROM leases WHERE state = 'ended' AND (ended_at < ?1 OR id IN (
            SELECT id FROM leases WHERE state = 'ended' ORDER BY ended_at DESC LIMIT -1 OFFSET ?2))",
        params![cutoff, keep],
    )?;
    tx.commit()?;
    Ok((events + leases) as u64)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::{Store, events, leases, names};

    fn row(id: &str, port: u16) -> LeaseRow {
        LeaseRow {
            id: id.into(),
            port: i64::from(port),
            name: None,
            project: None,
            owner_pid: 1,
            owner_start_ticks: 1,
            owner_start_time: 1.0,
            owner_uid: 0,
            owner_sid: 1,
            boot_id: "b".into(),
            state: "active".into(),
            end_reason: None,
            granted_at: 1,
            granted_ticks: 1,
            expires_at: None,
            ended_at: None,
            command_pid: None,
            command_start_ticks: None,
            kept_ticks: None,
        }
    }

    #[test]
    fn a_lease_granted_and_ended_in_one_batch_is_written_ended() {
        let changes = [
            Change::End {
                id: "old".into(),
                reason: EndReason::Released,
                at: 5,
            },
            Change::Grant(row("a", 8000)),
            Change::End {
                id: "a".into(),
                reason: EndReason::Released,
                at: 6,
            },
            Change::Grant(row("b", 8000)),
        ];
        let refs: Vec<&Change> = changes.iter().collect();
        let net = net(&refs);
        assert_eq!(net.ended, [("old", EndReason::Released, 5)]);
        assert_eq!(net.granted.len(), 2);
        assert_eq!(
            (net.granted[0].state.as_str(), net.granted[0].ended_at),
            ("ended", Some(6))
        );
        assert_eq!(net.granted[1].state, "active");
    }

    #[test]
    fn the_last_remembered_port_of_a_name_wins() {
        let changes = [
            Change::Remember {
                project: "/p".into(),
                name: "api".into(),
                port: 8000,
                at: 1,
            },
            Change::Remember {
                project: "/p".into(),
                name: "api".into(),
                port: 8001,
                at: 2,
            },
        ];
        let refs: Vec<&Change> = changes.iter().collect();
        assert_eq!(net(&refs).names[&("/p", "api")], Some((8001, 2)));
    }

    #[test]
    fn a_name_forgotten_after_it_was_remembered_is_deleted_and_the_reverse() {
        let remember = |port| Change::Remember {
            project: "/p".into(),
            name: "api".into(),
            port,
            at: 1,
        };
        let forget = Change::Forget {
            project: "/p".into(),
            name: "api".into(),
        };
        let changes = [remember(8000), forget.clone()];
        let refs: Vec<&Change> = changes.iter().collect();
        assert_eq!(net(&refs).names[&("/p", "api")], None);
        let changes = [forget, remember(8001)];
        let refs: Vec<&Change> = changes.iter().collect();
        assert_eq!(net(&refs).names[&("/p", "api")], Some((8001, 1)));
    }

    #[tokio::test]
    async fn a_forget_deletes_the_row_a_remember_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = open(dir.path()).await;
        let (project, name) = ("/p".to_string(), "api".to_string());
        writer
            .submit(vec![Change::Remember {
                project: project.clone(),
                name: name.clone(),
                port: 8000,
                at: 1,
            }])
            .committed()
            .await
            .unwrap();
        let mut conn = store.reader().acquire().await.unwrap();
        assert_eq!(names::all(&mut conn).await.unwrap().len(), 1);
        writer
            .submit(vec![Change::Forget { project, name }])
            .committed()
            .await
            .unwrap();
        assert!(names::all(&mut conn).await.unwrap().is_empty());
        drop(conn);
        writer.close().await;
    }

    const DEADLINE: Duration = Duration::from_secs(20);

    async fn open(dir: &Path) -> (Store, Writer) {
        let store = Store::open(&dir.join("portd.db")).await.expect("open");
        let writer = Writer::spawn(
            store.open_writer().expect("writer"),
            store.open_writer().expect("checkpointer"),
        )
        .expect("spawn");
        (store, writer)
    }

    fn event(at: i64) -> Change {
        Change::Event {
            at,
            kind: "granted".into(),
            lease_id: None,
            port: Some(8000),
            pid: Some(1),
            detail: None,
        }
    }

    /// Grants `count` leases, one commit each, calling `after` after each.
    async fn commit_leases(writer: &Writer, count: u16, mut after: impl FnMut()) {
        for i in 0..count {
            let granted = row(&format!("lease-{i:05}"), 10_000 + i);
            writer
                .submit(vec![Change::Grant(granted), event(i64::from(i))])
                .committed()
                .await
                .unwrap();
            after();
        }
    }

    async fn active(store: &Store) -> Vec<String> {
        let mut conn = store.reader().acquire().await.expect("reader");
        let rows = leases::all_active(&mut conn).await.expect("read");
        rows.into_iter().map(|r| r.id).collect()
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_and_calls_the_hook_then_writing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = open(dir.path()).await;
        let (called, hook_ran) = mpsc::channel();
        writer.on_failure(Box::new(move || {
            let _ = called.send(());
        }));
        // Port 0 breaks the table's CHECK constraint: the commit fails.
        let failed = writer.submit(vec![Change::Grant(row("bad", 0))]);
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
            let later = writer.submit(vec![Change::Grant(row("good", 8000))]);
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
        assert_eq!(active(&store).await, ["good"]);
        writer.close().await;
    }

    #[tokio::test]
    async fn after_close_nothing_more_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = open(dir.path()).await;
        let before = writer.submit(vec![Change::Grant(row("before", 8000))]);
        writer.close().await;
        before.committed().await.expect("queued before the close");
        let after = writer.submit(vec![Change::Grant(row("after", 8001))]);
        let error = after.committed().await.expect_err("the writer is gone");
        assert!(error.to_string().contains("stopped"), "{error}");
        assert!(writer.prune(i64::MAX, 0).await.is_err());
        assert_eq!(active(&store).await, ["before"]);
    }

    #[tokio::test]
    async fn prune_drops_history_past_the_cutoff_and_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = open(dir.path()).await;
        let changes: Vec<Change> = (1..=10).map(event).collect();
        writer.submit(changes).committed().await.unwrap();
        // Older than 4: 1, 2, 3; of the rest, only the newest 5 are kept.
        assert_eq!(writer.prune(4, 5).await.unwrap(), 5);
        let mut conn = store.reader().acquire().await.unwrap();
        assert_eq!(events::count(&mut conn).await.unwrap(), 5);
        let newest = events::since(&mut conn, 6, 100).await.unwrap();
        assert_eq!(newest.len(), 5, "the five left are the newest: {newest:?}");
        drop(conn);
        writer.close().await;
    }

    #[tokio::test]
    async fn checkpoints_run_while_the_writer_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, writer) = open(dir.path()).await;
        let db = dir.path().join("portd.db");
        let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        let initial = size();
        // One commit per lease: well over CHECKPOINT_FRAMES frames in all.
        commit_leases(&writer, 2_000, || ()).await;
        // Only a checkpoint moves pages from the WAL into the database file.
        let deadline = Instant::now() + DEADLINE;
        while size() <= initial {
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {initial} bytes: no checkpoint ran"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        writer.close().await;
    }

    #[tokio::test]
    async fn the_writer_bounds_the_wal_when_the_checkpoint_thread_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("portd.db")).await.unwrap();
        // A checkpoint thread on a read-only connection: it never copies a
        // frame, as under writes that never pause.
        let read_only =
            Connection::open_with_flags(store.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let writer = Writer::spawn(store.open_writer().unwrap(), read_only).unwrap();
        let wal = dir.path().join("portd.db-wal");
        let frame = 24 + 4096;
        // Past MAX_WAL_FRAMES a commit checkpoints; one that finds the
        // checkpoint thread busy leaves it to the next, so allow half again.
        let bound = MAX_WAL_FRAMES as u64 * 3 / 2 * frame;
        let mut largest = 0;
        commit_leases(&writer, 4_000, || {
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        })
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
    }
}
