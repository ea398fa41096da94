//! Explicit kills (`portctl kill PORT`, `lease --kill`): which of a port's
//! listeners the caller may signal, then the signals and their events.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use portd_api::{HolderKind, KillReport, KillRequest, Reported};

use super::signal::{self, Target};
use super::{ReapError, Reaper, protected, split};
use crate::config::MAX_GRACE;
use crate::peer::Peer;
use crate::probe::{Probe, probe};
use crate::procs::containers;
use crate::procs::holders::{Seen, listening_pids, seen_holders};
use crate::task;

impl Reaper {
    /// Explicit kill of the listeners on `port` on behalf of `peer`: its
    /// own processes (root's: any), never a protected pid, a container's
    /// forwarder or (without `force`) a systemd socket.
    pub async fn kill_port(
        &self,
        peer: Peer,
        port: u16,
        request: KillRequest,
    ) -> Result<KillReport, ReapError> {
        let first = match request.signal.as_deref() {
            Some(text) => signal::parse_signal(text).map_err(ReapError::Invalid)?,
            None => Signal::SIGTERM,
        };
        let grace = match request.grace {
            Some(secs) if !(0.0..=MAX_GRACE.as_secs_f64()).contains(&secs) => {
                return Err(ReapError::Invalid(format!(
                    "grace must be from 0 to {} seconds",
                    MAX_GRACE.as_secs()
                )));
            }
            Some(secs) => Duration::from_secs_f64(secs),
            None => self.grace,
        };
        let force = request.force;
        let protected = protected(peer.pid);
        // Who listens, then each one's facts through a pidfd: one blocking
        // step, so that little time passes between the two.
        let chosen = task::blocking("holder lookup", move || {
            let seen = seen_holders(port);
            (!seen.is_empty()).then(|| kill_targets(peer, port, seen, force, &protected))
        })
        .await?;
        let Some((targets, skipped)) = chosen else {
            return Err(ReapError::NothingListens(port));
        };
        if targets.is_empty() {
            let why: Vec<String> = skipped
                .iter()
                .map(|s| {
                    format!(
                        "pid {}: {}",
                        s.pid.map_or("?".into(), |p| p.to_string()),
                        s.reason
                    )
                })
                .collect();
            return Err(ReapError::Protected {
                port,
                skipped,
                message: why.join("; "),
            });
        }
        let outcomes = self
            .signal_and_record(targets, first, grace, "killed", None)
            .await?;
        let (signalled, gone) = split(outcomes);
        let mut report = KillReport {
            port,
            signalled,
            skipped,
            free: false,
        };
        report.skipped.extend(gone);
        report.free = task::blocking("port check", move || {
            listening_pids(port).is_empty() && probe(port) != Probe::InUse
        })
        .await?;
        Ok(report)
    }
}

/// Which of the listeners seen on `port` an explicit kill by `peer` may
/// signal, and why the others are skipped. Blocking: it reads /proc.
fn kill_targets(
    peer: Peer,
    port: u16,
    seen: Vec<Seen>,
    force: bool,
    protected: &HashSet<u32>,
) -> (Vec<Target>, Vec<Reported>) {
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for Seen {
        holder,
        start_ticks,
    } in seen
    {
        let skip = |reason: String| Reported {
            pid: holder.pid,
            uid: holder.uid,
            cmdline: holder.cmdline.clone(),
            port,
            lease_id: holder.lease_id.clone(),
            reason,
            suspect: false,
        };
        let Some(pid) = holder.pid else {
            skipped.push(skip("its process cannot be seen from here".into()));
            continue;
        };
        let facts = match signal::seen_again(pid, start_ticks) {
            Ok(facts) => facts,
            Err(reason) => {
                skipped.push(skip(reason));
                continue;
            }
        };
        if protected.contains(&pid) {
            skipped.push(skip(
                "protected (pid 1, portd, or the caller and its ancestors)".into(),
            ));
        } else if let Some(reason) = containers::kill_refusal(&holder) {
            skipped.push(skip(reason));
        } else if holder.kind == HolderKind::Systemd && !force {
            skipped.push(skip(
                "a systemd manager holds it for someone else; use --force".into(),
            ));
        } else if peer.uid != 0
            && [facts.uids.real, facts.uids.effective, facts.uids.saved] != [peer.uid; 3]
        {
            skipped.push(skip(format!(
                "it belongs to uid {}, not to uid {}",
                facts.uids.real, peer.uid
            )));
        } else {
            targets.push(Target {
                facts,
                cmdline: holder.cmdline,
                port,
                lease_id: holder.lease_id,
            });
        }
    }
    (targets, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procs;
    use std::process::{Child, Command};

    /// A `sleep` child, killed when dropped (also when a test fails).
    struct Sleeper(Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A `sleep` child, seen as a listener of port 1 with its real start
    /// time plus `shift_ticks`.
    fn seen_sleep(shift_ticks: u64) -> (Sleeper, Seen) {
        let child = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
        let pid = child.0.id();
        let stat = procs::read_stat(pid).unwrap();
        let seen = Seen {
            holder: portd_api::Holder {
                pid: Some(pid),
                ppid: Some(stat.ppid),
                uid: nix::unistd::getuid().as_raw(),
                user: None,
                cmdline: vec!["sleep".into(), "60".into()],
                start_time: None,
                lease_id: None,
                kind: HolderKind::Process,
                suspect: false,
                container: None,
            },
            start_ticks: Some(stat.start_ticks + shift_ticks),
        };
        (child, seen)
    }

    /// What this process may kill of `seen`, on port 1.
    fn targets_of(seen: Seen) -> (Vec<Target>, Vec<Reported>) {
        let me = Peer {
            pid: Some(std::process::id()),
            uid: nix::unistd::getuid().as_raw(),
        };
        kill_targets(me, 1, vec![seen], false, &HashSet::new())
    }

    #[test]
    fn a_holder_whose_pid_now_names_another_process_is_not_a_kill_target() {
        // The listener seen under this pid started one tick before the
        // process that has the pid now: a reused pid.
        let (_child, seen) = seen_sleep(1);
        let (targets, skipped) = targets_of(seen);
        assert!(targets.is_empty(), "{targets:?}");
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].reason.contains("not the process"),
            "{}",
            skipped[0].reason
        );
    }

    #[test]
    fn the_holder_that_was_seen_is_a_kill_target() {
        let (child, seen) = seen_sleep(0);
        let (targets, skipped) = targets_of(seen);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].facts.pid, child.0.id());
    }

    #[test]
    fn a_holder_that_has_exited_is_skipped_as_gone() {
        let (child, seen) = seen_sleep(0);
        drop(child);
        let (targets, skipped) = targets_of(seen);
        assert!(targets.is_empty(), "{targets:?}");
        assert!(skipped[0].reason.contains("gone"), "{}", skipped[0].reason);
    }
}
