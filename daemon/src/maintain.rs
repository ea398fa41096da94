//! Background work: reconcile at start-up, then every tick expire TTLs and
//! check owners that have no pidfd; prune history hourly; and end the leases
//! of owners whose pidfd reports death.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::http::AppState;
use portd_api::CleanupReport;

use crate::leases::LeaseError;
use crate::owner::OwnerId;
use crate::reaper::Reaper;

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

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
/// orphans of this boot's ended leases: at start-up and on `POST /v1/cleanup`.
pub async fn cleanup(
    state: &AppState,
    protected: HashSet<u32>,
) -> Result<CleanupReport, LeaseError> {
    let (kept, ended) = state.leases.reconcile().await?;
    let reap = state.leases.reaper().reap(None, false, protected).await?;
    Ok(CleanupReport {
        kept: kept as u64,
        ended: ended.len() as u64,
        reap,
    })
}

/// Cleans up, then runs the periodic chores until `shutdown`.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    match cleanup(&state, Reaper::protected(None)).await {
        Ok(report) => tracing::info!(
            kept = report.kept,
            ended = report.ended,
            reaped = report.reap.reaped.len(),
            reported = report.reap.reported.len(),
            "start-up cleanup done"
        ),
        Err(e) => tracing::error!(error = %e, "start-up cleanup failed"),
    }
    state.reconciled.store(true, Ordering::Relaxed);
    let mut last_prune: Option<Instant> = None;
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
    }
}
