//! The HTTP API: routes, the state handlers draw on, and the middleware
//! every request passes (version header, timeout, body limit; the accept
//! loop in `server` attaches the peer's credentials). One file per resource
//! or verb: `leases`, `processes` (a lease's command and processes),
//! `names`, `url` (a name's proxy URL), `ports`, `kill`, `reap`,
//! `cleanup`, `status`, `events`;
//! `openapi` describes them all. A handler takes the parts of [`AppState`]
//! it uses (`State<Arc<Leases>>`, `State<Store>`, ...), not the whole.

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
mod repoll;
pub mod server;
mod status;
mod url;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, State};
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
use crate::leases::{Leases, Startup};
use crate::reaper::Reaper;
use crate::store::Store;
use crate::task::Units;
use crate::watch::Watcher;

/// How long one request may take. Longer than any reap grace a later grant
/// may wait for, short enough that a wedged handler cannot pin a connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything the handlers draw on; each takes only its parts (axum's
/// `FromRef` substates). axum clones the state for every request, so it is
/// one `Arc`: a clone of the parts themselves took a lock (the shutdown
/// token's) and an allocation (the store's path) per request.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

/// What [`AppState`] holds.
pub struct AppParts {
    pub leases: Arc<Leases>,
    /// Kills and reaps on request.
    pub reaper: Arc<Reaper>,
    /// History and status counts.
    pub store: Store,
    /// How many owners have a pidfd (status).
    pub watcher: Arc<Watcher>,
    /// The start-up cleanup's report, once it has run.
    pub startup: Arc<Startup>,
    /// Units of work a request starts and a stopping daemon finishes.
    pub units: Units,
    pub daemon: Arc<Daemon>,
    pub shutdown: CancellationToken,
}

/// What the daemon runs with and since when, for `status`.
pub struct Daemon {
    pub config: Config,
    /// The `.localhost` proxy's listener, as it was opened.
    pub proxy: portd_api::ProxyStatus,
    pub started: Instant,
    /// Unix milliseconds.
    pub started_at_ms: i64,
}

/// A part of [`AppState`] that a handler takes as `State<Part>`.
macro_rules! substate {
    ($($field:ident: $part:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $part {
            fn from_ref(state: &AppState) -> $part {
                state.0.$field.clone()
            }
        }
    )*};
}

substate!(
    leases: Arc<Leases>,
    reaper: Arc<Reaper>,
    store: Store,
    watcher: Arc<Watcher>,
    startup: Arc<Startup>,
    units: Units,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
);

/// Every route, each registered with the router and the OpenAPI document
/// at once (method and path come from the handler's `#[utoipa::path]`).
fn api() -> OpenApiRouter<AppState> {
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
        .routes(routes!(url::get))
        .routes(routes!(events::list))
}

/// The OpenAPI document of the API, as `GET /v1/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    api()
        .split_for_parts()
        .0
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::new(state.0.shutdown.clone()),
            guard,
        ))
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
async fn guard(
    State(shutdown): State<Arc<CancellationToken>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let mut response = if shutdown.is_cancelled() && request.uri().path() != "/v1/health" {
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
