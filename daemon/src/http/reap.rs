//! `POST /v1/reap`: reap the orphans of ended leases now, or say what would be.

use axum::Json;
use axum::extract::Extension;
use portd_api::{ReapReport, ReapRequest};

use super::extract::ApiJson;
use super::{AppError, State};
use crate::leases::{LeaseError, Peer};
use crate::reaper::Reaper;

pub async fn reap(
    state: State,
    Extension(peer): Extension<Peer>,
    ApiJson(request): ApiJson<ReapRequest>,
) -> Result<Json<ReapReport>, AppError> {
    let protected = Reaper::protected(peer.pid);
    let mut report = state
        .leases
        .reaper()
        .reap(None, request.dry_run, protected)
        .await
        .map_err(LeaseError::from)?;
    // Another user's orphans are none of the caller's business.
    if peer.uid != 0 {
        report.reaped.retain(|p| p.uid == peer.uid);
        report.reported.retain(|p| p.uid == peer.uid);
    }
    Ok(Json(report))
}
