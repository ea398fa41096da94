//! A snapshot of every process the daemon may look at: what the reaper's
//! policy needs to decide, read once per sweep.

use std::collections::HashSet;
use std::fs;

use super::{Uids, lease_tag, read_stat, uids};

/// One process as the reaper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFacts {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    pub start_ticks: u64,
    pub running: bool,
    pub uids: Uids,
    /// The `PORTD_LEASE` value in its environment, if readable.
    pub tag: Option<String>,
}

/// Facts about `pid`, or `None` if it is gone or unreadable.
pub fn facts(pid: u32) -> Option<ProcFacts> {
    let stat = read_stat(pid).ok()?;
    Some(ProcFacts {
        pid,
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        session: stat.session,
        start_ticks: stat.start_ticks,
        running: stat.is_running(),
        uids: uids(pid).ok()?,
        tag: lease_tag(pid),
    })
}

fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Facts about every process in /proc.
pub fn all() -> Vec<ProcFacts> {
    pids().into_iter().filter_map(facts).collect()
}

/// Facts about the `listeners` of ended leases' ports and every process in
/// their process groups: all that those leases' orphans can be. Only `stat`
/// is read for the others, which is much cheaper than `environ`.
pub fn around_listeners(listeners: &HashSet<u32>) -> Vec<ProcFacts> {
    if listeners.is_empty() {
        return Vec::new();
    }
    let groups: HashSet<u32> = listeners
        .iter()
        .filter_map(|pid| read_stat(*pid).ok())
        .map(|s| s.pgrp)
        .collect();
    pids()
        .into_iter()
        .filter(|pid| {
            listeners.contains(pid) || read_stat(*pid).is_ok_and(|s| groups.contains(&s.pgrp))
        })
        .filter_map(facts)
        .collect()
}
