//! Background work: clean up at start-up (and keep its report), then every
//! tick expire TTLs and check owners that have no pidfd; prune history and
//! names hourly; and end the leases of owners whose pidfd reports death.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::http::AppState;
use portd_api::{CleanupReport, StartupCleanup};

use crate::lease::OwnerId;
use crate::leases::LeaseError;
use crate::time::{now_ms, rfc3339};

const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A name with no lease for this long is forgotten, like old history.
pub const NAME_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The start-up cleanup's report, kept for the daemon's life: a cleanup
/// asked for later finds nothing left that this one did, and says what it
/// did instead of "ended 0".
pub struct Startup(watch::Sender<Option<Option<StartupCleanup>>>);

impl Startup {
    pub fn new() -> Startup {
        Startup(watch::Sender::new(None))
    }

    /// Keeps the report (`None`: the start-up cleanup failed).
    fn finish(&self, report: Option<StartupCleanup>) {
        self.0.send_replace(Some(report));
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

/// Ends leases as owners die, until shutdown.
pub async fn on_owner_death(state: Arc<AppState>, mut deaths: mpsc::UnboundedReceiver<OwnerId>) {
    loop {
        let owner = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            owner = deaths.recv() => match owner { Some(owner) => owner, None => return },
        };
        match state.leases.end_owner(owner).await {
            Ok(ended) => state.leases.reap_later(ended),
            Err(e) => {
                tracing::error!(pid = owner.pid, error = %e, "cannot end the leases of a dead owner")
            }
        }
    }
}

/// Ends the leases of dead owners and of other boots, then reaps the
/// orphans of this boot's ended leases, then forgets the names of gone
/// projects and long-unused names (of those used before `names_used_before`,
/// Unix ms): at start-up and on `POST /v1/cleanup`.
pub async fn cleanup(
    state: &AppState,
    caller: Option<u32>,
    names_used_before: i64,
) -> Result<CleanupReport, LeaseError> {
    let (kept, ended) = state.leases.reconcile().await?;
    let reap = state.leases.reaper().reap(None, false, caller).await?;
    let forgotten = state
        .leases
        .prune_names(NAME_RETENTION, names_used_before)
        .await?;
    Ok(CleanupReport {
        kept: kept as u64,
        ended: ended.len() as u64,
        reap,
        forgotten,
        startup: None,
    })
}

/// Cleans up, then runs the periodic chores until `shutdown`.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    // Only names from before this start: the daemon answers while it cleans
    // up, and a name leased meanwhile is in use whatever its directory.
    let startup = match cleanup(&state, None, state.started_at_ms).await {
        Ok(report) => {
            tracing::info!(
                kept = report.kept,
                ended = report.ended,
                reaped = report.reap.reaped.len(),
                reported = report.reap.reported.len(),
                forgotten = report.forgotten.len(),
                "start-up cleanup done"
            );
            Some(StartupCleanup {
                at: rfc3339(now_ms()),
                kept: report.kept,
                ended: report.ended,
                reap: report.reap,
                forgotten: report.forgotten,
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "start-up cleanup failed");
            None
        }
    };
    state.startup.finish(startup);
    state.reconciled.store(true, Ordering::Relaxed);
    let mut last_prune: Option<Instant> = None;
    // The start-up cleanup has just pruned the names.
    let mut names_pruned = Instant::now();
    let mut tick = tokio::time::interval(state.config.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match state.leases.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(leases = n, "expired"),
            Err(e) => tracing::error!(error = %e, "expiring leases failed"),
        }
        // Owners without a pidfd are caught here; their orphans go too.
        match state.leases.reconcile().await {
            Ok((_, ended)) => state.leases.reap_later(ended),
            Err(e) => tracing::error!(error = %e, "owner poll failed"),
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            match state.leases.prune(state.config.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned history"),
                Err(e) => tracing::error!(error = %e, "pruning history failed"),
            }
        }
        if names_pruned.elapsed() >= PRUNE_EVERY {
            names_pruned = Instant::now();
            if let Err(e) = state.leases.prune_names(NAME_RETENTION, now_ms()).await {
                tracing::error!(error = %e, "pruning names failed");
            }
        }
    }
}
