//! A minimal blocking HTTP/1.1 exchange over a Unix socket: one request per
//! connection, `Connection: close`, the answer read to EOF and parsed with
//! httparse. Enough for the daemon's JSON API, and nothing to start up.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use httparse::Status;
use portd_api::routes::{Endpoint, Method};

/// How long one exchange may take: longer than any reap grace.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Most header lines an answer may carry; the daemon sends four.
const MAX_HEADERS: usize = 32;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `endpoint`'s request on `stream` and reads the whole answer.
pub fn exchange<E: Endpoint>(mut stream: UnixStream, endpoint: &E) -> io::Result<Response> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&request(endpoint))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The request's bytes: a JSON body where the endpoint takes one, and a
/// `Content-Length` (0 without a body) on every POST and PUT.
fn request<E: Endpoint>(endpoint: &E) -> Vec<u8> {
    let method = E::ROUTE.method;
    let body = endpoint
        .body()
        .map(|body| serde_json::to_vec(body).expect("request bodies serialize"));
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: portd\r\nConnection: close\r\n",
        method.as_str(),
        endpoint.target()
    )
    .into_bytes();
    if body.is_some() || matches!(method, Method::Post | Method::Put) {
        let length = body.as_ref().map_or(0, Vec::len);
        request.extend_from_slice(
            format!("Content-Type: application/json\r\nContent-Length: {length}\r\n").as_bytes(),
        );
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body.as_deref().unwrap_or_default());
    request
}

/// Parses a complete HTTP/1.1 response (Content-Length, chunked, or to EOF).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(raw) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Err("the answer ended inside its headers".into()),
        Err(e) => return Err(format!("not an HTTP/1.1 answer: {e}")),
    };
    let status = head.code.ok_or("no status in the answer")?;
    let headers = head
        .headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| format!("header {} is not UTF-8", h.name))?;
            Ok((h.name.to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[head_len..];
    let body = if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        decode_chunked(rest)?
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length {len:?}"))?;
        rest.get(..len)
            .ok_or("answer shorter than its content-length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { body, ..response })
}

fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let (start, size) = match httparse::parse_chunk_size(data) {
            Ok(Status::Complete(found)) => found,
            Ok(Status::Partial) => return Err("truncated chunk size".into()),
            Err(_) => return Err("bad chunk size".into()),
        };
        if size == 0 {
            return Ok(body);
        }
        let chunk = usize::try_from(size)
            .ok()
            .and_then(|size| data.get(start..)?.get(..size))
            .ok_or("truncated chunk")?;
        body.extend_from_slice(chunk);
        data = data[start + chunk.len()..]
            .strip_prefix(b"\r\n")
            .ok_or("truncated chunk end")?;
    }
}

#[cfg(test)]
mod tests {
    use portd_api::ReapRequest;
    use portd_api::query::ReleaseQuery;
    use portd_api::routes::{Cleanup, GetHealth, Reap, ReleaseLease};

    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn requests_carry_a_length_on_post_and_put_and_a_body_where_the_route_takes_one() {
        assert_eq!(
            text(request(&GetHealth)),
            "GET /v1/health HTTP/1.1\r\nHost: portd\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            text(request(&Cleanup)),
            "POST /v1/cleanup HTTP/1.1\r\nHost: portd\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            text(request(&Reap(ReapRequest { dry_run: true }))),
            "POST /v1/reap HTTP/1.1\r\nHost: portd\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"dry_run\":true}"
        );
        let release = ReleaseLease {
            port: 8000,
            query: ReleaseQuery {
                id: Some("019a".into()),
                keep: true,
            },
        };
        assert_eq!(
            text(request(&release)),
            "DELETE /v1/leases/8000?id=019a&keep=true HTTP/1.1\r\nHost: portd\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn content_length_bodies_are_cut_at_the_length() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\ncontent-length: 2\r\nPortd-Version: 1\r\n\r\n{}xx";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"{}");
        assert_eq!(r.header("portd-version"), Some("1"));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().body, b"abcde");
    }

    #[test]
    fn bodies_without_length_run_to_eof() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\nhello")
                .unwrap()
                .body,
            b"hello"
        );
    }

    #[test]
    fn malformed_answers_are_errors() {
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n").is_err());
        assert!(parse_response(b"SMTP 200\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}
