//! Group commit: every change to leases, names and events goes through one
//! writer task, which folds whatever has queued up into one transaction and
//! answers each submitter only after that transaction has committed.
//!
//! Decisions are made in memory under one lock and submitted in the order
//! they were made (the send happens under that lock), so a batch holds a
//! consistent history: a lease may be granted and released within it. The
//! batch is written as its net effect, a handful of multi-row statements,
//! which is what makes commits cheap under load.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use portd_api::EndReason;
use sqlx::{AssertSqlSafe, SqlitePool};
use tokio::sync::{mpsc, oneshot};

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
    /// `(project, name)` remembers `port`.
    Remember {
        project: String,
        name: String,
        port: u16,
        at: i64,
    },
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

struct Batch {
    changes: Vec<Change>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Most batches folded into one transaction.
const MAX_FOLD: usize = 1024;
/// The row counts multi-row statements come in. A batch is cut greedily
/// into these sizes, so each statement has one of a few shapes that sqlx's
/// cache keeps prepared, instead of a new text (parsed and cached anew) for
/// every batch size. The largest stays far below SQLite's 32766 bound values.
const STATEMENT_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

/// Splits `items` into runs whose lengths are all in [`STATEMENT_ROWS`].
fn shaped<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut runs = Vec::new();
    while !items.is_empty() {
        let size = STATEMENT_ROWS
            .into_iter()
            .find(|&n| n <= items.len())
            .unwrap_or(1);
        let (run, rest) = items.split_at(size);
        runs.push(run);
        items = rest;
    }
    runs
}

/// Called by the writer task after a commit failed, before it fails the
/// batches already queued (they were decided on state that never reached
/// the database).
pub type FailureHook = Box<dyn Fn() + Send + Sync>;

/// The handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::UnboundedSender<Batch>,
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
                Err(_) => Err(StoreError::Commit("the writer stopped".into())),
            },
        }
    }
}

impl Writer {
    /// Starts the writer task on the single writer connection.
    pub fn spawn(pool: SqlitePool) -> Writer {
        let (queue, rx) = mpsc::unbounded_channel();
        let on_failure = Arc::new(OnceLock::new());
        tokio::spawn(run(pool, rx, Arc::clone(&on_failure)));
        Writer { queue, on_failure }
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

    fn enqueue(&self, changes: Vec<Change>) -> Pending {
        let (done, rx) = oneshot::channel();
        if self.queue.send(Batch { changes, done }).is_err() {
            let (failed, rx) = oneshot::channel();
            let _ = failed.send(Err("the writer stopped".into()));
            return Pending(Some(rx));
        }
        Pending(Some(rx))
    }
}

async fn run(
    pool: SqlitePool,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    on_failure: Arc<OnceLock<FailureHook>>,
) {
    while let Some(first) = rx.recv().await {
        let mut batches = vec![first];
        while batches.len() < MAX_FOLD {
            match rx.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(_) => break,
            }
        }
        let changes: Vec<&Change> = batches.iter().flat_map(|b| &b.changes).collect();
        let result = write(&pool, &changes).await.map_err(|e| {
            tracing::error!(error = %e, changes = changes.len(), "commit failed");
            e.to_string()
        });
        let failed = result.is_err();
        for batch in batches {
            let _ = batch.done.send(result.clone());
        }
        if failed {
            // The hook stops new decisions; what is queued already was
            // decided on state the database does not have: fail it too.
            if let Some(hook) = on_failure.get() {
                hook();
            }
            while let Ok(batch) = rx.try_recv() {
                let _ = batch
                    .done
                    .send(Err("an earlier commit failed; ask again".into()));
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
    names: HashMap<(&'a str, &'a str), (u16, i64)>,
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
            Change::Remember {
                project,
                name,
                port,
                at,
            } => {
                net.names.insert((project, name), (*port, *at));
            }
            Change::Event { .. } => net.events.push(change),
        }
    }
    net
}

async fn write(pool: &SqlitePool, changes: &[&Change]) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let net = net(changes);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Ends first: they free ports that leases granted in this batch take.
    for chunk in shaped(&net.ended) {
        let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "WITH e(id, reason, at) AS (VALUES {values})
             UPDATE leases SET state = 'ended',
                end_reason = (SELECT reason FROM e WHERE e.id = leases.id),
                ended_at = (SELECT at FROM e WHERE e.id = leases.id)
             WHERE state = 'active' AND id IN (SELECT id FROM e)"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (id, reason, at) in chunk {
            query = query.bind(*id).bind(reason.as_str()).bind(*at);
        }
        query.execute(&mut *tx).await?;
    }
    for chunk in shaped(&net.granted) {
        let values =
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO leases (id, port, name, project, owner_pid, owner_start_ticks, owner_start_time,
                owner_uid, owner_sid, boot_id, state, end_reason, granted_at, granted_ticks, expires_at, ended_at)
             VALUES {values}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(&row.id)
                .bind(row.port)
                .bind(&row.name)
                .bind(&row.project)
                .bind(row.owner_pid)
                .bind(row.owner_start_ticks)
                .bind(row.owner_start_time)
                .bind(row.owner_uid)
                .bind(row.owner_sid)
                .bind(&row.boot_id)
                .bind(&row.state)
                .bind(&row.end_reason)
                .bind(row.granted_at)
                .bind(row.granted_ticks)
                .bind(row.expires_at)
                .bind(row.ended_at);
        }
        query.execute(&mut *tx).await?;
    }
    let names: Vec<_> = net.names.iter().collect();
    for chunk in shaped(&names) {
        let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO names (project, name, port, last_used) VALUES {values}
             ON CONFLICT (project, name) DO UPDATE SET port = excluded.port, last_used = excluded.last_used"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for ((project, name), (port, at)) in chunk {
            query = query
                .bind(*project)
                .bind(*name)
                .bind(i64::from(*port))
                .bind(*at);
        }
        query.execute(&mut *tx).await?;
    }
    for chunk in shaped(&net.events) {
        let values = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql =
            format!("INSERT INTO events (at, kind, lease_id, port, pid, detail) VALUES {values}");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for change in chunk {
            if let Change::Event {
                at,
                kind,
                lease_id,
                port,
                pid,
                detail,
            } = change
            {
                query = query
                    .bind(*at)
                    .bind(kind)
                    .bind(lease_id)
                    .bind(port.map(i64::from))
                    .bind(pid.map(i64::from))
                    .bind(detail);
            }
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn batches_are_cut_into_a_few_statement_shapes() {
        let items: Vec<u32> = (0..333).collect();
        let runs = shaped(&items);
        let sizes: Vec<usize> = runs.iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [256, 64, 4, 4, 4, 1]);
        assert_eq!(runs.concat(), items, "in order, nothing lost");
        assert!(shaped::<u32>(&[]).is_empty());
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
        assert_eq!(net(&refs).names[&("/p", "api")], (8001, 2));
    }
}
