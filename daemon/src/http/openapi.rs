//! `GET /v1/openapi.json`: the API as an OpenAPI 3.1 document.
//!
//! The document is generated from the same code that serves the API: each
//! handler carries a `#[utoipa::path]` annotation, the wire types in
//! `portd-api` derive their schemas (its `openapi` feature), and
//! [`super::api`] registers every handler with the router and the document
//! in one step, so a route cannot exist undocumented.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use portd_api::{ErrorBody, ErrorCode};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, response::Response};
use utoipa::{IntoResponses, OpenApi};

/// The document's fixed parts; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "portd",
        description = "The portd daemon's HTTP API: HTTP/1.1 with JSON bodies on a Unix \
socket (curl --unix-socket SOCKET http://portd/v1/...). The caller's uid and pid come \
from SO_PEERCRED. Every answer carries the header `portd-version`. Every failure answers \
with `ErrorBody`; a path that exists without the method answers 405 `method_not_allowed`, \
an unknown path 404 `not_found`. See docs/API.md.",
        license(name = "MIT OR Apache-2.0")
    ),
    servers((url = "http://portd", description = "The daemon's Unix socket")),
    components(schemas(ErrorBody, ErrorCode)),
    tags(
        (name = "daemon", description = "Liveness, status and this document"),
        (name = "leases", description = "Grant, list, look up and release leases"),
        (name = "ports", description = "Who leases and who listens on a port; explicit kill"),
        (name = "maintenance", description = "Reaping orphans and cleaning up"),
        (name = "history", description = "Names and events"),
    )
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`: this document, built once on first request.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "daemon",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API",
            content_type = "application/json", body = Object),
        ServerErrors,
    )
)]
pub async fn document() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let json = DOCUMENT.get_or_init(|| {
        super::openapi()
            .to_json()
            .expect("an OpenAPI document always serialises")
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json.as_str(),
    )
}

/// The failures any endpoint but health may answer: 500 `internal` (details
/// in the daemon's log; also a request past its 60 s limit) and 503
/// (`shutting_down`, or `unavailable` while it recovers from a failed write).
pub struct ServerErrors;

impl IntoResponses for ServerErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            error(
                500,
                "`internal`: the daemon failed; details are in its log only (a full disk under the database is named in the message)",
            ),
            error(
                503,
                "`shutting_down` (the daemon is stopping) or `unavailable` (it is \
                 recovering from a failed write); retry after 1 s",
            ),
        ])
    }
}

fn error(status: u16, description: &str) -> (String, RefOr<Response>) {
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    (status.to_string(), response.into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use portd_api::routes::ROUTES;
    use serde_json::Value;

    /// `get /v1/leases/{port}`: a route as the document keys it.
    fn documented(document: &Value) -> BTreeSet<String> {
        document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| format!("{method} {path}"))
            })
            .collect()
    }

    #[test]
    fn the_document_has_exactly_the_routes_the_api_crate_defines() {
        let document: Value =
            serde_json::from_str(&super::super::openapi().to_json().unwrap()).unwrap();
        let defined: BTreeSet<String> = ROUTES
            .iter()
            .map(|route| {
                let method = route.method.as_str().to_ascii_lowercase();
                format!("{method} {}", route.path)
            })
            .collect();
        let served = documented(&document);
        assert_eq!(
            served.difference(&defined).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "served and documented, but not defined in portd_api::routes"
        );
        assert_eq!(
            defined.difference(&served).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "defined in portd_api::routes, but not served"
        );
        assert_eq!(served.len(), ROUTES.len());
    }

    #[test]
    fn every_failure_answers_with_the_error_body() {
        let document: Value =
            serde_json::from_str(&super::super::openapi().to_json().unwrap()).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    if !status.starts_with('2') {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
