//! What `who` shows of a port: its lease, and its listeners, each with the
//! lease it belongs to (tagged, in the lease's command's process group, or
//! its owner) or marked a suspect (an untagged listener in a dead owner's
//! session).

use portd_api::PortReport;

use super::{LeaseError, Leases};
use crate::lease::EndReason;
use crate::probe::{Probe, probe};
use crate::procs::{holders::holders, scan};
use crate::reaper::policy::{LeaseFacts, belongs};
use crate::task;

impl Leases {
    /// Lease and holders of `port`.
    pub async fn report(&self, port: u16) -> Result<PortReport, LeaseError> {
        let lease = self.table().get(port).cloned();
        let dead = match &lease {
            Some(_) => None,
            None => {
                let mut reader = self.store.read().await?;
                reader.last_ended_on_port(port, &self.boot_id).await?
            }
        };
        // Untagged listeners in a dead owner's session are suspects, unless
        // they are members of its command's process group.
        let dead_session = dead
            .as_ref()
            .filter(|d| d.reason == EndReason::OwnerDied)
            .map(|d| d.lease.owner.session);
        let owner_pid = lease.as_ref().map(|l| l.owner.id.pid);
        let active = lease.as_ref().map(|l| LeaseFacts::active(l, &self.boot_id));
        let ended = dead.map(|d| LeaseFacts::ended(&d, &self.boot_id));
        let (holders, probe) = task::blocking("holder lookup", move || {
            let mut found = holders(port);
            for holder in &mut found {
                let Some(facts) = holder.pid.and_then(scan::facts) else {
                    continue;
                };
                let of = |lease: &Option<LeaseFacts>| {
                    lease
                        .as_ref()
                        .filter(|l| belongs(l, &facts))
                        .map(|l| l.id.clone())
                };
                if let Some(id) = of(&active) {
                    holder.lease_id = Some(id);
                } else if Some(facts.pid) == owner_pid {
                    holder.lease_id = active.as_ref().map(|l| l.id.clone());
                } else if let Some(tag) = facts.tag.clone() {
                    holder.lease_id = Some(tag);
                } else if let Some(id) = of(&ended) {
                    holder.lease_id = Some(id);
                } else if let Some(session) = dead_session {
                    holder.suspect = facts.session == session;
                }
            }
            (found, probe(port))
        })
        .await?;
        let free = lease.is_none() && probe == Probe::Free;
        Ok(PortReport {
            port,
            lease: lease.map(|l| l.to_api()),
            holders,
            free,
        })
    }
}
