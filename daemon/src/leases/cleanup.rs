//! The cleanup that runs at start-up and on `POST /v1/cleanup` (machines
//! without systemd run `portctl cleanup` at login): leases of dead owners
//! and of other boots end, orphans are reaped, stale names forgotten. The
//! start-up cleanup's report is kept ([`Startup`]) for the daemon's life.

use std::time::Duration;

use portd_api::{CleanupReport, StartupCleanup};
use tokio::sync::watch;

use super::{LeaseError, Leases};

/// A name with no lease for this long is forgotten, like old history.
pub const NAME_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

impl Leases {
    /// Ends the leases of dead owners and of other boots, then reaps the
    /// orphans of this boot's ended leases (never signalling `caller` or its
    /// ancestors), then forgets the names of gone projects and long-unused
    /// names (of those used before `names_used_before`, Unix ms).
    pub async fn cleanup(
        &self,
        caller: Option<u32>,
        names_used_before: i64,
    ) -> Result<CleanupReport, LeaseError> {
        let (kept, ended) = self.reconcile().await?;
        let reap = self.reaper.reap(None, false, caller).await?;
        let forgotten = self.prune_names(NAME_RETENTION, names_used_before).await?;
        Ok(CleanupReport {
            kept: kept as u64,
            ended: ended.len() as u64,
            reap,
            forgotten,
            startup: None,
        })
    }
}

/// The start-up cleanup's report, kept for the daemon's life: a cleanup
/// asked for later finds nothing left that this one did, and says what it
/// did instead of "ended 0".
pub struct Startup(watch::Sender<Option<Option<StartupCleanup>>>);

impl Startup {
    pub fn new() -> Startup {
        Startup(watch::Sender::new(None))
    }

    /// Keeps the report (`None`: the start-up cleanup failed).
    pub fn finish(&self, report: Option<StartupCleanup>) {
        self.0.send_replace(Some(report));
    }

    /// Whether the start-up cleanup has finished (`status` says
    /// `reconciled`).
    pub fn is_finished(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Waits until the start-up cleanup has finished, then its report. A
    /// cleanup that waits never sweeps beside it, so no process is reaped,
    /// and no lease ended, by both.
    pub async fn report(&self) -> Option<StartupCleanup> {
        let mut finished = self.0.subscribe();
        let done = finished.wait_for(Option::is_some).await;
        done.ok().and_then(|report| report.clone().flatten())
    }
}

impl Default for Startup {
    fn default() -> Startup {
        Startup::new()
    }
}
