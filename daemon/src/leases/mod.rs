//! The lease table and the operations on it. Every decision is made on
//! the in-memory [`Table`] under one lock, and its changes go to the store's
//! group-commit writer under the same lock, in decision order; no caller is
//! answered before its change has committed.
//!
//! - `decide`: which port a request gets, a pure function of the table;
//! - `grant`: a grant's owner checks, probes and retries around it;
//! - `end`: release, owner death, expiry, reconcile;
//! - `cleanup`: the start-up cleanup and `portctl cleanup`, and the report
//!   the first one leaves;
//! - `command`: the command `portctl run` registers, a lease's processes;
//! - `remembered`: names, listed, forgotten and pruned;
//! - `labels`: the label each project goes by in the proxy's host names;
//! - `sites`: what the proxy reads: where a host name leads, the names of
//!   a project, how a name's lease ended;
//! - `report`: a port's lease and listeners (`who`);
//! - `validate`: what a request is refused for once read;
//! - `recover`: the reload after a failed commit.

mod cleanup;
mod command;
mod decide;
mod end;
mod error;
mod grant;
mod labels;
mod recover;
mod remembered;
mod report;
mod sites;
mod table;
mod validate;

use std::sync::{Arc, Mutex, MutexGuard};

use portd_api::{Lease, PortRange};

pub use self::cleanup::{NAME_RETENTION, Startup};
pub use self::error::LeaseError;
pub use self::grant::Granted;
pub use self::labels::new_label;
pub use self::sites::{Site, SiteEntry, is_host_label, site_url};
pub use self::table::Table;
use crate::config::NameRanges;
use crate::lease::{ActiveLease, EndedLease};
use crate::reaper::Reaper;
use crate::store::{Change, Store, StoreError};
use crate::watch::Watcher;

/// The lease table, with what its operations act through: the store, the
/// reaper (an ended lease's orphans), the watcher (owners' deaths).
pub struct Leases {
    store: Store,
    table: Arc<Mutex<Table>>,
    reaper: Arc<Reaper>,
    watcher: Arc<Watcher>,
    range: PortRange,
    name_ranges: NameRanges,
    boot_id: String,
    boot_time: u64,
}

impl Leases {
    /// Loads the active leases and names from `store` into memory; a failed
    /// commit from then on reloads them.
    pub async fn load(
        store: Store,
        reaper: Arc<Reaper>,
        watcher: Arc<Watcher>,
        range: PortRange,
        boot_id: String,
        boot_time: u64,
    ) -> Result<Leases, StoreError> {
        let table = Arc::new(Mutex::new(recover::load_table(&store).await?));
        let (for_hook, store_for_hook) = (Arc::clone(&table), store.clone());
        store.on_failure(Box::new(move || {
            recover::recover(&for_hook, &store_for_hook);
        }));
        let leases = Leases {
            store,
            table,
            reaper,
            watcher,
            range,
            name_ranges: NameRanges::default(),
            boot_id,
            boot_time,
        };
        leases.label_every_project().await?;
        Ok(leases)
    }

    /// Gives names that match a pattern their pattern's range.
    pub fn with_name_ranges(mut self, name_ranges: NameRanges) -> Leases {
        self.name_ranges = name_ranges;
        self
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// The table for a decision; refused while it is being reloaded after a
    /// failed commit.
    fn table_for_change(&self) -> Result<MutexGuard<'_, Table>, LeaseError> {
        let table = self.table();
        if table.stale {
            return Err(LeaseError::Unavailable);
        }
        Ok(table)
    }

    /// The active lease on `port`.
    pub fn get(&self, port: u16) -> Result<Lease, LeaseError> {
        self.table()
            .get(port)
            .map(ActiveLease::to_api)
            .ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))
    }

    /// Active leases by port, then with `all` up to 1,000 ended ones.
    pub async fn list(&self, all: bool) -> Result<Vec<Lease>, LeaseError> {
        let mut leases: Vec<Lease> = self.table().active().map(ActiveLease::to_api).collect();
        if all {
            let ended = self.store.read().await?.recently_ended(1000).await?;
            leases.extend(ended.iter().map(EndedLease::to_api));
        }
        Ok(leases)
    }

    /// How many leases are active and how many names remember a port.
    pub fn counts(&self) -> (usize, usize) {
        let table = self.table();
        (table.len(), table.name_count())
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

fn event(now: i64, kind: &str, lease: &ActiveLease, detail: Option<String>) -> Change {
    Change::Event {
        at: now,
        kind: kind.to_string(),
        lease_id: Some(lease.id.clone()),
        port: Some(lease.port),
        pid: Some(lease.owner.id.pid),
        detail,
    }
}
