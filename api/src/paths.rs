//! Where the socket, the database and the log live, and the ownership checks
//! both sides make before trusting a directory or a file in it: the socket's
//! directory, the database's, and the lock, database and log files.
//!
//! Order of precedence: flag, then environment variable, then XDG directory,
//! then a fallback that works on machines without XDG variables (CI has none).

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// The directory `path` lives in: `.` for a bare file name.
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Checks that `dir` may hold the socket: a real directory (not a symlink),
/// owned by `uid`, with no access for group or others.
pub fn check_private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    check_dir(dir, uid, 0o077, "it must be 0700")
}

/// Checks that `dir` may hold the database, its lock, WAL and log: a real
/// directory (not a symlink), owned by `uid`, that neither group nor others
/// may write. Reading is harmless: every file in it is 0600.
pub fn check_state_dir(dir: &Path, uid: u32) -> Result<(), String> {
    check_dir(dir, uid, 0o022, "group and others must not write to it")
}

fn check_dir(dir: &Path, uid: u32, forbidden: u32, rule: &str) -> Result<(), String> {
    let meta = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{} is a symlink; refusing to use it (name the directory it points to instead)",
            dir.display()
        ));
    }
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if meta.uid() != uid {
        return Err(format!(
            "{} is owned by uid {}, not by uid {uid}; refusing to use it (use a directory of your own)",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & forbidden != 0 {
        return Err(format!(
            "{} has mode {:o}; {rule}: chmod 700 {}",
            dir.display(),
            meta.mode() & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

/// Creates `dir` and any missing parents, each mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens a file that portd keeps beside its socket or database (a lock, the
/// database, the log) the way `options` says, creating it 0600 if
/// `options` creates. Never through a symlink (`O_NOFOLLOW`); refused if it
/// is not a regular file or if another uid than `uid` owns it; made 0600 if
/// it was left open to others. The error keeps the kind of the underlying
/// one (`NotFound` for a file that is absent) and says what to do.
pub fn open_private_file(path: &Path, options: &OpenOptions, uid: u32) -> io::Result<File> {
    let shown = path.display();
    let file = options
        .clone()
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            let message = match e.raw_os_error() {
                Some(libc::ELOOP) => format!(
                    "{shown} is a symlink; portd does not follow it: remove it (rm {shown})"
                ),
                Some(libc::EACCES) => {
                    format!("{shown} is read-only ({e}); portd must write it: chmod 600 {shown}")
                }
                Some(libc::EROFS) => format!(
                    "{shown} is on a read-only file system; portd must write it: \
                     choose a path on a writable one"
                ),
                _ => format!("{shown}: {e}"),
            };
            io::Error::new(e.kind(), message)
        })?;
    let meta = file.metadata()?;
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    if !meta.is_file() {
        return refuse(format!("{shown} is not a regular file; refusing to use it"));
    }
    if meta.uid() != uid {
        return refuse(format!(
            "{shown} is owned by uid {}, not by uid {uid}; refusing to use it \
             (remove it if it is not yours to keep)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
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

    #[test]
    fn a_state_dir_may_be_readable_but_not_writable_by_others() {
        let tmp = std::env::temp_dir().join(format!("portd-api-state-{}", std::process::id()));
        let dir = tmp.join("a").join("b");
        create_private_dir(&dir).unwrap();
        let uid = fs::metadata(&dir).unwrap().uid();
        for created in [&tmp.join("a"), &dir] {
            assert_eq!(fs::metadata(created).unwrap().mode() & 0o777, 0o700);
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_state_dir(&dir, uid), Ok(()));
        for open in [0o775, 0o757, 0o1777] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(open)).unwrap();
            let refused = check_state_dir(&dir, uid).unwrap_err();
            assert!(
                refused.contains(&format!("chmod 700 {}", dir.display())),
                "{refused}"
            );
        }
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn private_files_are_created_0600_tightened_and_never_followed() {
        let dir = tempfile_dir("files");
        let uid = fs::metadata(&dir).unwrap().uid();
        let mut create = OpenOptions::new();
        create.append(true).create(true);

        let path = dir.join("portd.log");
        open_private_file(&path, &create, uid).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        open_private_file(&path, &create, uid).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);

        let link = dir.join("link.log");
        symlink(&path, &link).unwrap();
        let refused = open_private_file(&link, &create, uid).unwrap_err();
        assert!(refused.to_string().contains("symlink"), "{refused}");

        let refused = open_private_file(&dir, OpenOptions::new().read(true), uid).unwrap_err();
        assert!(
            refused.to_string().contains("not a regular file"),
            "{refused}"
        );

        let absent = dir.join("absent");
        let missing = open_private_file(&absent, OpenOptions::new().read(true), uid).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portd-api-{what}-{}", std::process::id()));
        create_private_dir(&dir).unwrap();
        dir
    }
}
