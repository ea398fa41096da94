//! The HTTP API: routes, shared state, and the middleware every request
//! passes (peer credentials, version header, timeout, body limit).
//! One file per resource or verb: `leases`, `processes` (a lease's command
//! and processes), `names`, `ports`, `kill`, `reap`, `cleanup`, `status`,
//! `events`; `openapi` describes them all.

mod cleanup;
mod conns;
mod error;
mod events;
mod extract;
mod kill;
mod leases;
mod names;
mod openapi;
mod ports;
mod processes;
mod reap;
pub mod server;
mod status;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use portd_api::{ErrorCode, MAX_BODY_BYTES, VERSION, VERSION_HEADER};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::AppError;

use crate::config::Config;
use crate::leases::Leases;
use crate::maintain::Startup;

/// How long one request may take. Longer than any reap grace a later grant
/// may wait for, short enough that a wedged handler cannot pin a connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What handlers share.
pub struct AppState {
    pub leases: Arc<Leases>,
    pub config: Config,
    pub started: Instant,
    pub started_at_ms: i64,
    pub reconciled: AtomicBool,
    /// The start-up cleanup's report, once it has run.
    pub startup: Startup,
    pub shutdown: CancellationToken,
}

pub type State = axum::extract::State<Arc<AppState>>;

/// Every route, each registered with the router and the OpenAPI document
/// at once (method and path come from the handler's `#[utoipa::path]`).
fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(status::health))
        .routes(routes!(status::status))
        .routes(routes!(openapi::document))
        .routes(routes!(leases::create, leases::list))
        .routes(routes!(leases::get, leases::release))
        .routes(routes!(processes::register))
        .routes(routes!(processes::list))
        .routes(routes!(ports::report))
        .routes(routes!(kill::kill))
        .routes(routes!(reap::reap))
        .routes(routes!(cleanup::cleanup))
        .routes(routes!(names::list, names::forget))
        .routes(routes!(events::list))
}

/// The OpenAPI document of the API, as `GET /v1/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The API's routes.
pub fn router(state: Arc<AppState>) -> Router {
    api()
        .split_for_parts()
        .0
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such endpoint; see docs/API.md")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// Answers 503 while shutting down, bounds each request in time, and stamps
/// every answer with the daemon's version.
async fn guard(state: State, request: axum::extract::Request, next: Next) -> Response {
    let mut response = if state.shutdown.is_cancelled() && request.uri().path() != "/v1/health" {
        AppError::new(ErrorCode::ShuttingDown, "portd is shutting down").into_response()
    } else {
        match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
            Ok(response) => response,
            Err(_) => AppError::new(ErrorCode::Internal, "request timed out").into_response(),
        }
    };
    response
        .headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from_static(VERSION));
    response
}
