//! A raw HTTP/1.1 client over the daemon's Unix socket: one connection per
//! request (`Connection: close`), so concurrent callers never share one, and
//! so tests see exactly the bytes the daemon sends. Also sends arbitrary
//! bytes, for tests of what bad input does to the daemon.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Longest a request may take before the client gives up: far above any
/// answer the daemon should need, short enough that a hang fails the test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status, self.body
            )
        })
    }

    /// `error.code` of an error body, if the body is one.
    pub fn error_code(&self) -> Option<String> {
        let value: Value = serde_json::from_str(&self.body).ok()?;
        value["error"]["code"].as_str().map(str::to_string)
    }
}

/// Sends one request and reads the answer; panics on I/O errors, naming the
/// request.
pub fn request(socket: &Path, method: &str, path: &str, body: Option<&str>) -> Response {
    try_request(socket, method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", socket.display()))
}

/// Sends one request and reads the answer.
pub fn try_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> io::Result<Response> {
    let bytes = request_bytes(method, path, body.map(str::as_bytes));
    // No half-close here: real clients (curl) do not half-close; a client
    // that does is answered all the same (api::bad_input checks it).
    let raw = exchange(socket, &bytes, false)?;
    parse_response(&raw)
}

/// The bytes of `METHOD PATH` with an optional JSON body, `Connection:
/// close`.
pub fn request_bytes(method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: portd\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// Writes `bytes` on a new connection, closes the writing half (as a client
/// that gives up would, so the daemon sees the end of the input at once) and
/// reads everything the daemon answers until it closes.
pub fn send_raw(socket: &Path, bytes: &[u8]) -> io::Result<Vec<u8>> {
    exchange(socket, bytes, true)
}

/// A daemon that answers early and stops reading (413, 400) may cut the
/// write short: that is not an error here, its answer is what counts.
fn exchange(socket: &Path, bytes: &[u8], half_close: bool) -> io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match stream.write_all(bytes) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => return Err(e),
    }
    if half_close {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        // The daemon closed with our bytes unread; what it sent first stands.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !answer.is_empty() => Ok(answer),
        Err(e) => Err(e),
    }
}

/// Parses an HTTP/1.1 answer: status line, headers, and a body framed by
/// `Content-Length`, chunked encoding, or the end of the connection.
pub fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what}: {:?}", String::from_utf8_lossy(raw)),
        )
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| invalid("headers not UTF-8"))?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest).ok_or_else(|| invalid("bad chunked body"))?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        rest.get(..len)
            .ok_or_else(|| invalid("body shorter than content-length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    let body = String::from_utf8(body).map_err(|_| invalid("body not UTF-8"))?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sized_answer() {
        let raw = b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\nPortd-Version: 0.1.0\r\ncontent-length: 2\r\n\r\n{}";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(r.header("portd-version"), Some("0.1.0"));
        assert_eq!(r.body, "{}");
    }

    #[test]
    fn parses_a_chunked_answer() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.json()["a"], 1);
    }

    #[test]
    fn rejects_what_is_not_http() {
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 xx\r\n\r\n").is_err());
    }
}
