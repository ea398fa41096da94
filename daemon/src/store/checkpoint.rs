//! Checkpoints off the commit path: copying the WAL back into the database
//! file (two fsyncs and a page copy) runs on a thread and connection of its
//! own, not inside a commit as SQLite's automatic checkpoint would, so no
//! commit waits for one. Past [`MAX_WAL_FRAMES`] the writer checkpoints
//! itself between two commits, which bounds the WAL under writes that never
//! pause.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::mpsc;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

/// WAL frames (pages) after which a commit asks for a checkpoint: SQLite's
/// own automatic threshold.
const CHECKPOINT_FRAMES: c_int = 1000;
/// WAL frames after which the writer checkpoints itself, between two
/// commits. Under sustained writes the checkpoint thread never quite
/// catches up (frames keep arriving while it copies), and the WAL restarts
/// from its beginning only once every frame is copied: this bounds it.
pub const MAX_WAL_FRAMES: c_int = 8 * CHECKPOINT_FRAMES;

thread_local! {
    /// Frames in the WAL after the writer thread's last commit.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// Turns SQLite's automatic checkpoint off on the write connection and
/// counts the WAL's frames after each commit instead.
pub fn count_frames(conn: &Connection) {
    conn.wal_hook(Some(note_wal_frames));
}

/// SQLite's WAL hook on the write connection, called after each commit on
/// the writer thread.
fn note_wal_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// After a commit on the writer thread: past [`CHECKPOINT_FRAMES`], asks
/// the checkpoint thread (`ask`) for a checkpoint; past [`MAX_WAL_FRAMES`],
/// checkpoints on `conn` itself.
pub fn after_commit(conn: &Connection, ask: &mpsc::SyncSender<()>) {
    let frames = WAL_FRAMES.get();
    if frames >= MAX_WAL_FRAMES {
        // Busy (the checkpoint thread is at it) is fine: the next commit
        // tries again.
        if let Err(e) = passive_checkpoint(conn) {
            tracing::warn!(error = %e, frames, "checkpoint failed");
        }
    } else if frames >= CHECKPOINT_FRAMES {
        // Full means a checkpoint is already asked for.
        let _ = ask.try_send(());
    }
}

/// The checkpoint thread: a passive checkpoint whenever the writer asks,
/// until the writer is gone. Passive: it copies what no reader still needs
/// and never blocks the writer or a reader.
pub fn checkpoint_when_asked(conn: &Connection, asked: &mpsc::Receiver<()>) {
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

/// Everything into the database file and the WAL emptied, at a clean stop:
/// the database file alone then holds it all, whichever connection closes
/// last.
pub fn truncate(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::store::testing::{DEADLINE, commit_leases, open};

    #[tokio::test]
    async fn checkpoints_run_while_the_writer_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let db = dir.path().join("portd.db");
        let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        let initial = size();
        // One commit per lease: well over CHECKPOINT_FRAMES frames in all.
        commit_leases(|c| store.submit(c), 2_000, || ()).await;
        // Only a checkpoint moves pages from the WAL into the database file.
        let deadline = Instant::now() + DEADLINE;
        while size() <= initial {
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {initial} bytes: no checkpoint ran"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.close().await;
    }
}
