//! Routing a request: what its `Host` asks for, the lease it names as
//! the lease table has it at that moment, and the server's answer or the
//! page to give instead.

use std::sync::Arc;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};

use super::forward::{Failed, Forwarded, Origin, Upstream};
use super::host::{self, Wanted};
use super::pages::{Page, wants_json};
use crate::leases::{Leases, Site};
use crate::time::rfc3339;

/// A response's body: the server's, streamed, or a page of ours.
pub type Body = Either<Forwarded, Full<Bytes>>;

/// What every request is routed with.
pub struct Proxy {
    leases: Arc<Leases>,
    /// The daemon's runtime, where the store's reads run (its pool
    /// belongs there, not to the proxy's thread).
    daemon: tokio::runtime::Handle,
}

impl Proxy {
    /// A proxy over `leases`; call on the daemon's runtime.
    pub fn new(leases: Arc<Leases>) -> Proxy {
        Proxy {
            leases,
            daemon: tokio::runtime::Handle::current(),
        }
    }

    /// How the last lease of `name` in `project` ended, if history says.
    async fn last_end(&self, project: String, name: String) -> Option<(String, String)> {
        let leases = Arc::clone(&self.leases);
        let read = self
            .daemon
            .spawn(async move { leases.last_end(&project, &name).await });
        match read.await {
            Ok(Ok(ended)) => ended.map(|e| (rfc3339(e.at), e.reason.as_str().to_string())),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read how a lease ended");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "reading how a lease ended failed");
                None
            }
        }
    }

    /// Answers `request`, which the client at `from` sent to the proxy's
    /// `port`.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        from: &Origin,
        port: u16,
        upstream: &Upstream,
    ) -> Response<Body> {
        let json = wants_json(
            request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        let page = match self.route(request, from, upstream).await {
            Ok(response) => return response.map(Either::Left),
            Err(page) => page,
        };
        let rendered = page.render(json, port);
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(rendered.body))));
        *response.status_mut() = hyper::StatusCode::from_u16(rendered.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(rendered.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = rendered.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    /// The server's response, or the page to answer instead.
    async fn route(
        &self,
        request: Request<Incoming>,
        from: &Origin,
        upstream: &Upstream,
    ) -> Result<Response<Forwarded>, Page> {
        if request.method() == Method::CONNECT {
            return Err(Page::NotAProxy {
                why: "CONNECT is refused",
            });
        }
        if request.uri().scheme().is_some() || request.uri().authority().is_some() {
            return Err(Page::NotAProxy {
                why: "a request for an absolute URL is refused",
            });
        }
        let Some(host) = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(Page::NotAProxy {
                why: "a request without a Host header is refused",
            });
        };
        let host = host.to_string();
        let (name, label) = match host::wanted(&host) {
            Wanted::Foreign => return Err(Page::Foreign { host }),
            Wanted::Index => {
                return Err(Page::Index {
                    sites: self.leases.sites(None),
                });
            }
            Wanted::Unroutable => {
                return Err(Page::UnknownHost {
                    host,
                    sites: self.leases.sites(None),
                });
            }
            Wanted::Site { name, label } => (name, label),
        };
        match self.leases.site(&name, label.as_deref()) {
            Site::Active { port, lease_id } => upstream
                .forward(request, port, lease_id, from)
                .await
                .map_err(|failed| match failed {
                    Failed::Connect(_) => Page::Starting { name, port },
                    Failed::Exchange(e) => {
                        tracing::debug!(error = %e, port, "a leased server failed a request");
                        Page::Unreachable { name, port }
                    }
                }),
            Site::Idle {
                project,
                label,
                name,
            } => Err(Page::Ended {
                ended: self.last_end(project, name.clone()).await,
                name,
                label,
            }),
            Site::UnknownName { label } => Err(Page::UnknownName {
                sites: self.leases.sites(Some(&label)),
                name,
                label,
            }),
            Site::Unknown => Err(Page::UnknownHost {
                host,
                sites: self.leases.sites(None),
            }),
            Site::Ambiguous => {
                let mut sites = self.leases.sites(None);
                sites.retain(|s| s.name == name && s.active);
                Err(Page::Ambiguous { name, sites })
            }
        }
    }
}
