//! The command `portctl run` started for a lease, and the processes that
//! belong to a lease.
//!
//! `run` starts its command as the leader of a process group of its own and
//! registers it here. From then on that group's members belong to the lease
//! as surely as tagged processes do, so a server that clears its environment
//! (nginx keeps only `TZ`) is still found and reaped when the lease ends.

use std::collections::HashSet;

use portd_api::{CommandRequest, Lease, LeaseProcess, LeaseProcesses, OwnerRef};

use super::{LeaseError, Leases, event};
use crate::lease::Command;
use crate::owner;
use crate::peer::Peer;
use crate::procs::{self, holders::listening_ports_of, scan};
use crate::reaper::policy::{LeaseFacts, belongs};
use crate::store::Change;
use crate::task;
use crate::time::now_ms;

impl Leases {
    /// Registers `request.pid` as the command of the active lease on `port`:
    /// it must be the owner's child, started after the grant, lead its own
    /// process group and run as the owner's uid.
    pub async fn register_command(
        &self,
        peer: Peer,
        port: u16,
        request: CommandRequest,
    ) -> Result<Lease, LeaseError> {
        let pid = request.pid;
        let named = OwnerRef {
            pid,
            start_time: request.start_time,
        };
        let (stat, uid) = owner::named_process(named, self.boot_time)?;
        let (row, pending) = {
            let mut table = self.table_for_change()?;
            let lease = table
                .get(port)
                .filter(|l| l.id == request.id)
                .ok_or_else(|| {
                    LeaseError::NotFound(format!(
                        "lease {} is not active on port {port}",
                        request.id
                    ))
                })?;
            if !peer.may_act_for(lease.owner.uid) {
                return Err(LeaseError::Forbidden(format!(
                    "port {port} is leased by uid {}; uid {} may not register its command",
                    lease.owner.uid, peer.uid
                )));
            }
            let owner = lease.owner.id;
            let refuse = |why: String| Err(LeaseError::Invalid(format!("pid {pid} {why}")));
            if lease.command.is_some_and(|known| known.pid != pid) {
                return refuse(format!(
                    "cannot be the command of lease {}: it has one already",
                    lease.id
                ));
            }
            if stat.ppid != owner.pid {
                return refuse(format!(
                    "is not a child of the lease's owner (pid {})",
                    owner.pid
                ));
            }
            if stat.pgrp != pid {
                return refuse("does not lead a process group of its own".into());
            }
            if stat.start_ticks < lease.granted_ticks {
                return refuse("started before the lease was granted".into());
            }
            if uid != lease.owner.uid {
                return refuse(format!(
                    "runs as uid {uid}, the lease's owner as uid {}",
                    lease.owner.uid
                ));
            }
            let now = now_ms();
            table.set_command(
                port,
                Command {
                    pid,
                    start_ticks: stat.start_ticks,
                },
            );
            let row = table.get(port).cloned().expect("the lease was just read");
            let cmdline = procs::cmdline(pid).join(" ");
            let changes = vec![
                Change::Command {
                    id: row.id.clone(),
                    pid,
                    start_ticks: stat.start_ticks,
                },
                event(now, "command", &row, Some(format!("pid {pid}: {cmdline}"))),
            ];
            (row, self.store.submit(changes))
        };
        pending.committed().await?;
        Ok(row.to_api())
    }

    /// The processes of the active lease on `port` (tagged with it, or in
    /// its command's process group) and the TCP ports each listens on.
    pub async fn processes(&self, port: u16) -> Result<LeaseProcesses, LeaseError> {
        let row = self
            .table()
            .get(port)
            .cloned()
            .ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))?;
        let lease_id = row.id.clone();
        let lease = LeaseFacts::active(&row, &self.boot_id);
        let processes = task::blocking("reading a lease's processes", move || {
            let members: Vec<scan::ProcFacts> = scan::all()
                .into_iter()
                .filter(|p| belongs(&lease, p))
                .collect();
            let pids: HashSet<u32> = members.iter().map(|p| p.pid).collect();
            let mut listening = listening_ports_of(&pids);
            members
                .into_iter()
                .map(|p| LeaseProcess {
                    pid: p.pid,
                    cmdline: procs::cmdline(p.pid),
                    listens: listening.remove(&p.pid).unwrap_or_default(),
                })
                .collect()
        })
        .await?;
        Ok(LeaseProcesses {
            lease_id,
            port,
            processes,
        })
    }
}
