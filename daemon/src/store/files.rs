//! The database's files before SQLite opens them: the directory, the lock
//! beside the database, and the database, WAL and shared-memory files,
//! each checked so that nobody else can steer the daemon through them.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::Flock;
use portd_api::paths::{check_state_dir, create_private_dir, open_private_file, parent_dir};

use super::StoreError;
use crate::lockfile::{self, LockError};

/// Makes sure nobody else can steer the daemon through its files before
/// SQLite opens them: the directory (created 0700 if missing) is ours, no
/// symlink, and closed to others' writes; then the lock beside the
/// database is taken; the database is created 0600 (SQLite would create it
/// 0644) and must be ours and writable; a WAL or shared-memory file left
/// from an earlier run must be ours too. Files of ours left open to others
/// are made 0600.
pub(super) fn claim_files(db: &Path) -> Result<Flock<File>, StoreError> {
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
