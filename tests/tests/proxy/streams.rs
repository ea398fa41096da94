//! A real uvicorn app behind the proxy: a 128 MiB body streamed down, a
//! 32 MiB chunked upload streamed up, and server-sent events that arrive
//! one at a time; the daemon's peak memory shows none of it was held.

use std::io::Write;

use portd_e2e::skip::require_venv_tool;
use portd_e2e::web::{Conn, peak_rss_kib, read_until};

use super::*;

/// A raw ASGI app (uvicorn alone, no framework):
/// - `/stream?n=N&size=S`: N chunks of S bytes, chunked;
/// - `/upload`: reads the body as it comes, answers its length and SHA-256;
/// - `/events`: one event, then the next only once `/release` was asked.
const APP_PY: &str = r#"
import asyncio, hashlib, json
from urllib.parse import parse_qs

released = asyncio.Event()

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path, query = scope["path"], parse_qs(scope["query_string"].decode())
    if path == "/stream":
        n, size = int(query["n"][0]), int(query["size"][0])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        chunk = b"x" * size
        for _ in range(n):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/upload":
        digest, length, more = hashlib.sha256(), 0, True
        while more:
            message = await receive()
            body = message.get("body", b"")
            digest.update(body)
            length += len(body)
            more = message.get("more_body", False)
        out = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})
    elif path == "/events":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"),
                                (b"cache-control", b"no-cache")]})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        await released.wait()
        await send({"type": "http.response.body", "body": b"data: second\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/release":
        released.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"released"})
"#;

const MIB: usize = 1 << 20;

#[test]
fn a_uvicorn_app_streams_bodies_both_ways_and_server_sent_events_without_the_daemon_holding_them() {
    let Some(uvicorn) = require_venv_tool("uvicorn") else {
        return;
    };
    let p = Proxied::start();
    let project = p.project("shop");
    std::fs::write(project.join("app.py"), APP_PY).unwrap();
    let args = [
        "app:app",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--no-access-log",
    ];
    let mut command = vec![uvicorn.as_os_str()];
    command.extend(args.iter().map(OsStr::new));
    command.extend(["--lifespan", "off"].iter().map(OsStr::new));
    let _server = p.serve(&project, "api", &command);
    let host = p.host("api", "shop");
    let baseline = peak_rss_kib(p.d.pid());

    // 128 MiB down, read as it comes.
    let (chunks, size) = (2048, 64 * 1024);
    let mut conn = Conn::open(p.proxy_port());
    conn.send(
        format!("GET /stream?n={chunks}&size={size} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    );
    let head = conn.head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase().contains("transfer-encoding: chunked"),
        "{head}"
    );
    let mut received = 0;
    let mut buf = vec![0; MIB];
    let mut tail = Vec::new();
    while !tail.ends_with(b"0\r\n\r\n") {
        let read = conn.read_some(&mut buf);
        assert!(read > 0, "the stream ended after {received} bytes");
        received += buf[..read].iter().filter(|b| **b == b'x').count();
        tail.extend_from_slice(&buf[..read]);
        tail.drain(..tail.len().saturating_sub(5));
    }
    assert_eq!(received, chunks * size);

    // 32 MiB up, chunked, on the same connection.
    conn.send(
        format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    );
    let piece = vec![b'u'; MIB];
    {
        let mut stream = conn.stream().try_clone().unwrap();
        for _ in 0..32 {
            write!(stream, "{:x}\r\n", piece.len()).unwrap();
            stream.write_all(&piece).unwrap();
            stream.write_all(b"\r\n").unwrap();
        }
        stream.write_all(b"0\r\n\r\n").unwrap();
    }
    let uploaded = conn.response();
    assert_eq!(uploaded.status, 200, "{uploaded:?}");
    assert_eq!(uploaded.json()["length"], 32 * MIB);
    assert_eq!(uploaded.json()["sha256"], sha256_of_u(32 * MIB));

    // Nothing of either body stayed in the daemon.
    let peak = peak_rss_kib(p.d.pid());
    assert!(
        peak < baseline + 24 * 1024,
        "the daemon's peak memory rose from {baseline} KiB to {peak} KiB"
    );

    // Events arrive one by one: the second only once the test asks for it.
    let mut events = Conn::open(p.proxy_port());
    events.send(format!("GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let head = events.head();
    assert!(
        head.to_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let first = read_until(&mut events, "data: first\n\n");
    assert!(!first.contains("second"), "{first}");
    assert_eq!(p.get(&host, "/release").body, "released");
    read_until(&mut events, "data: second\n\n");
}

/// The SHA-256 of `len` bytes of `u`, by `sha256sum` (no hashing crate in
/// the tests).
fn sha256_of_u(len: usize) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![b'u'; len])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
