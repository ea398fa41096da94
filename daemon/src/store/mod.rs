//! The SQLite store: opening and migrating the database, and the queries on
//! leases, names and events.
//!
//! One writer connection, owned by the group-commit writer's thread
//! ([`writer`]), serialises every change, so no write can fail with
//! SQLITE_BUSY or interleave with another; reads use a small sqlx pool of
//! their own. WAL with `synchronous=NORMAL` survives `kill -9` of the daemon
//! (not a power loss).

pub mod events;
pub mod leases;
pub mod names;
pub mod writer;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use leases::LeaseRow;

use portd_api::paths::{check_state_dir, create_private_dir, open_private_file, parent_dir};

use crate::lockfile::{self, LockError};

/// A failure to open, migrate or query the database.
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
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("cannot open database {0} for writing: {1}")]
    OpenWriter(PathBuf, rusqlite::Error),
    #[error("database commit failed: {0}")]
    Commit(String),
}

/// How long a connection waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache per connection, in KiB when negative. The database stays
/// small; SQLite's default 2 MB per connection was most of an idle daemon's
/// heap.
const CACHE_SIZE: i64 = -256;
/// Bytes the WAL file keeps when it is reused from its start: about the
/// 1,000 frames after which it is checkpointed.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

#[derive(Clone)]
pub struct Store {
    reader: SqlitePool,
    path: PathBuf,
    /// Held for the store's life: one database, one daemon, however the
    /// daemons got their sockets.
    _lock: std::sync::Arc<Flock<File>>,
}

impl Store {
    /// Opens (creating if missing) and migrates the database at `path`. A file
    /// that is not a database is reported, never rewritten; see
    /// [`claim_files`] for what is checked first.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let lock = claim_files(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", CACHE_SIZE.to_string())
            .foreign_keys(true);
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
        Ok(Store {
            reader,
            path: path.to_path_buf(),
            _lock: std::sync::Arc::new(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the single write connection, for the group-commit writer, with
    /// the settings the readers have.
    pub fn open_writer(&self) -> Result<rusqlite::Connection, StoreError> {
        use rusqlite::OpenFlags;
        let fail = |e| StoreError::OpenWriter(self.path.clone(), e);
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "normal")
            .map_err(fail)?;
        conn.pragma_update(None, "cache_size", CACHE_SIZE)
            .map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(fail)?;
        // When the WAL starts over after a burst, its file shrinks to this.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(fail)?;
        Ok(conn)
    }

    /// The pool for reads that need no transaction.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes the readers; once the writer has closed too, SQLite
    /// checkpoints the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
    }
}

/// Makes sure nobody else can steer the daemon through its files before
/// SQLite opens them: the directory (created 0700 if missing) is ours, no
/// symlink, and closed to others' writes; then the lock beside the
/// database is taken; the database is created 0600 (SQLite would create it
/// 0644) and must be ours and writable; a WAL or shared-memory file left
/// from an earlier run must be ours too. Files of ours left open to others
/// are made 0600.
fn claim_files(db: &Path) -> Result<Flock<File>, StoreError> {
    let uid = nix::unistd::geteuid().as_raw();
    let dir = parent_dir(db);
    if !dir.exists() {
        create_private_dir(dir).map_err(|e| StoreError::CreateDir(dir.to_path_buf(), e))?;
    }
    check_state_dir(dir, uid).map_err(StoreError::Directory)?;
    if let Err(e) = nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK) {
        return Err(StoreError::Directory(format!(
            "{} is not writable ({e}); portd keeps its database, lock and WAL there",
            dir.display()
        )));
    }
    let lock = lock_database(db)?;

    let mut create = OpenOptions::new();
    create.read(true).write(true).create(true);
    open_private_file(db, &create, uid).map_err(StoreError::File)?;
    let mut existing = OpenOptions::new();
    existing.read(true).write(true);
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match open_private_file(Path::new(&name), &existing, uid) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::File(e));
            }
            _ => {}
        }
    }
    Ok(lock)
}

/// Takes the lock file beside the database (`portd.db.lock`). A separate
/// file: closing any fd of the database itself would drop SQLite's own
/// POSIX locks.
fn lock_database(db: &Path) -> Result<Flock<File>, StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    lockfile::acquire(Path::new(&name)).map_err(|e| match e {
        LockError::Held(pid) => StoreError::InUse(db.to_path_buf(), pid),
        LockError::Io(path, e) => StoreError::CreateDir(path, e),
        LockError::Refused(e) => StoreError::File(e),
    })
}

/// Now, in Unix milliseconds: the unit every timestamp is stored in.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Renders stored Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Parses RFC 3339 (as `?since=` takes it) into Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let ms = 1_790_000_000_123;
        let text = rfc3339(ms);
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(parse_rfc3339(&text), Some(ms));
    }
}
