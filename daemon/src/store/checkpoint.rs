//! Checkpoints off the commit path: copying the WAL back into the database
//! file (two fsyncs and a page copy) runs on a thread and connection of its
//! own, not inside a commit as SQLite's automatic checkpoint would, so no
//! commit waits for one. Past [`MAX_WAL_FRAMES`] the writer thread
//! checkpoints on the write connection between two commits, which bounds
//! the WAL under writes that never pause.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
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
    /// Frames in the WAL after the last commit made on this thread. The
    /// hook runs inside the commit, on the committing thread, so the thread
    /// that just committed reads its own figure, whichever thread that is
    /// (the writer's, or a runtime worker committing inline).
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// Turns SQLite's automatic checkpoint off on the write connection and
/// counts the WAL's frames after each commit instead.
pub fn count_frames(conn: &Connection) {
    conn.wal_hook(Some(note_wal_frames));
}

/// SQLite's WAL hook on the write connection, called after each commit on
/// the committing thread.
fn note_wal_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// What the WAL needs after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalNeeds {
    Nothing,
    /// Another [`CHECKPOINT_FRAMES`] frames since the last ask: a
    /// checkpoint on the checkpoint thread.
    Checkpoint,
    /// Past [`MAX_WAL_FRAMES`]: a checkpoint on the write connection,
    /// before its next commit.
    CheckpointHere,
}

/// The WAL's size after the last commit on the write connection, whichever
/// thread made it: what [`WalFrames::needs`] compares the next one with.
#[derive(Debug, Default)]
pub struct WalFrames(AtomicI32);

impl WalFrames {
    /// What the WAL needs after the commit this thread has just made; a
    /// second call before the next commit (or after one that failed)
    /// answers `Nothing`.
    ///
    /// A checkpoint is asked for each time the WAL grows past another
    /// multiple of [`CHECKPOINT_FRAMES`], not after every commit past the
    /// first: a passive checkpoint under steady writes never quite catches
    /// up, so asking after every commit kept the checkpoint thread copying
    /// and fsyncing back to back, for about as much CPU as the requests
    /// themselves (docs/DECISIONS.md, "Store").
    pub fn needs(&self) -> WalNeeds {
        let frames = WAL_FRAMES.replace(0);
        if frames == 0 {
            return WalNeeds::Nothing;
        }
        let before = self.0.swap(frames, Ordering::Relaxed);
        decide(before, frames)
    }
}

/// What a WAL of `frames` frames needs, after one of `before` frames.
fn decide(before: c_int, frames: c_int) -> WalNeeds {
    // Smaller than before: the WAL started over from its beginning.
    let before = if frames < before { 0 } else { before };
    if frames >= MAX_WAL_FRAMES {
        WalNeeds::CheckpointHere
    } else if frames / CHECKPOINT_FRAMES > before / CHECKPOINT_FRAMES {
        WalNeeds::Checkpoint
    } else {
        WalNeeds::Nothing
    }
}

/// Asks the checkpoint thread (`ask`, gone once the writer stops) for a
/// checkpoint.
pub fn ask_for_checkpoint(ask: Option<&mpsc::SyncSender<()>>) {
    // Full means a checkpoint is already asked for.
    if let Some(ask) = ask {
        let _ = ask.try_send(());
    }
}

/// A checkpoint on the write connection, between two commits.
pub fn checkpoint_here(conn: &Connection) {
    // Busy (the checkpoint thread is at it) is fine: the next commit past
    // the bound tries again.
    if let Err(e) = passive_checkpoint(conn) {
        tracing::warn!(error = %e, "checkpoint failed");
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

    use super::{CHECKPOINT_FRAMES, MAX_WAL_FRAMES, WalNeeds, decide};
    use crate::store::testing::{DEADLINE, commit_leases, open};

    #[test]
    fn a_checkpoint_is_asked_for_once_per_thousand_frames() {
        let n = CHECKPOINT_FRAMES;
        assert_eq!(decide(0, 6), WalNeeds::Nothing);
        assert_eq!(decide(n - 6, n - 1), WalNeeds::Nothing);
        assert_eq!(decide(n - 3, n + 3), WalNeeds::Checkpoint);
        // Still past the first thousand, but asked for already.
        assert_eq!(decide(n + 3, n + 9), WalNeeds::Nothing);
        assert_eq!(decide(2 * n - 2, 2 * n + 4), WalNeeds::Checkpoint);
        // Started over: a small WAL needs nothing, a large batch at once
        // a checkpoint.
        assert_eq!(decide(5 * n, 6), WalNeeds::Nothing);
        assert_eq!(decide(5 * n, n + 6), WalNeeds::Checkpoint);
        assert_eq!(
            decide(MAX_WAL_FRAMES - 2, MAX_WAL_FRAMES + 4),
            WalNeeds::CheckpointHere
        );
        assert_eq!(
            decide(MAX_WAL_FRAMES + 4, MAX_WAL_FRAMES + 9),
            WalNeeds::CheckpointHere
        );
    }

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
