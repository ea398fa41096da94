//! Lock files: an exclusive flock held for the daemon's life, with the
//! holder's pid written inside so a loser can say who holds it. The kernel
//! drops the lock when the holder dies, however it dies.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use portd_api::paths::open_private_file;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; its pid, or "unknown" if not written yet.
    #[error("held by pid {0}")]
    Held(String),
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    /// The file cannot be trusted or opened; the message names it.
    #[error("{0}")]
    Refused(io::Error),
}

/// Takes the lock at `path` without waiting and records our pid in it. The
/// file is ours and private ([`open_private_file`]): never a symlink, never
/// another uid's.
pub fn acquire(path: &Path) -> Result<Flock<File>, LockError> {
    let io_error = |e| LockError::Io(path.to_path_buf(), e);
    let uid = nix::unistd::geteuid().as_raw();
    let file = open_private_file(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        uid,
    )
    .map_err(LockError::Refused)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held(if pid.is_empty() {
                "unknown".into()
            } else {
                pid.into()
            }));
        }
    };
    lock.set_len(0).map_err(io_error)?;
    lock.rewind().map_err(io_error)?;
    writeln!(lock, "{}", std::process::id()).map_err(io_error)?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_learns_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = acquire(&path).unwrap();
        match acquire(&path) {
            Err(LockError::Held(pid)) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        assert!(acquire(&path).is_ok(), "free again once dropped");
    }

    #[test]
    fn a_symlinked_lock_is_refused_and_its_target_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me\n").unwrap();
        let path = dir.path().join("x.lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        match acquire(&path) {
            Err(LockError::Refused(e)) => assert!(e.to_string().contains("symlink"), "{e}"),
            other => panic!("expected Refused, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    }
}
