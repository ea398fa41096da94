//! Where the socket, the database and the log live, and the ownership checks
//! both sides make on the socket's directory before trusting it.
//!
//! Order of precedence: flag, then environment variable, then XDG directory,
//! then a fallback that works on machines without XDG variables (CI has none).

use std::env;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Environment variable naming the socket (`--socket` wins over it).
pub const SOCKET_ENV: &str = "PORTD_SOCKET";
/// Environment variable naming the database (`--db` wins over it).
pub const DB_ENV: &str = "PORTD_DB";

/// The socket path: `flag`, `$PORTD_SOCKET`, `$XDG_RUNTIME_DIR/portd/portd.sock`,
/// else `/tmp/portd-$UID/portd.sock`.
pub fn socket_path(flag: Option<&Path>, uid: u32) -> PathBuf {
    if let Some(path) = flag {
        return path.to_path_buf();
    }
    if let Some(path) = non_empty_env(SOCKET_ENV) {
        return PathBuf::from(path);
    }
    if let Some(runtime) = non_empty_env("XDG_RUNTIME_DIR") {
        return Path::new(&runtime).join("portd").join("portd.sock");
    }
    PathBuf::from(format!("/tmp/portd-{uid}/portd.sock"))
}

/// The database path: `flag`, `$PORTD_DB`, `$XDG_STATE_HOME/portd/portd.db`,
/// else `~/.local/state/portd/portd.db`.
pub fn db_path(flag: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = non_empty_env(DB_ENV) {
        return Ok(PathBuf::from(path));
    }
    let state = match non_empty_env("XDG_STATE_HOME") {
        Some(state) => PathBuf::from(state),
        None => home()?.join(".local").join("state"),
    };
    Ok(state.join("portd").join("portd.db"))
}

/// The daemon's log when the client autostarts it: beside the database.
pub fn log_path(db: &Path) -> PathBuf {
    db.with_file_name("portd.log")
}

/// The lock file the daemon holds for its whole life: beside the socket.
pub fn lock_path(socket: &Path) -> PathBuf {
    socket.with_file_name("portd.lock")
}

fn home() -> Result<PathBuf, String> {
    non_empty_env("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| "HOME is not set; pass --db or set PORTD_DB".to_string())
}

fn non_empty_env(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

/// Checks that `dir` may hold the socket: a real directory (not a symlink),
/// owned by `uid`, with no access for group or others.
pub fn check_private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    let meta = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{} is a symlink; refusing to use it",
            dir.display()
        ));
    }
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if meta.uid() != uid {
        return Err(format!(
            "{} is owned by uid {}, not by uid {uid}; refusing to use it",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} has mode {:o}; it must be 0700: chmod 700 {}",
            dir.display(),
            meta.mode() & 0o777,
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn flag_wins_over_everything() {
        let p = socket_path(Some(Path::new("/x/y.sock")), 1000);
        assert_eq!(p, PathBuf::from("/x/y.sock"));
        assert_eq!(
            db_path(Some(Path::new("/x/y.db"))).unwrap(),
            PathBuf::from("/x/y.db")
        );
    }

    #[test]
    fn log_and_lock_sit_beside_their_files() {
        assert_eq!(
            log_path(Path::new("/s/portd/portd.db")),
            PathBuf::from("/s/portd/portd.log")
        );
        assert_eq!(
            lock_path(Path::new("/r/portd/portd.sock")),
            PathBuf::from("/r/portd/portd.lock")
        );
    }

    #[test]
    fn private_dir_check_refuses_symlinks_open_modes_and_strangers() {
        let tmp = std::env::temp_dir().join(format!("portd-api-test-{}", std::process::id()));
        let dir = tmp.join("d");
        fs::create_dir_all(&dir).unwrap();
        let uid = fs::metadata(&dir).unwrap().uid();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_private_dir(&dir, uid), Ok(()));

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let loose = check_private_dir(&dir, uid).unwrap_err();
        assert!(loose.contains("0700"), "{loose}");
        assert!(
            loose.ends_with(&format!("chmod 700 {}", dir.display())),
            "{loose}"
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();

        assert!(
            check_private_dir(&dir, uid + 1)
                .unwrap_err()
                .contains("owned by")
        );

        let link = tmp.join("link");
        symlink(&dir, &link).unwrap();
        assert!(
            check_private_dir(&link, uid)
                .unwrap_err()
                .contains("symlink")
        );
        fs::remove_dir_all(&tmp).unwrap();
    }
}
