//! The few facts about a process that both sides read from `/proc`: its
//! start time (identity across pid reuse) and its parent.
//!
//! `start_time` on the wire is Unix seconds; inside, the exact clock-tick
//! count from `/proc/PID/stat` field 22 is the identity. Both sides convert
//! with the same formula so a client's `--owner` matches the daemon's reading.

use std::fs;
use std::io;

/// Fields of `/proc/PID/stat` that portd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// Field 3: `R`, `S`, `Z`, ...; `Z` (zombie) and `X` (dead) own nothing.
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    /// Field 22: clock ticks after boot at which the process started.
    pub start_ticks: u64,
}

impl ProcStat {
    /// True for a process that still runs (not a zombie, not dead).
    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    // tail starts with " S ppid pgrp session ..." : field 3 is index 0 here.
    let fields: Vec<&str> = tail.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    Some(ProcStat {
        pid,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

/// Reads and parses `/proc/PID/stat`.
pub fn read_stat(pid: u32) -> io::Result<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable stat"))
}

/// The kernel's clock ticks per second for `/proc` times. Linux has reported
/// 100 to user space on every architecture for decades (`USER_HZ`).
pub const CLOCK_TICKS_PER_SEC: u64 = 100;

/// Boot time in Unix seconds (`btime` in `/proc/stat`).
pub fn boot_time() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/stat")?;
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no btime in /proc/stat"))
}

/// Converts a start time in clock ticks after boot to Unix seconds.
pub fn ticks_to_unix(boot_time: u64, start_ticks: u64) -> f64 {
    boot_time as f64 + start_ticks as f64 / CLOCK_TICKS_PER_SEC as f64
}

/// True when two Unix start times name the same tick (tolerates float noise).
pub fn same_start_time(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.5 / CLOCK_TICKS_PER_SEC as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_after_the_last_parenthesis() {
        let text = "4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.state, 'S');
        assert_eq!((stat.ppid, stat.pgrp, stat.session), (1, 4242, 4242));
        assert_eq!(stat.start_ticks, 987654);
        assert!(stat.is_running());
    }

    #[test]
    fn zombies_are_not_running() {
        let text = "7 (sh) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0 0";
        assert!(!parse_stat(text).unwrap().is_running());
    }

    #[test]
    fn truncated_stat_is_rejected() {
        assert_eq!(parse_stat("7 (sh) S 1 7"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = read_stat(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.is_running());
        let unix = ticks_to_unix(boot_time().unwrap(), me.start_ticks);
        assert!(same_start_time(unix, unix + 0.001));
        assert!(!same_start_time(unix, unix + 0.01));
    }
}
