//! A request without a body, which is most of what a browser sends a dev
//! server, written to the server's connection and its answer read back in
//! the client connection's own task: the request head in one write, the
//! response head parsed where it lands, the body handed on as it is read.
//! No task, channel or header map per request stands between the two
//! connections, as with a general HTTP client; leaving those out saves
//! about an eighth of the proxy's CPU per request (docs/DECISIONS.md,
//! "Proxy").
//!
//! Requests with a body and upgrades go through hyper's client instead
//! (`forward`). A response's body ends by its length, its chunked coding,
//! or the server closing (RFC 9112 6.3); a connection is kept only after a
//! body that ended by its framing, with nothing after it, from a server
//! that did not say it closes.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::ext::ReasonPhrase;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode, Uri, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::chunked::{Chunked, Decoded, invalid};
use super::pool::{Home, Kept};

/// The least free room a read is given.
const READ_ROOM: usize = 4096;
/// The most bytes a response head may take (hyper's client took about
/// as much), and the most fields.
const MAX_HEAD: usize = 400 * 1024;
const MAX_FIELDS: usize = 128;

/// A connection to a leased server, with what was read and not yet used.
pub struct Wire {
    stream: TcpStream,
    read: BytesMut,
}

/// Why an exchange failed, and whether sending again is safe.
#[derive(Debug)]
pub struct Broken {
    pub error: io::Error,
    /// Nothing of a response came back: a kept connection the server had
    /// closed meanwhile looks like this.
    pub unanswered: bool,
    /// The request could not be written at all.
    pub unsent: bool,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Broken {}

impl Kept for Wire {
    /// Whether the server closed the connection (or sent bytes nobody
    /// asked for) while it was idle, as the runtime last heard: no read.
    fn is_closed(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_ready()
    }
}

impl Wire {
    /// A new connection to a leased port on loopback: 127.0.0.1 first,
    /// then ::1 (a dev server that listens on `localhost` may have bound
    /// only ::1).
    pub async fn connect(port: u16) -> io::Result<Wire> {
        let stream = match TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
            Ok(stream) => stream,
            Err(v4) => TcpStream::connect((Ipv6Addr::LOCALHOST, port))
                .await
                .map_err(|_| v4)?,
        };
        let _ = stream.set_nodelay(true);
        Ok(Wire {
            stream,
            read: BytesMut::with_capacity(2 * READ_ROOM),
        })
    }

    /// The connection, for another client to speak on.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Writes `head` (a request without a body) and reads the response's
    /// head; interim (1xx) responses are passed over.
    pub async fn exchange(&mut self, head: &[u8]) -> Result<Head, Broken> {
        if let Err(error) = self.stream.write_all(head).await {
            return Err(Broken {
                error,
                unanswered: true,
                unsent: true,
            });
        }
        let mut answered = false;
        loop {
            match parse_head(&mut self.read) {
                Ok(Some(head)) if head.status.is_informational() => {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(broken(invalid("101 to a request that asked for none")));
                    }
                    continue;
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(error) => return Err(broken(error)),
            }
            let error = match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => io::ErrorKind::UnexpectedEof.into(),
                Ok(_) => {
                    answered = true;
                    continue;
                }
                Err(error) => error,
            };
            return Err(Broken {
                error,
                unanswered: !answered,
                unsent: false,
            });
        }
    }

    /// Reads what the server has sent into `read`; 0 when it closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_ROOM {
            self.read.reserve(READ_ROOM);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
    }
}

/// A failure after the request was written, once part of a response came.
fn broken(error: io::Error) -> Broken {
    Broken {
        error,
        unanswered: false,
        unsent: false,
    }
}

/// The request head for `method` `uri` with `headers`, HTTP/1.1.
pub fn request_head(method: &Method, uri: &Uri, headers: &HeaderMap) -> Vec<u8> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(256 + headers.len() * 32);
    head.put_slice(method.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(target.as_bytes());
    head.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        head.put_slice(name.as_str().as_bytes());
        head.put_slice(b": ");
        head.put_slice(value.as_bytes());
        head.put_slice(b"\r\n");
    }
    head.put_slice(b"\r\n");
    head
}

/// A response head, parsed.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    /// The reason phrase, when it is not the status code's own: passed on
    /// as the server wrote it.
    pub reason: Option<ReasonPhrase>,
}

/// The response head at the front of `read`, taken off it once whole.
fn parse_head(read: &mut BytesMut) -> io::Result<Option<Head>> {
    let mut fields = [MaybeUninit::uninit(); MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        read,
        &mut fields,
    );
    let used = match parsed {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if read.len() > MAX_HEAD => {
            return Err(invalid("the response head is too long"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("the response head: {e}"))),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| invalid("the response's status"))?;
    let reason = response
        .reason
        .filter(|reason| Some(*reason) != status.canonical_reason())
        .and_then(|reason| ReasonPhrase::try_from(reason.as_bytes()).ok());
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| invalid("a response field's name"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| invalid("a response field's value"))?;
        headers.append(name, value);
    }
    let _ = read.split_to(used);
    Ok(Some(Head {
        status,
        version,
        headers,
        reason,
    }))
}

/// How a response's body ends.
#[derive(Debug)]
enum Framing {
    /// It has none (or none is left).
    Empty,
    /// After this many more bytes.
    Length(u64),
    /// At the last chunk and trailers.
    Chunked(Chunked),
    /// When the server closes the connection.
    Close,
}

/// How the body of the response with `head` to a `method` request ends
/// (RFC 9112 6.3). A `Content-Length` that a transfer coding overrides is
/// dropped from `head`, so that the client is not told it.
fn framing(method: &Method, head: &mut Head) -> io::Result<Framing> {
    let status = head.status;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    let headers = &mut head.headers;
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let chunked = tokens(headers, header::TRANSFER_ENCODING)
            .last()
            .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"));
        headers.remove(header::CONTENT_LENGTH);
        return Ok(if chunked {
            Framing::Chunked(Chunked::new())
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.to_str().unwrap_or("x").split(',') {
            let part = part.trim();
            let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| invalid("the response's Content-Length"))?;
            if length.is_some_and(|earlier| earlier != n) {
                return Err(invalid("the response has two Content-Lengths"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Whether the server keeps the connection after this response.
fn keeps_alive(head: &Head) -> bool {
    head.version == Version::HTTP_11
        && !tokens(&head.headers, header::CONNECTION)
            .any(|token| token.eq_ignore_ascii_case("close"))
}

/// The comma-separated elements of every `name` field, trimmed, the empty
/// ones left out (RFC 9110 5.6.1).
pub fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// A response's body, read from its connection as the client's connection
/// asks for it. The connection goes back to the pool at the body's end.
pub struct WireBody {
    wire: Option<Wire>,
    framing: Framing,
    /// Where the connection goes at the end; `None` when it is not kept.
    home: Option<Home<Wire>>,
}

impl WireBody {
    /// The response to a `method` request over `wire`, whose head is
    /// `head`; the body follows from `wire`.
    pub fn response(
        method: &Method,
        mut head: Head,
        wire: Wire,
        home: Home<Wire>,
    ) -> io::Result<Response<WireBody>> {
        let framing = framing(method, &mut head)?;
        let keep = keeps_alive(&head) && !matches!(framing, Framing::Close);
        let mut body = WireBody {
            wire: Some(wire),
            framing,
            home: keep.then_some(home),
        };
        if matches!(body.framing, Framing::Empty) {
            body.end();
        }
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        if let Some(reason) = head.reason {
            response.extensions_mut().insert(reason);
        }
        Ok(response)
    }

    /// The body has ended: its connection goes home if it is kept and
    /// nothing came after the body.
    fn end(&mut self) {
        self.framing = Framing::Empty;
        if let (Some(wire), Some(home)) = (self.wire.take(), self.home.take())
            && wire.read.is_empty()
        {
            home.keep(wire);
        }
    }

    /// The next frame from what was read, if there is one yet.
    fn next_frame(&mut self) -> io::Result<Option<Frame<Bytes>>> {
        let Some(wire) = self.wire.as_mut() else {
            return Ok(None);
        };
        let read = &mut wire.read;
        let (frame, ended) = match &mut self.framing {
            Framing::Empty => (None, false),
            Framing::Length(left) if !read.is_empty() => {
                let n = usize::try_from(*left).map_or(read.len(), |left| left.min(read.len()));
                let data = read.split_to(n).freeze();
                *left -= n as u64;
                (Some(Frame::data(data)), *left == 0)
            }
            Framing::Chunked(chunked) => match chunked.decode(read)? {
                Decoded::Data(data) => (Some(Frame::data(data)), false),
                // Trailers come last; a server connection does not poll
                // the body again after them.
                Decoded::Trailers(trailers) => (Some(Frame::trailers(trailers)), true),
                Decoded::End => (None, true),
                Decoded::More => (None, false),
            },
            Framing::Close if !read.is_empty() => (Some(Frame::data(read.split().freeze())), false),
            Framing::Length(_) | Framing::Close => (None, false),
        };
        if ended {
            self.end();
        }
        Ok(frame)
    }
}

impl Body for WireBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(frame) = this.next_frame()? {
                return Poll::Ready(Some(Ok(frame)));
            }
            // The connection is gone once the body has ended.
            let Some(wire) = this.wire.as_mut() else {
                return Poll::Ready(None);
            };
            if ready!(wire.poll_fill(cx))? == 0 {
                // Closed: the end of a body framed so, else a body cut off.
                this.wire = None;
                let framing = std::mem::replace(&mut this.framing, Framing::Empty);
                return Poll::Ready(match framing {
                    Framing::Close => None,
                    _ => Some(Err(io::ErrorKind::UnexpectedEof.into())),
                });
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
