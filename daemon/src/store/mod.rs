//! The SQLite store, and the only module that names SQLite: it checks the
//! database's files (`files`), sets up every connection the same way
//! (`settings`), migrates, and converts between rows and the typed records
//! of `lease` at its edge. Two ways in:
//!
//! - [`Store::submit`] hands changes to the writer (`writer`, `commit`):
//!   committed by the request itself when it is alone, else folded with
//!   the others into one group commit; either way the caller is answered
//!   once they have committed;
//! - [`Store::read`] gives a [`Reader`] once every change submitted so far
//!   has committed, so a read never misses a decision already made.
//!
//! One writer connection (rusqlite; used by its own thread, or by a request
//! committing inline, one at a time) serialises every change, so no write
//! can fail with SQLITE_BUSY or interleave with another; reads and
//! migrations use sqlx, on a small pool of read-only connections. Why two
//! libraries: docs/DECISIONS.md, "Store".

mod checkpoint;
mod commit;
mod events;
mod files;
mod labels;
mod leases;
#[cfg(test)]
mod migrations;
mod names;
mod reader;
mod settings;
#[cfg(test)]
mod testing;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::Flock;
use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;

pub use self::commit::Change;
pub use self::events::MAX_HISTORY_ROWS;
pub use self::reader::Reader;
use self::writer::Writer;
pub use self::writer::{CommitError, FailureHook, Pending};
use crate::lease::{ActiveLease, ProjectLabel, RememberedName};

/// A failure to open, migrate, read or write the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {0}: {1}")]
    CreateDir(PathBuf, std::io::Error),
    #[error("database directory: {0}")]
    Directory(String),
    /// A database, lock, WAL or shared-memory file that cannot be trusted
    /// or written; the message names it and the fix.
    #[error("{0}")]
    File(std::io::Error),
    #[error("cannot open database {0}: {1}")]
    Open(PathBuf, sqlx::Error),
    #[error("cannot migrate database {0}: {1}")]
    Migrate(PathBuf, sqlx::migrate::MigrateError),
    #[error("database {0} is in use by another portd (pid {1})")]
    InUse(PathBuf, String),
    #[error("cannot open database {0} for writing: {1}")]
    OpenWriter(PathBuf, rusqlite::Error),
    #[error("cannot start the database writer: {0}")]
    Thread(std::io::Error),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A row the daemon cannot have written (a column out of its range).
    #[error("database row: {0}")]
    Row(String),
    #[error("database commit failed: {0}")]
    Commit(#[from] CommitError),
}

/// What the lease table is loaded from.
pub struct Loaded {
    pub active: Vec<ActiveLease>,
    pub names: Vec<RememberedName>,
    pub labels: Vec<ProjectLabel>,
}

/// The database: its readers, its writer, and the lock that makes it this
/// daemon's. Clones share all three.
#[derive(Clone)]
pub struct Store {
    reader: SqlitePool,
    writer: Writer,
    path: PathBuf,
    /// Held for the store's life: one database, one daemon, however the
    /// daemons got their sockets.
    _lock: Arc<Flock<File>>,
}

impl Store {
    /// Opens (creating if missing) and migrates the database at `path`, and
    /// starts its writer. A file that is not a database is reported, never
    /// rewritten; `files::claim_files` says what is checked first. Call
    /// inside the tokio runtime.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let lock = files::claim_files(path)?;
        let options = settings::sqlx_options(path);
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Open(path.to_path_buf(), e))?;
        let migrated = sqlx::migrate!("../migrations").run(&migrator).await;
        migrator.close().await;
        migrated.map_err(|e| StoreError::Migrate(path.to_path_buf(), e))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| StoreError::Open(path.to_path_buf(), e))?;
        let open_writer = || {
            settings::open_writer(path).map_err(|e| StoreError::OpenWriter(path.to_path_buf(), e))
        };
        let writer = Writer::spawn(open_writer()?, open_writer()?, path.to_path_buf())
            .map_err(StoreError::Thread)?;
        Ok(Store {
            reader,
            writer,
            path: path.to_path_buf(),
            _lock: Arc::new(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Submits `changes` to the writer; call under the lock that made the
    /// decision, then await [`Pending::committed`] after releasing it (it
    /// commits there, on the caller's thread, when the change is alone).
    pub fn submit(&self, changes: Vec<Change>) -> Pending {
        self.writer.submit(changes)
    }

    /// Commits once everything submitted before it has: for an answer that
    /// depends on earlier decisions but changes nothing itself.
    pub fn barrier(&self) -> Pending {
        self.writer.barrier()
    }

    /// A reader that sees every change submitted so far: it waits for the
    /// writer's queue to drain first.
    pub async fn read(&self) -> Result<Reader, StoreError> {
        self.writer.barrier().committed().await?;
        Ok(Reader::new(self.reader.acquire().await?))
    }

    /// The active leases, the remembered names and the projects' labels,
    /// for the lease table: at start-up, and to reload it after a failed
    /// commit. It does not wait for the writer: the table is what decisions
    /// are made on, and while it is loaded none are (at start-up nothing is
    /// queued yet, and after a failed commit what was queued has failed).
    pub async fn load(&self) -> Result<Loaded, StoreError> {
        let mut reader = Reader::new(self.reader.acquire().await?);
        Ok(Loaded {
            active: reader.active_leases().await?,
            names: reader.names(None, None).await?,
            labels: reader.labels().await?,
        })
    }

    /// Drops ended leases and events older than `cutoff` (Unix ms), and all
    /// but the newest `keep` of each table; returns the rows removed.
    pub async fn prune(&self, cutoff: i64, keep: i64) -> Result<u64, StoreError> {
        self.writer.prune(cutoff, keep).await
    }

    /// Sets what runs when a commit fails (once).
    pub fn on_failure(&self, hook: FailureHook) {
        self.writer.on_failure(hook);
    }

    /// Closes the readers, then the writer, which checkpoints the WAL into
    /// the database file as it goes: the last connection to close removes
    /// the WAL if it may write. Later submissions fail.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
