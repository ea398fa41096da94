//! How leases end: a release (`DELETE`, `portctl release`), an owner's
//! death (its pidfd, or the poll for owners without one), a TTL, and the
//! reconcile at start-up and on `portctl cleanup` (other boots, dead
//! owners). Every end is made in the table under its lock and submitted to
//! the writer; the lease's orphans are then reaped in the background, never
//! waiting for a grace.

use std::sync::Arc;

use portd_api::Lease;

use super::{LeaseError, Leases, Table, event};
use crate::lease::{EndReason, EndedLease, OwnerId};
use crate::owner::owner_is_alive_now;
use crate::peer::Peer;
use crate::procs;
use crate::store::{Change, MAX_HISTORY_ROWS};
use crate::time::now_ms;
use crate::watch::Watch;

impl Leases {
    /// Reaps the orphans of leases that just ended, in the background (a
    /// unit of work: a stopping daemon finishes it first).
    pub fn reap_later(&self, ended: Vec<EndedLease>) {
        self.reap_in_background(ended, None);
    }

    /// Reaps the orphans of `ended` in the background, never signalling the
    /// `caller` that ended them or its ancestors.
    pub(super) fn reap_in_background(&self, ended: Vec<EndedLease>, caller: Option<u32>) {
        if ended.is_empty() {
            return;
        }
        self.reaper.reap_later(ended, caller);
    }

    /// Releases the active lease on `port` (only lease `id`, if given), then
    /// reaps its orphans in the background unless `keep` says to leave what
    /// still serves alone.
    pub async fn release(
        &self,
        peer: Peer,
        port: u16,
        id: Option<&str>,
        keep: bool,
    ) -> Result<Lease, LeaseError> {
        let now = now_ms();
        let mut changes = Vec::new();
        let (row, pending) = {
            let mut table = self.table_for_change()?;
            let lease = table
                .get(port)
                .ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))?;
            if let Some(id) = id.filter(|id| *id != lease.id) {
                return Err(LeaseError::NotFound(format!(
                    "lease {id} is not active on port {port} (lease {} is)",
                    lease.id
                )));
            }
            if !peer.may_act_for(lease.owner.uid) {
                return Err(LeaseError::Forbidden(format!(
                    "port {port} is leased by uid {}; uid {} may not release it",
                    lease.owner.uid, peer.uid
                )));
            }
            let detail = keep.then_some("kept: its processes are left running");
            let mut row = self.end_in(
                &mut table,
                port,
                EndReason::Released,
                now,
                detail,
                &mut changes,
            );
            if let Some(row) = row.as_mut().filter(|_| keep) {
                let ticks = procs::ticks_since_boot();
                row.kept_ticks = Some(ticks);
                changes.push(Change::Kept {
                    id: row.lease.id.clone(),
                    ticks,
                });
            }
            (row, self.store.submit(changes))
        };
        pending.committed().await?;
        let row =
            row.ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))?;
        let lease = row.to_api();
        if !keep {
            self.reap_in_background(vec![row], peer.pid);
        }
        Ok(lease)
    }

    /// Ends every active lease of `owner` as `owner_died`; returns them.
    pub async fn end_owner(&self, owner: OwnerId) -> Result<Vec<EndedLease>, LeaseError> {
        self.end_where(EndReason::OwnerDied, None, |table| table.ports_of(owner))
            .await
    }

    /// Ends leases whose TTL has passed, and reaps their orphans in the
    /// background.
    pub async fn expire_due(&self) -> Result<usize, LeaseError> {
        let now = now_ms();
        let ended = self
            .end_where(EndReason::Expired, None, |table| table.expired(now))
            .await?;
        let count = ended.len();
        self.reap_later(ended);
        Ok(count)
    }

    /// Ends the active leases on the ports `select` picks from the table.
    async fn end_where(
        &self,
        reason: EndReason,
        detail: Option<&str>,
        select: impl FnOnce(&Table) -> Vec<u16>,
    ) -> Result<Vec<EndedLease>, LeaseError> {
        let now = now_ms();
        let mut changes = Vec::new();
        let (rows, pending) = {
            let mut table = self.table_for_change()?;
            let ports = select(&table);
            let rows: Vec<EndedLease> = ports
                .into_iter()
                .filter_map(|port| self.end_in(&mut table, port, reason, now, detail, &mut changes))
                .collect();
            (rows, self.store.submit(changes))
        };
        pending.committed().await?;
        Ok(rows)
    }

    /// Checks every active lease's owner: leases from another boot or with a
    /// dead owner end; live owners get a pidfd if they have none. Returns
    /// how many were kept and the ones that ended.
    pub async fn reconcile(&self) -> Result<(usize, Vec<EndedLease>), LeaseError> {
        let active: Vec<(u16, String, OwnerId, bool)> = {
            let table = self.table();
            table
                .active()
                .map(|l| (l.port, l.id.clone(), l.owner.id, l.boot_id == self.boot_id))
                .collect()
        };
        let mut other_boot = Vec::new();
        let mut dead = Vec::new();
        for (port, id, owner, this_boot) in &active {
            if !this_boot {
                other_boot.push((*port, id.clone()));
            } else if self.owner_gone(*owner) {
                dead.push((*port, id.clone()));
            }
        }
        // The owners were checked without the lock: end a port's lease only
        // if it is still the one that was checked, never a newer grant.
        let still = |table: &Table, checked: Vec<(u16, String)>| -> Vec<u16> {
            checked
                .into_iter()
                .filter(|(port, id)| table.get(*port).is_some_and(|l| l.id == *id))
                .map(|(port, _)| port)
                .collect()
        };
        let mut ended = Vec::new();
        if !other_boot.is_empty() {
            ended.extend(
                self.end_where(EndReason::OwnerDied, Some("lease from another boot"), |t| {
                    still(t, other_boot)
                })
                .await?,
            );
        }
        if !dead.is_empty() {
            ended.extend(
                self.end_where(EndReason::OwnerDied, None, |t| still(t, dead))
                    .await?,
            );
        }
        Ok((active.len() - ended.len(), ended))
    }

    /// Prunes history past retention.
    pub async fn prune(&self, retention: std::time::Duration) -> Result<u64, LeaseError> {
        let cutoff = now_ms() - retention.as_millis() as i64;
        Ok(self.store.prune(cutoff, MAX_HISTORY_ROWS).await?)
    }

    /// Ends the active lease on `port` in the table and records the change.
    pub(super) fn end_in(
        &self,
        table: &mut Table,
        port: u16,
        reason: EndReason,
        now: i64,
        detail: Option<&str>,
        changes: &mut Vec<Change>,
    ) -> Option<EndedLease> {
        let lease = table.remove(port)?;
        changes.push(Change::End {
            id: lease.id.clone(),
            reason,
            at: now,
        });
        changes.push(event(
            now,
            reason.as_str(),
            &lease,
            detail.map(String::from),
        ));
        Some(lease.end(reason, now))
    }

    /// Watches `owner` (once) and says whether it is already gone. Owners
    /// without a pidfd are checked through /proc each time.
    pub(super) fn owner_gone(&self, owner: OwnerId) -> bool {
        match Arc::clone(&self.watcher).watch(owner) {
            Watch::Watching => false,
            Watch::Dead => true,
            Watch::Polled => !owner_is_alive_now(owner),
        }
    }
}
