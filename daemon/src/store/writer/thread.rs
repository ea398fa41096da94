//! The writer thread: it commits what was queued while the write
//! connection was claimed or in use, folding every write queued by then
//! (and the claim before them) into one transaction, and runs the jobs only
//! it runs (pruning, the checkpoint an inline commit left to it, the stop).

use std::sync::PoisonError;
use std::sync::mpsc::SyncSender;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Done, Job, Shared, commit};
use crate::store::checkpoint::{WalNeeds, ask_for_checkpoint, checkpoint_here, truncate};
use crate::store::commit::{Change, commit_error, prune};

/// Most batches folded into one transaction.
const MAX_FOLD: usize = 1024;

/// Takes jobs until stopped (returning the stop's answer) or until every
/// handle is gone and nothing is left to write. It waits for the
/// connection while an inline commit uses it.
pub(super) fn run(shared: &Shared) -> Option<oneshot::Sender<()>> {
    let mut state = shared.lock();
    loop {
        let mut conn = match state.conn.take() {
            Some(conn) if state.has_work() => conn,
            Some(conn) if state.abandoned => {
                state.ask = None;
                drop(state);
                drop(conn);
                return None;
            }
            other => {
                state.conn = other;
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
        };
        // A claim came before everything queued: it goes first.
        let job = match state.claim.take() {
            Some(claim) => Job::Write {
                changes: claim.changes,
                done: claim.done,
            },
            None => state.queue.pop_front().expect("there is work"),
        };
        // Whether a write folded changes that came behind its first.
        let folded = match job {
            Job::Stop(done) => {
                let ask = state.ask.take();
                drop(state);
                truncate(&conn);
                drop(conn);
                drop(ask);
                return Some(done);
            }
            Job::Prune { cutoff, keep, done } => {
                drop(state);
                let result =
                    prune(&mut conn, cutoff, keep).map_err(|e| commit_error(&e, &shared.db));
                let _ = done.send(result);
                false
            }
            Job::Checkpoint => {
                drop(state);
                checkpoint_here(&conn);
                false
            }
            Job::Write { changes, done } => {
                let mut batches = vec![(changes, done)];
                while batches.len() < MAX_FOLD {
                    match state.queue.pop_front() {
                        Some(Job::Write { changes, done }) => batches.push((changes, done)),
                        Some(other) => {
                            state.queue.push_front(other);
                            break;
                        }
                        None => break,
                    }
                }
                let ask = state.ask.clone();
                drop(state);
                let folded = batches.len() > 1;
                write_batches(&mut conn, batches, shared, ask.as_ref());
                folded
            }
        };
        state = shared.lock();
        state.note_contention(folded);
        state.conn = Some(conn);
    }
}

/// Commits `batches` as one transaction and answers each; after a failure,
/// fails what was queued behind them.
fn write_batches(
    conn: &mut Connection,
    batches: Vec<(Vec<Change>, Done)>,
    shared: &Shared,
    ask: Option<&SyncSender<()>>,
) {
    let changes: Vec<&Change> = batches.iter().flat_map(|(c, _)| c).collect();
    let result = commit(conn, &changes, shared);
    let failed = result.is_err();
    for (_, done) in batches {
        let _ = done.send(result.clone());
    }
    match shared.wal.needs() {
        WalNeeds::Nothing => {}
        WalNeeds::Checkpoint => ask_for_checkpoint(ask),
        WalNeeds::CheckpointHere => checkpoint_here(conn),
    }
    if failed {
        shared.failed();
    }
}
