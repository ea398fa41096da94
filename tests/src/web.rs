//! HTTP over loopback TCP, for the `.localhost` proxy's tests: a raw
//! HTTP/1.1 client that sends exactly the bytes a test writes (any Host,
//! absolute-form targets, upgrades) and reads answers one at a time, so a
//! keep-alive connection can carry several; and small servers to put
//! behind the proxy: a Python echo server that reports what reached it
//! and from which connection, and a server that switches protocols and
//! echoes bytes both ways.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::http::{Response, parse_response};
use crate::procs::ChildGuard;
use crate::servers::{READY_TIMEOUT, python};
use crate::wait::wait_until;

/// Longest a read may block before the test gives up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection to `127.0.0.1:port`, kept open across requests.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// The socket under the reader.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// `GET path` for `host` on this connection, kept alive; the answer.
    pub fn get(&mut self, host: &str, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        self.response()
    }

    /// Reads one answer: its head, then its body as `Content-Length` or
    /// chunked encoding frame it (a body framed by the end of the
    /// connection is read to the end).
    pub fn response(&mut self) -> Response {
        let head = self.head();
        let find = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        let mut raw = head.clone().into_bytes();
        if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let line = self.line();
                raw.extend_from_slice(line.as_bytes());
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).expect("a chunk");
                raw.extend_from_slice(&chunk);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(len) = find("content-length") {
            let mut body = vec![0; len.parse().expect("a length")];
            self.reader.read_exact(&mut body).expect("the body");
            raw.extend_from_slice(&body);
        } else if !head.starts_with("HTTP/1.1 101") && !head.contains(" 204 ") {
            self.reader.read_to_end(&mut raw).expect("the body");
        }
        parse_response(&raw).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The status line and headers, through the blank line.
    pub fn head(&mut self) -> String {
        let mut head = String::new();
        loop {
            let line = self.line();
            head.push_str(&line);
            if line == "\r\n" {
                return head;
            }
        }
    }

    /// One line, with its `\r\n`; panics at the end of the input.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).expect("read a line");
        assert!(read > 0, "the connection ended; read so far: {line:?}");
        line
    }

    /// Reads exactly `len` bytes.
    pub fn read_exact(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.reader.read_exact(&mut bytes).expect("read");
        bytes
    }

    /// Reads up to `len` bytes of a body without framing it; 0 at the end.
    pub fn read_some(&mut self, buf: &mut [u8]) -> usize {
        self.reader.read(buf).expect("read")
    }

    /// True when the peer closes the connection within `IO_TIMEOUT`.
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }

    /// Closes the writing half.
    pub fn shutdown_write(&mut self) {
        let _ = self.reader.get_mut().shutdown(std::net::Shutdown::Write);
    }
}

/// `GET path` for `host` on a new connection to `127.0.0.1:port`, with
/// `headers` (`Name: value` lines) added; the connection closes after it.
pub fn get(port: u16, host: &str, path: &str, headers: &[&str]) -> Response {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut conn = Conn::open(port);
    conn.send(request.as_bytes());
    conn.response()
}

/// The echo server: answers every request with JSON saying what it got
/// (`method`, `path`, `headers` as `[name, value]` pairs, `body_len`,
/// `body_sha256`), who it is (`who`) and the client port of the
/// connection it came on (`peer_port`). HTTP/1.1 with keep-alive.
const ECHO_PY: &str = r#"
import hashlib, http.server, json, os, sys
port, ready, who = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                data += self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))
    def answer(self):
        body = self.body()
        out = json.dumps({
            "who": who, "method": self.command, "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
            "peer_port": self.client_address[1],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("X-Echo", who)
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = answer

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Echo)
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
server.serve_forever()
"#;

/// The upgrade server: answers a request with `Upgrade: portd-echo` by
/// switching protocols, says `hello from the server\n`, then sends back
/// every byte it reads in upper case, until the client closes.
const UPGRADE_PY: &str = r#"
import os, socket, sys, threading
port, ready = int(sys.argv[1]), sys.argv[2]

def serve(conn, peer):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return conn.close()
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    if b"upgrade: portd-echo" not in head.lower():
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return conn.close()
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: portd-echo\r\nConnection: Upgrade\r\n\r\nhello from the server\n")
    if rest:
        conn.sendall(rest.upper())
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            break
        conn.sendall(chunk.upper())
    conn.close()
"#;

/// The framing server: answers each request on a kept connection with
/// bytes written out by hand, by path, to try every way a response's body
/// may end (RFC 9112 6.3). `HEAD` gets a head with `Content-Length: 1000`
/// and no body; `/extra` gets bytes after its body; any other path not
/// listed gets its connection's client port as the body. `/then-drop` is answered, and the request after it on the same
/// connection is read and left unanswered: the connection closes, as a
/// server's idle timeout closes one.
const FRAMING_PY: &str = r#"
import os, socket, sys, threading
port, ready = int(sys.argv[1]), sys.argv[2]
ANSWERS = {
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "/both": b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"3\r\nabc\r\n0\r\n\r\n",
    "/interim": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/nocontent": b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n",
    "/notmodified": b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
    "/garbage": b"NOT HTTP AT ALL\r\n\r\n",
    "/reason": b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n",
    "/extra": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSTRAY BYTES",
}

def serve(conn, peer):
    reader = conn.makefile("rb")
    drop_next = False
    while True:
        line = reader.readline()
        if not line:
            break
        method, path = line.decode().split(" ")[:2]
        while reader.readline() not in (b"\r\n", b""):
            pass
        if drop_next:
            break
        if path == "/close":
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"until the end " * 1000)
            break
        if path == "/cut":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            break
        if method == "HEAD":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            continue
        drop_next = path == "/then-drop"
        body = str(peer[1]).encode()
        default = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        conn.sendall(ANSWERS.get(path, default))
    conn.close()
"#;

/// The end of a raw-socket server script: listens on `port`, says so in
/// the ready file, and serves each connection with the script's
/// `serve(conn, peer)` on a thread of its own.
const LISTEN_PY: &str = r#"
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(16)
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
while True:
    conn, peer = sock.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"#;

/// A Python server from `script` on `127.0.0.1:port`, in `dir`; returns
/// once it listens.
fn python_server(dir: &Path, script: &str, name: &str, port: u16, args: &[&str]) -> ChildGuard {
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, script).expect("write the server's script");
    let ready = dir.join(format!("{name}-{port}.ready"));
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new(python());
    cmd.arg(&path)
        .arg(port.to_string())
        .arg(&ready)
        .args(args)
        .env_remove(portd_api::LEASE_ENV)
        .stdout(Stdio::null());
    let mut server = ChildGuard::spawn(&mut cmd);
    let up = wait_until(READY_TIMEOUT, || {
        assert!(server.is_running(), "{name} on {port} exited early");
        ready.exists()
    });
    assert!(
        up,
        "{name} does not listen on {port} after {READY_TIMEOUT:?}"
    );
    server
}

/// The echo server on `port`, answering as `who`.
pub fn echo_server(dir: &Path, port: u16, who: &str) -> ChildGuard {
    python_server(dir, ECHO_PY, "echo", port, &[who])
}

/// The upgrade server on `port`.
pub fn upgrade_server(dir: &Path, port: u16) -> ChildGuard {
    python_server(dir, &[UPGRADE_PY, LISTEN_PY].concat(), "upgrade", port, &[])
}

/// The framing server on `port`.
pub fn framing_server(dir: &Path, port: u16) -> ChildGuard {
    python_server(dir, &[FRAMING_PY, LISTEN_PY].concat(), "framing", port, &[])
}

/// True once something accepts connections on `127.0.0.1:port`.
pub fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A project directory `parent/name` (created), as the daemon will know
/// it: a plain directory is its own project.
pub fn project_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("create the project directory");
    dir
}

/// Peak resident memory of `pid` (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Reads what `conn` says until `want` has arrived (or panics at the end or
/// after `IO_TIMEOUT`).
pub fn read_until(conn: &mut Conn, want: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains(want) {
        let read = conn.read_some(&mut buf);
        assert!(
            read > 0,
            "ended before {want:?}; got {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..read]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Every value of header `name` in an echo server's report.
pub fn echoed_headers(report: &serde_json::Value, name: &str) -> Vec<String> {
    report["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[0] == name)
        .filter_map(|pair| pair[1].as_str().map(String::from))
        .collect()
}
