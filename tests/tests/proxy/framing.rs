//! Every way a server's response may end, through the proxy, for
//! requests without a body (which the proxy writes to the server itself):
//! by length, by chunks, by the server closing, with no body at all (HEAD,
//! 204, 304), after an interim 1xx; a body cut short; a kept connection
//! the server closed meanwhile, for a request that may be sent again and
//! one that may not; an answer that is not HTTP.

use portd_e2e::web::{Conn, framing_server};

use super::*;

/// A daemon with the framing server leased as `api` in `shop`, and the
/// name's Host.
fn framed() -> (Proxied, ChildGuard, String) {
    let p = Proxied::start();
    p.lease(0, "api", &p.project("shop"));
    let server = framing_server(&p.scratch.path(""), p.block.port(0));
    let host = p.host("api", "shop");
    (p, server, host)
}

#[test]
fn bodies_framed_by_chunks_by_closing_or_by_nothing_reach_the_client_whole_on_one_connection() {
    let (p, _server, host) = framed();
    let mut conn = Conn::open(p.proxy_port());
    // The server's side of the proxy's connection to it.
    let kept = conn.get(&host, "/port").body;

    // Chunks with an extension and a trailer field.
    let chunked = conn.get(&host, "/chunked");
    assert_eq!(
        (chunked.status, chunked.body.as_str()),
        (200, "hello world")
    );

    // A transfer coding overrides a Content-Length, which must not reach
    // the client.
    let both = conn.get(&host, "/both");
    assert_eq!((both.status, both.body.as_str()), (200, "abc"));
    assert_eq!(both.header("content-length"), None, "{both:?}");

    let interim = conn.get(&host, "/interim");
    assert_eq!((interim.status, interim.body.as_str()), (200, "ok"));

    let none = conn.get(&host, "/nocontent");
    assert_eq!((none.status, none.header("x-kind")), (204, Some("none")));

    conn.send(format!("GET /notmodified HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let head = conn.head();
    assert!(head.starts_with("HTTP/1.1 304 "), "{head}");
    assert!(head.to_lowercase().contains("etag: \"v1\""), "{head}");

    conn.send(format!("HEAD /page HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let head = conn.head();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.to_lowercase().contains("content-length: 1000"),
        "{head}"
    );

    // The server's own reason phrase is passed on.
    conn.send(format!("GET /reason HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let head = conn.head();
    assert!(head.starts_with("HTTP/1.1 200 Fine Thanks\r\n"), "{head}");

    // Every answer so far ended where its framing said, on the one server
    // connection, which is still kept: the next answer comes on it.
    let port = conn.get(&host, "/port");
    assert_eq!(port.body, kept, "the server connection was kept throughout");

    // Bytes after a body: the answer is whole, the connection not kept.
    let extra = conn.get(&host, "/extra");
    assert_eq!((extra.status, extra.body.as_str()), (200, "ok"));
    let after_extra = conn.get(&host, "/port");
    assert_eq!(after_extra.status, 200, "{after_extra:?}");
    let after_extra = after_extra.body;
    assert_ne!(
        after_extra, kept,
        "a connection with stray bytes is not kept"
    );

    // An HTTP/1.0 server that ends the body by closing: the client gets it
    // whole and keeps its connection; the server's is not kept.
    let closed = conn.get(&host, "/close");
    assert_eq!(closed.status, 200);
    assert_eq!(closed.body, "until the end ".repeat(1000));
    let after_close = conn.get(&host, "/port");
    assert_eq!(after_close.status, 200, "{after_close:?}");
    assert_ne!(
        after_close.body, after_extra,
        "a closed connection is not kept"
    );
}

#[test]
fn a_body_cut_short_ends_the_clients_connection_instead_of_passing_as_whole() {
    let (p, _server, host) = framed();
    let mut conn = Conn::open(p.proxy_port());
    conn.send(format!("GET /cut HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    // The connection closes (a read timeout fails the test), with at most
    // the head and part of the body: the head may still be unsent.
    let mut raw = Vec::new();
    let mut buf = [0; 64];
    loop {
        match conn.read_some(&mut buf) {
            0 => break,
            n => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    if let Some((head, body)) = text.split_once("\r\n\r\n") {
        assert!(head.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(
            body.len() < 10,
            "the server sent 3 of 10 bytes; the client got {body:?}"
        );
    }
}

#[test]
fn a_kept_connection_closed_unanswered_is_retried_only_for_a_request_that_may_be_sent_twice() {
    let (p, _server, host) = framed();
    let mut conn = Conn::open(p.proxy_port());
    let first = conn.get(&host, "/port").body;

    // The server answers, keeps the connection, then closes it on the next
    // request without an answer. A GET goes again on a new connection.
    assert_eq!(conn.get(&host, "/then-drop").body, first, "the kept one");
    let retried = conn.get(&host, "/port");
    assert_eq!(retried.status, 200, "{retried:?}");
    assert_ne!(retried.body, first, "answered on a new connection");

    // A POST might have been acted on: it is not sent twice.
    assert_eq!(conn.get(&host, "/then-drop").body, retried.body);
    conn.send(
        format!("POST /port HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    );
    let refused = conn.response();
    assert_eq!(refused.status, 502, "{refused:?}");
    assert!(
        refused.body.contains("api did not answer"),
        "{}",
        refused.body
    );
}

#[test]
fn an_answer_that_is_not_http_is_a_502_page() {
    let (p, _server, host) = framed();
    let garbage = p.get(&host, "/garbage");
    assert_eq!(garbage.status, 502, "{garbage:?}");
    assert!(
        garbage.body.contains("api did not answer"),
        "{}",
        garbage.body
    );
}
