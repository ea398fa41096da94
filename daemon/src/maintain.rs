//! Background work: clean up at start-up (and keep its report), then every
//! tick expire TTLs and check the owners that have no pidfd; prune history
//! and names hourly; and end the leases of owners whose pidfd reports
//! death. Each receives the lease table and what else it uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portd_api::StartupCleanup;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::lease::OwnerId;
use crate::leases::{Leases, NAME_RETENTION, Startup};
use crate::time::{now_ms, rfc3339};

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the periodic chores work on and how often.
pub struct Chores {
    pub leases: Arc<Leases>,
    /// Where the start-up cleanup leaves its report.
    pub startup: Arc<Startup>,
    /// How often TTLs are expired and owners without a pidfd checked.
    pub poll_interval: Duration,
    /// Ended leases and events older than this are pruned.
    pub retention: Duration,
    /// When the daemon started (Unix ms): the start-up cleanup looks only at
    /// names last used before, since the daemon answers while it runs.
    pub started_at_ms: i64,
}

/// Ends leases as owners die, until shutdown.
pub async fn on_owner_death(
    leases: Arc<Leases>,
    mut deaths: mpsc::UnboundedReceiver<OwnerId>,
    shutdown: CancellationToken,
) {
    loop {
        let owner = tokio::select! {
            _ = shutdown.cancelled() => return,
            owner = deaths.recv() => match owner { Some(owner) => owner, None => return },
        };
        match leases.end_owner(owner).await {
            Ok(ended) => leases.reap_later(ended),
            Err(e) => {
                tracing::error!(pid = owner.pid, error = %e, "cannot end the leases of a dead owner")
            }
        }
    }
}

/// Cleans up, then runs the periodic chores until `shutdown`.
pub async fn run(chores: Chores, shutdown: CancellationToken) {
    let leases = &chores.leases;
    // Only names from before this start: the daemon answers while it cleans
    // up, and a name leased meanwhile is in use whatever its directory.
    let startup = match leases.cleanup(None, chores.started_at_ms).await {
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
    chores.startup.finish(startup);
    let mut last_prune: Option<Instant> = None;
    // The start-up cleanup has just pruned the names.
    let mut names_pruned = Instant::now();
    let mut tick = tokio::time::interval(chores.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match leases.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(leases = n, "expired"),
            Err(e) => tracing::error!(error = %e, "expiring leases failed"),
        }
        // Owners without a pidfd are caught here; their orphans go too.
        match leases.reconcile().await {
            Ok((_, ended)) => leases.reap_later(ended),
            Err(e) => tracing::error!(error = %e, "owner poll failed"),
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            match leases.prune(chores.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned history"),
                Err(e) => tracing::error!(error = %e, "pruning history failed"),
            }
        }
        if names_pruned.elapsed() >= PRUNE_EVERY {
            names_pruned = Instant::now();
            if let Err(e) = leases.prune_names(NAME_RETENTION, now_ms()).await {
                tracing::error!(error = %e, "pruning names failed");
            }
        }
    }
}
