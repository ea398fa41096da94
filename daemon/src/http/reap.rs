//! `POST /v1/reap`: reap the orphans of ended leases now, or say what would be.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use portd_api::{ErrorBody, ReapReport, ReapRequest};

use super::AppError;
use super::extract::ApiJson;
use super::openapi::ServerErrors;
use crate::peer::Peer;
use crate::reaper::Reaper;

/// `POST /v1/reap`: the orphans of ended leases (another user's are left out
/// of the answer unless the caller is root).
#[utoipa::path(
    post,
    path = "/v1/reap",
    tag = "maintenance",
    request_body(content = ReapRequest, description = "Optional; `{}` reaps"),
    responses(
        (status = 200, description = "What was (or, with `dry_run`, would be) signalled, and what was only reported", body = ReapReport),
        (status = 400, description = "`bad_request`: malformed JSON, a body that is not an object, an unknown field, or a body that did not arrive within 5 s of its headers", body = ErrorBody),
        (status = 413, description = "`body_too_large`: over 64 KiB", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn reap(
    State(reaper): State<Arc<Reaper>>,
    Extension(peer): Extension<Peer>,
    ApiJson(request): ApiJson<ReapRequest>,
) -> Result<Json<ReapReport>, AppError> {
    let mut report = reaper.reap(None, request.dry_run, peer.pid).await?;
    // Another user's orphans are none of the caller's business.
    if peer.uid != 0 {
        report.reaped.retain(|p| p.uid == peer.uid);
        report.reported.retain(|p| p.uid == peer.uid);
    }
    Ok(Json(report))
}
