//! Tests that cannot run here, and the tools they look for.
//!
//! A test that lacks what it needs (a system tool, root, another uid, a dev
//! server from PyPI or npm) calls [`skip`] and returns. Outside CI that
//! prints why on stderr and the test passes having checked nothing; with
//! `PORTD_TEST_STRICT=1` (which `.ci/run` sets after installing every tool
//! the tests use) the same call fails the test, so a green CI run means every
//! check really ran.
//!
//! Tools installed for the tests alone live under `target/e2e/`, which
//! `.ci/run` fills: a Python venv in `target/e2e/venv` (uvicorn, mcp) and
//! npm packages in `target/e2e/node/node_modules` (vite, playwright-core).

use std::path::{Path, PathBuf};

/// Set to `1` to make every [`skip`] a failure.
pub const STRICT_ENV: &str = "PORTD_TEST_STRICT";

/// True when skipping is forbidden (`PORTD_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var(STRICT_ENV).is_ok_and(|v| v == "1")
}

/// Says why the calling test cannot run here. Under `PORTD_TEST_STRICT=1`
/// it panics instead: the test fails, naming what was missing.
#[track_caller]
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    if strict() {
        panic!("{test} could not run and {STRICT_ENV}=1 forbids skipping it: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// Finds `name` in the system's directories (not `PATH`, which tests may
/// replace).
pub fn system_tool(name: &str) -> Option<PathBuf> {
    [
        "/usr/bin",
        "/bin",
        "/usr/sbin",
        "/sbin",
        "/usr/lib/systemd",
        "/lib/systemd",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(name))
    .find(|path| path.is_file())
}

/// `name` from the system, or a [`skip`] naming the Debian package that
/// provides it.
#[track_caller]
pub fn require_system_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = system_tool(name);
    if found.is_none() {
        skip(&format!(
            "{name} is not installed (Debian: apt-get install {package})"
        ));
    }
    found
}

/// True when the test runs as root; otherwise a [`skip`] saying what root
/// is needed for.
#[track_caller]
pub fn require_root(for_what: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip(&format!("needs root {for_what}"));
    }
    root
}

/// `target/e2e`: where `.ci/run` installs the tools only tests use.
pub fn e2e_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/debug/deps/x-0123abcd -> target
    exe.ancestors()
        .nth(3)
        .expect("the test executable lives in target/<profile>/deps")
        .join("e2e")
}

/// An executable of the tests' Python venv (`target/e2e/venv/bin/NAME`), or
/// a [`skip`] saying how to install it.
#[track_caller]
pub fn require_venv_tool(name: &str) -> Option<PathBuf> {
    let path = e2e_dir().join("venv/bin").join(name);
    if path.is_file() {
        return Some(path);
    }
    skip(&format!(
        "{} is missing: run .ci/run (or .ci/tools) to create the tests' venv",
        path.display()
    ));
    None
}

/// An npm package's directory in the tests' node_modules
/// (`target/e2e/node/node_modules/NAME`), or a [`skip`].
#[track_caller]
pub fn require_node_package(name: &str) -> Option<PathBuf> {
    let path = e2e_dir().join("node/node_modules").join(name);
    if path.join("package.json").is_file() {
        return Some(path);
    }
    skip(&format!(
        "{} is missing: run .ci/run (or .ci/tools) to install the tests' npm packages",
        path.display()
    ));
    None
}
