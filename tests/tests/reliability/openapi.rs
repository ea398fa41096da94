//! `GET /v1/openapi.json`: an OpenAPI 3.1 document that lists exactly the
//! routes the daemon serves, each with its answers and the error body.
//!
//! The daemon builds its router and the document from one list of
//! handlers, so a route cannot be served undocumented; this test holds the
//! served document to the routes `portd_api::routes` defines (the ones
//! portctl calls) and docs/API.md to them, and the router to the document:
//! every documented method reaches a handler, every other method on a
//! documented path is 405.

use std::collections::BTreeSet;

use oas3::spec::ObjectOrReference;
use portd_api::routes::ROUTES;
use portd_e2e::{PortBlock, TestDaemon};
use serde_json::Value;

/// The routes of the API as `portd_api::routes` defines them for the
/// client and the daemon: lower-case method, path template.
fn routes() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|route| {
            let method = route.method.as_str().to_ascii_lowercase();
            (method, route.path.to_string())
        })
        .collect()
}

/// Methods tried on every documented path.
const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// The message of the daemon's answer to a path it has no route for.
const NO_ROUTE: &str = "no such endpoint";

#[test]
fn the_served_document_is_openapi_3_1_and_lists_every_route() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let answer = d.get("/v1/openapi.json");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));

    let spec = oas3::from_json(&answer.body)
        .unwrap_or_else(|e| panic!("not an OpenAPI 3 document: {e}\n{}", answer.body));
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!((version.major, version.minor), (3, 1), "{version}");
    assert_eq!(spec.info.version, portd_api::VERSION);

    let documented: BTreeSet<(String, String)> = spec
        .operations()
        .map(|(path, method, _)| (method.as_str().to_ascii_lowercase(), path))
        .collect();
    assert_eq!(documented, routes(), "documented routes");

    for (path, method, op) in spec.operations() {
        let what = format!("{method} {path}");
        let responses = op.responses(&spec);
        assert_eq!(
            responses.len(),
            op.responses.as_ref().map_or(0, |r| r.len()),
            "{what}: every response resolves"
        );
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{what}: no success answer documented"
        );
        for (status, response) in &responses {
            let schema = response
                .content
                .get("application/json")
                .and_then(|media| media.schema.as_ref())
                .unwrap_or_else(|| panic!("{what} {status}: no JSON body documented"));
            match schema {
                ObjectOrReference::Ref { ref_path, .. } if !status.starts_with('2') => assert_eq!(
                    ref_path, "#/components/schemas/ErrorBody",
                    "{what} {status}: failures answer with the error body"
                ),
                _ if !status.starts_with('2') => {
                    panic!("{what} {status}: failures answer with the error body")
                }
                _ => {}
            }
        }
        let parameters = op
            .parameters(&spec)
            .unwrap_or_else(|e| panic!("{what}: parameters do not resolve: {e}"));
        if path.contains("{port}") {
            assert!(
                parameters.iter().any(|p| p.name == "port"),
                "{what}: the port parameter is undocumented"
            );
        }
        if let Some(body) = &op.request_body {
            body.resolve(&spec)
                .unwrap_or_else(|e| panic!("{what}: request body does not resolve: {e}"));
        }
    }
    let queries: BTreeSet<(String, String)> = spec
        .operations()
        .flat_map(|(path, _, op)| {
            let params = op.parameters(&spec).unwrap_or_default();
            params
                .into_iter()
                .filter(|p| p.location == oas3::spec::ParameterIn::Query)
                .map(move |p| (path.clone(), p.name))
        })
        .collect();
    for (path, name) in [
        ("/v1/leases", "all"),
        ("/v1/leases/{port}", "id"),
        ("/v1/names", "project"),
        ("/v1/names", "name"),
        ("/v1/events", "since"),
    ] {
        assert!(
            queries.contains(&(path.to_string(), name.to_string())),
            "query parameter {name} of {path} is undocumented: {queries:?}"
        );
    }
    let json: Value = answer.json();
    assert_refs_resolve(&json, &json);

    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md"))
        .expect("docs/API.md");
    for route in ROUTES {
        let route = format!("{} {}", route.method.as_str(), route.path);
        assert!(docs.contains(&route), "docs/API.md does not list {route}");
    }
}

/// Every `$ref` in the document names a schema it defines.
fn assert_refs_resolve(doc: &Value, node: &Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let name = target
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unexpected $ref {target}"));
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "dangling $ref {target}"
                );
            }
            map.values().for_each(|v| assert_refs_resolve(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_refs_resolve(doc, v)),
        _ => {}
    }
}

/// The router against the document: documented methods reach a handler,
/// the others are refused with 405, unknown paths with 404.
#[test]
fn every_documented_route_is_served_and_nothing_else() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    // Nothing listens on the block, so `kill` has nothing to signal; bodies
    // with an unknown field are refused before a handler acts.
    let port = block.port(0).to_string();
    let routes = routes();
    let paths: BTreeSet<&str> = routes.iter().map(|(_, p)| p.as_str()).collect();
    for template in paths {
        let path = template.replace("{port}", &port);
        for method in METHODS {
            let documented = routes.contains(&(method.to_string(), template.to_string()));
            let body = matches!(*method, "post" | "put" | "patch").then_some(r#"{"fuzz": 1}"#);
            let answer = d.request(&method.to_ascii_uppercase(), &path, body);
            let code = answer.error_code();
            let message = answer.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if documented {
                assert!(
                    answer.status != 405 && !message.contains(NO_ROUTE),
                    "{method} {path} is documented but not served: {} {}",
                    answer.status,
                    answer.body
                );
            } else {
                assert_eq!(
                    (answer.status, code.as_deref()),
                    (405, Some("method_not_allowed")),
                    "{method} {path} is served but not documented: {}",
                    answer.body
                );
            }
        }
    }
    for unknown in ["/v1/openapi", "/v1/lease", "/v2/health", "/openapi.json"] {
        let answer = d.get(unknown);
        assert_eq!(answer.status, 404, "{unknown}: {}", answer.body);
        assert!(answer.body.contains(NO_ROUTE), "{unknown}: {}", answer.body);
    }
    d.assert_healthy("every route");
}
