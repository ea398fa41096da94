//! The API's endpoints, each defined once for both sides: its method and
//! path template, its path parameter, and the types of its query, body and
//! answer.
//!
//! A client verb names an endpoint (`GetLease { port }`) and gets back the
//! endpoint's `Answer`; it never writes a path. The daemon registers its
//! handlers with `#[utoipa::path]` literals, which cannot name these
//! constants, so its tests hold the OpenAPI document it serves to
//! [`ROUTES`]: the same methods and path templates, no more and no fewer.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::query::{EventsQuery, ForgetQuery, LeasesQuery, NamesQuery, ReleaseQuery, UrlQuery};
use crate::types::{
    CleanupReport, CommandRequest, EventList, Health, KillReport, KillRequest, Lease, LeaseList,
    LeaseProcesses, LeaseRequest, NameList, NameUrl, PortReport, ReapReport, ReapRequest, Status,
};

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// As a request line writes it: `GET`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// A method and a path template, as the OpenAPI document writes them:
/// `DELETE /v1/leases/{port}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub method: Method,
    /// The path, with `{port}` where the route takes a port.
    pub path: &'static str,
}

impl Route {
    const fn new(method: Method, path: &'static str) -> Route {
        Route { method, path }
    }

    /// The path with `port` in place of `{port}`.
    fn with_port(self, port: u16) -> String {
        self.path.replace("{port}", &port.to_string())
    }
}

/// The query or the body of an endpoint that takes none. It has no
/// values, so such an endpoint's `query()` or `body()` can only be `None`.
#[derive(Debug, Serialize)]
pub enum Nothing {}

/// One endpoint of the API: the request a value of the type stands for,
/// and what its success answers with.
pub trait Endpoint {
    const ROUTE: Route;
    /// The query string's fields ([`Nothing`] for none).
    type Query: Serialize;
    /// The JSON body ([`Nothing`] for none).
    type Body: Serialize;
    /// What a 2xx answer's JSON body is.
    type Answer: DeserializeOwned;

    /// The path, with the route's parameter filled in.
    fn path(&self) -> String {
        Self::ROUTE.path.to_string()
    }

    fn query(&self) -> Option<&Self::Query> {
        None
    }

    fn body(&self) -> Option<&Self::Body> {
        None
    }

    /// The request target: the path, then the query string if any of its
    /// fields is set.
    fn target(&self) -> String {
        let mut target = self.path();
        if let Some(query) = self.query() {
            let text = serde_urlencoded::to_string(query)
                .expect("query structs hold only strings and booleans");
            if !text.is_empty() {
                target.push('?');
                target.push_str(&text);
            }
        }
        target
    }
}

/// Every route of the API, in the order docs/API.md lists them.
pub const ROUTES: &[Route] = &[
    GetHealth::ROUTE,
    GetStatus::ROUTE,
    GetOpenApi::ROUTE,
    CreateLease::ROUTE,
    ListLeases::ROUTE,
    GetLease::ROUTE,
    ReleaseLease::ROUTE,
    RegisterCommand::ROUTE,
    ListProcesses::ROUTE,
    GetPort::ROUTE,
    KillPort::ROUTE,
    Reap::ROUTE,
    Cleanup::ROUTE,
    ListNames::ROUTE,
    ForgetNames::ROUTE,
    GetUrl::ROUTE,
    ListEvents::ROUTE,
];

/// `GET /v1/health`: liveness; answers before the start-up cleanup ends.
#[derive(Debug, Clone, Copy)]
pub struct GetHealth;

impl Endpoint for GetHealth {
    const ROUTE: Route = Route::new(Method::Get, "/v1/health");
    type Query = Nothing;
    type Body = Nothing;
    type Answer = Health;
}

/// `GET /v1/status`: version, uptime, paths, range and counts.
#[derive(Debug, Clone, Copy)]
pub struct GetStatus;

impl Endpoint for GetStatus {
    const ROUTE: Route = Route::new(Method::Get, "/v1/status");
    type Query = Nothing;
    type Body = Nothing;
    type Answer = Status;
}

/// `GET /v1/openapi.json`: the API as an OpenAPI 3.1 document.
#[derive(Debug, Clone, Copy)]
pub struct GetOpenApi;

impl Endpoint for GetOpenApi {
    const ROUTE: Route = Route::new(Method::Get, "/v1/openapi.json");
    type Query = Nothing;
    type Body = Nothing;
    type Answer = serde_json::Value;
}

/// `POST /v1/leases`: a new lease (201), or the caller's existing one (200).
#[derive(Debug, Clone)]
pub struct CreateLease(pub LeaseRequest);

impl Endpoint for CreateLease {
    const ROUTE: Route = Route::new(Method::Post, "/v1/leases");
    type Query = Nothing;
    type Body = LeaseRequest;
    type Answer = Lease;

    fn body(&self) -> Option<&LeaseRequest> {
        Some(&self.0)
    }
}

/// `GET /v1/leases`: the active leases; with `all`, ended ones too.
#[derive(Debug, Clone, Default)]
pub struct ListLeases(pub LeasesQuery);

impl Endpoint for ListLeases {
    const ROUTE: Route = Route::new(Method::Get, "/v1/leases");
    type Query = LeasesQuery;
    type Body = Nothing;
    type Answer = LeaseList;

    fn query(&self) -> Option<&LeasesQuery> {
        Some(&self.0)
    }
}

/// `GET /v1/leases/{port}`: the port's active lease.
#[derive(Debug, Clone, Copy)]
pub struct GetLease {
    pub port: u16,
}

impl Endpoint for GetLease {
    const ROUTE: Route = Route::new(Method::Get, "/v1/leases/{port}");
    type Query = Nothing;
    type Body = Nothing;
    type Answer = Lease;

    fn path(&self) -> String {
        Self::ROUTE.with_port(self.port)
    }
}

/// `DELETE /v1/leases/{port}`: release; answers the ended lease.
#[derive(Debug, Clone)]
pub struct ReleaseLease {
    pub port: u16,
    pub query: ReleaseQuery,
}

impl Endpoint for ReleaseLease {
    const ROUTE: Route = Route::new(Method::Delete, "/v1/leases/{port}");
    type Query = ReleaseQuery;
    type Body = Nothing;
    type Answer = Lease;

    fn path(&self) -> String {
        Self::ROUTE.with_port(self.port)
    }

    fn query(&self) -> Option<&ReleaseQuery> {
        Some(&self.query)
    }
}

/// `PUT /v1/leases/{port}/command`: the command `portctl run` started for
/// the lease; answers the lease.
#[derive(Debug, Clone)]
pub struct RegisterCommand {
    pub port: u16,
    pub request: CommandRequest,
}

impl Endpoint for RegisterCommand {
    const ROUTE: Route = Route::new(Method::Put, "/v1/leases/{port}/command");
    type Query = Nothing;
    type Body = CommandRequest;
    type Answer = Lease;

    fn path(&self) -> String {
        Self::ROUTE.with_port(self.port)
    }

    fn body(&self) -> Option<&CommandRequest> {
        Some(&self.request)
    }
}

/// `GET /v1/leases/{port}/processes`: the lease's processes and the ports
/// they listen on.
#[derive(Debug, Clone, Copy)]
pub struct ListProcesses {
    pub port: u16,
}

impl Endpoint for ListProcesses {
    const ROUTE: Route = Route::new(Method::Get, "/v1/leases/{port}/processes");
    type Query = Nothing;
    type Body = Nothing;
    type Answer = LeaseProcesses;

    fn path(&self) -> String {
        Self::ROUTE.with_port(self.port)
    }
}

/// `GET /v1/ports/{port}`: who leases and who listens on the port.
#[derive(Debug, Clone, Copy)]
pub struct GetPort {
    pub port: u16,
}

impl Endpoint for GetPort {
    const ROUTE: Route = Route::new(Method::Get, "/v1/ports/{port}");
    type Query = Nothing;
    type Body = Nothing;
    type Answer = PortReport;

    fn path(&self) -> String {
        Self::ROUTE.with_port(self.port)
    }
}

/// `POST /v1/ports/{port}/kill`: an explicit kill of the port's listeners.
#[derive(Debug, Clone)]
pub struct KillPort {
    pub port: u16,
    pub request: KillRequest,
}

impl Endpoint for KillPort {
    const ROUTE: Route = Route::new(Method::Post, "/v1/ports/{port}/kill");
    type Query = Nothing;
    type Body = KillRequest;
    type Answer = KillReport;

    fn path(&self) -> String {
        Self::ROUTE.with_port(self.port)
    }

    fn body(&self) -> Option<&KillRequest> {
        Some(&self.request)
    }
}

/// `POST /v1/reap`: end the orphans of ended leases (or, dry, say which).
#[derive(Debug, Clone, Default)]
pub struct Reap(pub ReapRequest);

impl Endpoint for Reap {
    const ROUTE: Route = Route::new(Method::Post, "/v1/reap");
    type Query = Nothing;
    type Body = ReapRequest;
    type Answer = ReapReport;

    fn body(&self) -> Option<&ReapRequest> {
        Some(&self.0)
    }
}

/// `POST /v1/cleanup`: reconcile the leases, sweep orphans, forget stale
/// names. It takes no body.
#[derive(Debug, Clone, Copy)]
pub struct Cleanup;

impl Endpoint for Cleanup {
    const ROUTE: Route = Route::new(Method::Post, "/v1/cleanup");
    type Query = Nothing;
    type Body = Nothing;
    type Answer = CleanupReport;
}

/// `GET /v1/names`: names and the ports they remember.
#[derive(Debug, Clone, Default)]
pub struct ListNames(pub NamesQuery);

impl Endpoint for ListNames {
    const ROUTE: Route = Route::new(Method::Get, "/v1/names");
    type Query = NamesQuery;
    type Body = Nothing;
    type Answer = NameList;

    fn query(&self) -> Option<&NamesQuery> {
        Some(&self.0)
    }
}

/// `DELETE /v1/names`: forget a project's names (or one of them); answers
/// what was forgotten.
#[derive(Debug, Clone)]
pub struct ForgetNames(pub ForgetQuery);

impl Endpoint for ForgetNames {
    const ROUTE: Route = Route::new(Method::Delete, "/v1/names");
    type Query = ForgetQuery;
    type Body = Nothing;
    type Answer = NameList;

    fn query(&self) -> Option<&ForgetQuery> {
        Some(&self.0)
    }
}

/// `GET /v1/url`: a name's URL through the `.localhost` proxy.
#[derive(Debug, Clone)]
pub struct GetUrl(pub UrlQuery);

impl Endpoint for GetUrl {
    const ROUTE: Route = Route::new(Method::Get, "/v1/url");
    type Query = UrlQuery;
    type Body = Nothing;
    type Answer = NameUrl;

    fn query(&self) -> Option<&UrlQuery> {
        Some(&self.0)
    }
}

/// `GET /v1/events`: the history, oldest first.
#[derive(Debug, Clone, Default)]
pub struct ListEvents(pub EventsQuery);

impl Endpoint for ListEvents {
    const ROUTE: Route = Route::new(Method::Get, "/v1/events");
    type Query = EventsQuery;
    type Body = Nothing;
    type Answer = EventList;

    fn query(&self) -> Option<&EventsQuery> {
        Some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// An endpoint's route and its request target.
    fn request<E: Endpoint>(endpoint: &E) -> (Route, String) {
        (E::ROUTE, endpoint.target())
    }

    #[test]
    fn every_endpoint_fills_its_template_and_is_listed_once() {
        let release = ReleaseQuery {
            id: Some("019a-b".into()),
            keep: true,
        };
        let names = NamesQuery {
            project: Some("/srv/my app".into()),
            name: None,
        };
        let forget = ForgetQuery {
            project: "/srv/x".into(),
            name: Some("api".into()),
        };
        let since = EventsQuery {
            since: Some("2026-01-01T00:00:00Z".into()),
        };
        let requests = [
            request(&GetHealth),
            request(&GetStatus),
            request(&GetOpenApi),
            request(&CreateLease(LeaseRequest::default())),
            request(&ListLeases(LeasesQuery { all: true })),
            request(&GetLease { port: 8000 }),
            request(&ReleaseLease {
                port: 8000,
                query: release,
            }),
            request(&RegisterCommand {
                port: 8000,
                request: CommandRequest {
                    id: "L".into(),
                    pid: 1,
                    start_time: 1.0,
                },
            }),
            request(&ListProcesses { port: 8000 }),
            request(&GetPort { port: 8000 }),
            request(&KillPort {
                port: 8000,
                request: KillRequest::default(),
            }),
            request(&Reap(ReapRequest::default())),
            request(&Cleanup),
            request(&ListNames(names)),
            request(&ForgetNames(forget)),
            request(&GetUrl(UrlQuery {
                project: "/srv/x".into(),
                name: "api".into(),
            })),
            request(&ListEvents(since)),
        ];
        let targets: Vec<&str> = requests.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            targets,
            [
                "/v1/health",
                "/v1/status",
                "/v1/openapi.json",
                "/v1/leases",
                "/v1/leases?all=true",
                "/v1/leases/8000",
                "/v1/leases/8000?id=019a-b&keep=true",
                "/v1/leases/8000/command",
                "/v1/leases/8000/processes",
                "/v1/ports/8000",
                "/v1/ports/8000/kill",
                "/v1/reap",
                "/v1/cleanup",
                "/v1/names?project=%2Fsrv%2Fmy+app",
                "/v1/names?project=%2Fsrv%2Fx&name=api",
                "/v1/url?project=%2Fsrv%2Fx&name=api",
                "/v1/events?since=2026-01-01T00%3A00%3A00Z",
            ]
        );
        let routes: Vec<Route> = requests.iter().map(|(r, _)| *r).collect();
        assert_eq!(routes, ROUTES, "ROUTES lists every endpoint, in order");
        let distinct: BTreeSet<&Route> = ROUTES.iter().collect();
        assert_eq!(distinct.len(), ROUTES.len(), "a route is defined twice");
    }

    #[test]
    fn an_empty_query_adds_no_question_mark() {
        assert_eq!(ListLeases::default().target(), "/v1/leases");
        let plain = ReleaseLease {
            port: 8001,
            query: ReleaseQuery::default(),
        };
        assert_eq!(plain.target(), "/v1/leases/8001");
        assert_eq!(ListNames::default().target(), "/v1/names");
    }
}
