//! What the kernel says about processes: a process's identity, parent,
//! executable, command line, user ids and environment from `/proc` (one
//! process here, every process at once in `scan`), and who listens on a
//! port (`holders`, over the sockets `sockdiag` lists; `containers` names
//! the Docker container a forwarder serves). Thin readers only;
//! decisions live elsewhere.

pub mod containers;
pub mod holders;
pub mod listener;
pub mod scan;
pub mod sockdiag;

use std::fs;
use std::io;
use std::path::PathBuf;

pub use portd_api::procstat::{ProcStat, boot_time, read_stat, ticks_to_unix};

/// This boot's id (`/proc/sys/kernel/random/boot_id`): start times are only
/// comparable within one boot.
pub fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Now, in the clock process start times use: ticks since boot
/// (CLOCK_BOOTTIME, in units of `USER_HZ`).
pub fn ticks_since_boot() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::CLOCK_BOOTTIME)
        .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
    let ticks_per_sec = portd_api::procstat::CLOCK_TICKS_PER_SEC;
    now.tv_sec() as u64 * ticks_per_sec + now.tv_nsec() as u64 / (1_000_000_000 / ticks_per_sec)
}

/// The parent of `pid`, while it runs.
pub fn parent_of(pid: u32) -> Option<u32> {
    read_stat(pid).ok().map(|s| s.ppid)
}

/// The executable a process runs, if we may read it.
pub fn exe(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The raw NUL-separated command line.
pub fn cmdline_raw(pid: u32) -> Option<Vec<u8>> {
    fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// The command line split into arguments.
pub fn cmdline(pid: u32) -> Vec<String> {
    cmdline_raw(pid)
        .map(|raw| split_cmdline(&raw))
        .unwrap_or_default()
}

pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Real, effective and saved user ids from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uids {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
}

pub fn uids(pid: u32) -> io::Result<Uids> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_uids(&status).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Uid line"))
}

pub fn parse_uids(status: &str) -> Option<Uids> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = line.split_ascii_whitespace().map(|v| v.parse::<u32>().ok());
    Some(Uids {
        real: ids.next()??,
        effective: ids.next()??,
        saved: ids.next()??,
    })
}

/// The user name of `uid`, from the passwd database.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_child_starts_at_or_after_now_in_boot_ticks() {
        let before = ticks_since_boot();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let started = read_stat(child.id()).unwrap().start_ticks;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(started >= before, "{started} < {before}");
        assert!(started <= ticks_since_boot());
        let me = read_stat(std::process::id()).unwrap().start_ticks;
        assert!(me <= before, "this test process started before now");
    }

    #[test]
    fn uids_come_from_the_uid_line() {
        let status = "Name:\tbash\nUid:\t1000\t1001\t1002\t1003\nGid:\t0\t0\t0\t0\n";
        assert_eq!(
            parse_uids(status),
            Some(Uids {
                real: 1000,
                effective: 1001,
                saved: 1002
            })
        );
        assert_eq!(parse_uids("Name: x\n"), None);
    }

    #[test]
    fn cmdline_splits_on_nul_and_drops_the_trailing_one() {
        assert_eq!(
            split_cmdline(b"python3\0-m\0http.server\0"),
            ["python3", "-m", "http.server"]
        );
        assert!(split_cmdline(b"").is_empty());
    }
}

/// The `PORTD_LEASE` tag in a process's environment, if any and readable.
pub fn lease_tag(pid: u32) -> Option<String> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    find_env(&environ, portd_api::LEASE_ENV)
}

/// The value of `key` in a NUL-separated environment block.
pub fn find_env(environ: &[u8], key: &str) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn finds_the_exact_key_only() {
        let env = b"PORTD_LEASE_X=no\0PORTD_LEASE=abc\0PATH=/bin\0";
        assert_eq!(find_env(env, "PORTD_LEASE"), Some("abc".into()));
        assert_eq!(find_env(env, "HOME"), None);
    }
}
