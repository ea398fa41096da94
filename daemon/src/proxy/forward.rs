//! Passing a request to a lease's server and its answer back: the headers
//! a proxy must drop (hop-by-hop) and add (`X-Forwarded-*`, `Forwarded`),
//! then the request itself. One without a body is written to a kept
//! connection directly (`wire`); one with a body, or an upgrade
//! (WebSocket), goes through hyper's client, which streams the body frame
//! by frame and joins the two connections once both sides agree to
//! switch protocols. No body is ever collected.
//!
//! Kept connections (`pool`) belong to one proxy thread (`server`), so a
//! request, its server connection and the pool never cross threads. A
//! connection goes back to its pool once its response has been read to
//! the end, never while a body (a stream of server-sent events, say) is
//! still coming.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::pool::{Home, Kept, Pool};
use super::wire::{self, Broken, Wire, WireBody, tokens};

/// Headers that describe one connection, not the message (RFC 9110 7.6.1);
/// a proxy never passes them on. `Connection` may name more.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Why a request did not reach its server.
#[derive(Debug)]
pub enum Failed {
    /// Nothing accepts on the port (yet).
    Connect(io::Error),
    /// The server took the connection and then failed the exchange.
    Exchange(Box<dyn std::error::Error + Send + Sync>),
}

/// One proxy thread's connections to leased ports: written to directly
/// for requests without a body, through hyper's client for the others.
#[derive(Clone, Default)]
pub struct Upstream {
    hyper: Pool<SendRequest<Incoming>>,
    wires: Pool<Wire>,
}

impl Kept for SendRequest<Incoming> {
    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }
}

/// What a client connection's requests came from, for the forwarding
/// headers: made once per connection.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The client's address, as `X-Forwarded-For` gives it.
    ip: HeaderValue,
    /// The client's address as a `Forwarded` node (RFC 7239 6): an IPv6
    /// address in brackets and quotes.
    node: String,
}

impl Origin {
    pub fn new(client: SocketAddr) -> Origin {
        let ip = client.ip();
        let node = match ip {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("\"[{ip}]\""),
        };
        Origin {
            ip: HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("")),
            node,
        }
    }
}

/// A server's response body, streamed.
pub type Forwarded = Either<PooledBody, WireBody>;

/// A response body from hyper's client, which hands its connection back
/// to the pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    /// The connection, and where it goes back to.
    home: Option<(SendRequest<Incoming>, Home<SendRequest<Incoming>>)>,
    /// The body has ended (`is_end_stream` never says so of a chunked one).
    ended: bool,
}

impl Upstream {
    /// Sends `request` to the server of lease `lease_id` on `port` and
    /// answers its response, streamed. An upgrade (101) joins the client's
    /// connection to the server's in the background until either closes.
    pub async fn forward(
        &self,
        mut request: Request<Incoming>,
        port: u16,
        lease_id: String,
        from: &Origin,
    ) -> Result<Response<Forwarded>, Failed> {
        let upgrade = wants_upgrade(request.headers());
        let version = request.version();
        strip_hop_by_hop(request.headers_mut(), upgrade);
        add_forwarded(request.headers_mut(), from);
        let mut response = if !upgrade && request.body().is_end_stream() {
            self.forward_wire(&request, port, lease_id)
                .await?
                .map(Either::Right)
        } else {
            self.forward_hyper(request, upgrade, port, lease_id)
                .await?
                .map(Either::Left)
        };
        // The client's connection keeps its own version: a server that
        // answers HTTP/1.0 must not end a client's keep-alive.
        *response.version_mut() = version;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            strip_hop_by_hop(response.headers_mut(), false);
        }
        Ok(response)
    }

    /// Sends a request without a body over a connection of our own: a
    /// kept one if the server has not closed it, else a new one. A request
    /// a kept connection left unanswered is sent again on a new one if it
    /// was never written or is idempotent (RFC 9110 9.2.2).
    async fn forward_wire(
        &self,
        request: &Request<Incoming>,
        port: u16,
        lease_id: String,
    ) -> Result<Response<WireBody>, Failed> {
        let method = request.method();
        let head = wire::request_head(method, request.uri(), request.headers());
        let again =
            |broken: &Broken| broken.unsent || (broken.unanswered && method.is_idempotent());
        let (wire, answer) = loop {
            let (mut wire, kept) = match self.wires.checkout(port, &lease_id) {
                Some(wire) => (wire, true),
                None => (Wire::connect(port).await.map_err(Failed::Connect)?, false),
            };
            match wire.exchange(&head).await {
                Err(broken) if kept && again(&broken) => continue,
                answer => break (wire, answer),
            }
        };
        let head = answer.map_err(|broken| Failed::Exchange(broken.into()))?;
        let home = self.wires.home(port, lease_id);
        WireBody::response(method, head, wire, home).map_err(|e| Failed::Exchange(e.into()))
    }

    /// Sends `request` through hyper's client: a body streamed to the
    /// server, or an upgrade.
    async fn forward_hyper(
        &self,
        mut request: Request<Incoming>,
        upgrade: bool,
        port: u16,
        lease_id: String,
    ) -> Result<Response<PooledBody>, Failed> {
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        *request.version_mut() = hyper::Version::HTTP_11;
        let (sender, mut response) = self.exchange(request, port, &lease_id).await?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let server_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(join(client_upgrade, server_upgrade));
            }
            // The connection is the tunnel now; it never goes back.
            return Ok(response.map(|inner| PooledBody {
                inner,
                home: None,
                ended: false,
            }));
        }
        let home = (!sender.is_closed()).then(|| (sender, self.hyper.home(port, lease_id)));
        Ok(response.map(|inner| PooledBody {
            inner,
            home,
            ended: false,
        }))
    }

    /// Sends on an idle connection if one is left, else on a new one. A
    /// request that an idle connection could not take (its server closed it
    /// meanwhile) goes on a new connection; one that was sent is not sent
    /// twice.
    async fn exchange(
        &self,
        mut request: Request<Incoming>,
        port: u16,
        lease_id: &str,
    ) -> Result<(SendRequest<Incoming>, Response<Incoming>), Failed> {
        while let Some(mut sender) = self.hyper.checkout(port, lease_id) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((sender, response)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(Failed::Exchange(failed.into_error().into())),
                },
            }
        }
        let mut sender = connect(port).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failed::Exchange(e.into()))?;
        Ok((sender, response))
    }

    /// Drops the connections idle for too long or closed by their server.
    pub fn sweep(&self) {
        self.hyper.sweep();
        self.wires.sweep();
    }
}

/// A new connection through hyper's client to a leased port on loopback.
/// Its task runs on this thread until the server or the pool lets it go.
async fn connect(port: u16) -> Result<SendRequest<Incoming>, Failed> {
    let stream = Wire::connect(port)
        .await
        .map_err(Failed::Connect)?
        .into_stream();
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failed::Exchange(e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, port, "connection to a leased server ended");
        }
    });
    Ok(sender)
}

impl Body for PooledBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    /// Read to the end: the connection may carry the next request. Dropped
    /// half way (the client went away): hyper closes it.
    fn drop(&mut self) {
        if let Some((sender, home)) = self.home.take()
            && (self.ended || self.inner.is_end_stream())
        {
            home.keep(sender);
        }
    }
}

/// Copies bytes both ways between the upgraded connections until either
/// side closes.
async fn join(client: hyper::upgrade::OnUpgrade, server: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, server) {
        Ok((client, server)) => {
            let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        }
        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
    }
}

/// A request to switch protocols: `Connection: upgrade` and `Upgrade`.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && tokens(headers, header::CONNECTION).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

/// Drops the hop-by-hop headers and those `Connection` names; an upgrade
/// keeps `Connection: upgrade` and `Upgrade`, which the server must see.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages have none but `Connection`: one pass finds them.
    let found = headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(name) || (!upgrade && name == header::UPGRADE));
    if !found {
        return;
    }
    let named: Vec<HeaderName> = tokens(headers, header::CONNECTION)
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .filter(|name| name != header::UPGRADE)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Adds the client's address and the Host it asked for: `X-Forwarded-For`
/// (appended to what a proxy before us wrote), `X-Forwarded-Host`,
/// `X-Forwarded-Proto`, and the standard `Forwarded` (RFC 7239).
fn add_forwarded(headers: &mut HeaderMap, from: &Origin) {
    let host = headers.get(header::HOST).cloned();
    let host_text = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let forwarded = ["for=", &from.node, ";host=\"", host_text, "\";proto=http"].concat();
    append(headers, X_FORWARDED_FOR, from.ip.clone());
    headers.insert(
        X_FORWARDED_HOST,
        host.unwrap_or(HeaderValue::from_static("")),
    );
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Ok(forwarded) = HeaderValue::try_from(forwarded) {
        append(headers, header::FORWARDED, forwarded);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `name: earlier, value`, or `name: value` when it is new.
fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    let joined = match headers.get(&name) {
        None => Some(value),
        Some(earlier) => {
            let joined = [earlier.as_bytes(), b", ", value.as_bytes()].concat();
            HeaderValue::from_bytes(&joined).ok()
        }
    };
    if let Some(joined) = joined {
        headers.insert(name, joined);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_go_and_an_upgrade_keeps_what_the_server_needs() {
        let mut plain = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut plain, false);
        let left: Vec<&str> = plain.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"]);

        let mut upgrade = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(wants_upgrade(&upgrade));
        strip_hop_by_hop(&mut upgrade, true);
        assert_eq!(upgrade["connection"], "upgrade");
        assert_eq!(upgrade["upgrade"], "websocket");
        assert_eq!(upgrade["sec-websocket-key"], "k");
        assert!(!wants_upgrade(&headers(&[("upgrade", "websocket")])));
    }

    #[test]
    fn forwarding_headers_name_the_client_and_the_host_and_append_to_earlier_ones() {
        let mut map = headers(&[
            ("host", "web.shop.localhost:7355"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        add_forwarded(&mut map, &Origin::new("[::1]:40000".parse().unwrap()));
        assert_eq!(map["x-forwarded-for"], "10.0.0.1, ::1");
        assert_eq!(map["x-forwarded-host"], "web.shop.localhost:7355");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(
            map["forwarded"],
            "for=\"[::1]\";host=\"web.shop.localhost:7355\";proto=http"
        );
    }
}
