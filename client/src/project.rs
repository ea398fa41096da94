//! The project a lease's name lives in: the git worktree root of a
//! directory (the nearest ancestor holding a `.git` directory, or the `.git`
//! file of a linked worktree), else the directory itself. No git process:
//! start-up time matters, and two worktrees must stay two projects.

use std::io;
use std::path::{Path, PathBuf};

/// The project of `dir` (canonicalized).
pub fn project_of(dir: &Path) -> io::Result<PathBuf> {
    let dir = dir.canonicalize()?;
    Ok(dir
        .ancestors()
        .find(|d| d.join(".git").symlink_metadata().is_ok())
        .unwrap_or(&dir)
        .to_path_buf())
}

/// The project of the current directory, or of `flag` if given.
pub fn current(flag: Option<&Path>) -> io::Result<PathBuf> {
    match flag {
        Some(dir) => project_of(dir),
        None => project_of(&std::env::current_dir()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn the_worktree_root_is_the_project() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        fs::create_dir_all(repo.join(".git")).unwrap();
        fs::create_dir_all(repo.join("src/deep")).unwrap();
        assert_eq!(
            project_of(&repo.join("src/deep")).unwrap(),
            repo.canonicalize().unwrap()
        );
    }

    #[test]
    fn a_linked_worktree_is_its_own_project() {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("app");
        let other = tmp.path().join("app-feature");
        fs::create_dir_all(main.join(".git")).unwrap();
        fs::create_dir_all(other.join("web")).unwrap();
        fs::write(
            other.join(".git"),
            "gitdir: ../app/.git/worktrees/app-feature\n",
        )
        .unwrap();
        let a = project_of(&main).unwrap();
        let b = project_of(&other.join("web")).unwrap();
        assert_eq!(b, other.canonicalize().unwrap());
        assert_ne!(a, b);
    }

    #[test]
    fn outside_a_repository_the_directory_is_the_project() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plain");
        fs::create_dir_all(&dir).unwrap();
        // tempdir itself may sit inside a repository on a developer's machine;
        // only assert when no ancestor is one.
        let expected = dir.canonicalize().unwrap();
        if !expected.ancestors().any(|d| d.join(".git").exists()) {
            assert_eq!(project_of(&dir).unwrap(), expected);
        }
    }
}
