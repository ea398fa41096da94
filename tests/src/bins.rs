//! The binaries under test: `target/<profile>/portd` and `portctl`, beside the
//! directory that holds the test executable (`target/<profile>/deps/`).
//!
//! `cargo test --workspace` builds them, because the daemon and the client
//! have integration tests of their own; `cargo test -p portd-e2e` alone does
//! not, and then runs whatever binaries the last build left.

use std::path::PathBuf;

/// Path of the `portd` binary; panics with how to build it if it is missing.
pub fn portd_bin() -> PathBuf {
    binary("portd")
}

/// Path of the `portctl` binary; panics with how to build it if it is missing.
pub fn portctl_bin() -> PathBuf {
    binary("portctl")
}

fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/debug/deps/api-0123abcd -> target/debug
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}
