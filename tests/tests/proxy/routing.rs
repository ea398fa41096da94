//! Host to lease, and what passes through: methods, paths, queries, bodies
//! and headers unchanged, the forwarding headers added, keep-alive on both
//! sides, upgrades in both directions; two worktrees of one repository
//! under two labels; an ended lease answered at once.

use std::net::{Ipv6Addr, TcpStream};
use std::process::Command;

use portd_e2e::skip::require_system_tool;
use portd_e2e::web::{Conn, echoed_headers, read_until};

use super::*;

#[test]
fn a_name_is_reached_by_name_and_label_with_the_request_passed_through_and_forwarding_headers_added()
 {
    let p = Proxied::start();
    let shop = p.project("shop");
    p.lease(0, "api", &shop);
    let _api = p.echo(0, "api");

    let host = p.host("api", "shop");
    let body = "x".repeat(100_000);
    let mut conn = Conn::open(p.proxy_port());
    conn.send(
        format!(
            "PATCH /v1/items/7?q=a%20b&x=1 HTTP/1.1\r\nHost: {host}\r\nX-Custom: kept as is\r\n\
             X-Forwarded-For: 10.1.2.3\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let answer = conn.response();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("x-echo"),
        Some("api"),
        "the server's header came back"
    );
    let report = answer.json();
    assert_eq!(report["method"], "PATCH");
    assert_eq!(report["path"], "/v1/items/7?q=a%20b&x=1");
    assert_eq!(report["body_len"], body.len());
    assert_eq!(
        echoed_headers(&report, "host"),
        std::slice::from_ref(&host),
        "Host unchanged"
    );
    assert_eq!(echoed_headers(&report, "x-custom"), ["kept as is"]);
    assert_eq!(echoed_headers(&report, "content-type"), ["text/plain"]);
    assert_eq!(
        echoed_headers(&report, "x-forwarded-for"),
        ["10.1.2.3, 127.0.0.1"]
    );
    assert_eq!(
        echoed_headers(&report, "x-forwarded-host"),
        std::slice::from_ref(&host)
    );
    assert_eq!(echoed_headers(&report, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        echoed_headers(&report, "forwarded"),
        [format!("for=127.0.0.1;host=\"{host}\";proto=http")]
    );

    // The bare name, while one project has it; and over IPv6 loopback.
    let bare = p.get(&p.host("api", ""), "/bare");
    assert_eq!(
        (bare.status, bare.json()["path"].clone()),
        (200, json!("/bare"))
    );
    if TcpStream::connect((Ipv6Addr::LOCALHOST, p.proxy_port())).is_ok() {
        let mut v6 = TcpStream::connect((Ipv6Addr::LOCALHOST, p.proxy_port())).unwrap();
        let request = format!("GET /v6 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        std::io::Write::write_all(&mut v6, request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut v6, &mut raw).unwrap();
        let answer = portd_e2e::http::parse_response(&raw).unwrap();
        let forwarded = echoed_headers(&answer.json(), "forwarded");
        assert_eq!(
            forwarded,
            [format!("for=\"[::1]\";host=\"{host}\";proto=http")]
        );
    }
}

#[test]
fn keep_alive_holds_on_both_sides_and_the_server_connection_is_reused() {
    let p = Proxied::start();
    p.lease(0, "api", &p.project("shop"));
    let _api = p.echo(0, "api");
    let mut conn = Conn::open(p.proxy_port());
    let host = p.host("api", "shop");
    let peers: Vec<Value> = (0..5)
        .map(|i| {
            let answer = conn.get(&host, &format!("/{i}"));
            assert_eq!(
                answer.status, 200,
                "request {i} on one connection: {answer:?}"
            );
            answer.json()["peer_port"].clone()
        })
        .collect();
    // Five requests, one connection from the proxy to the server: the
    // pool lent the same one each time.
    assert!(peers.iter().all(|p| *p == peers[0]), "{peers:?}");
}

#[test]
fn an_upgrade_carries_bytes_both_ways_until_the_client_closes() {
    let p = Proxied::start();
    p.lease(0, "ws", &p.project("shop"));
    let _server = web::upgrade_server(&p.scratch.path(""), p.block.port(0));
    let mut conn = Conn::open(p.proxy_port());
    conn.send(
        format!(
            "GET /socket HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: portd-echo\r\n\r\n",
            p.host("ws", "shop")
        )
        .as_bytes(),
    );
    let head = conn.head();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_lowercase().contains("upgrade: portd-echo"),
        "{head}"
    );
    // The server speaks first, then answers what the client says.
    read_until(&mut conn, "hello from the server\n");
    for word in ["ping\n", "second\n"] {
        conn.send(word.as_bytes());
        assert_eq!(conn.read_exact(word.len()), word.to_uppercase().as_bytes());
    }
    // A megabyte each way, streamed through.
    let big = vec![b'a'; 1 << 20];
    let writer = {
        let mut stream = conn_clone(&conn);
        std::thread::spawn(move || std::io::Write::write_all(&mut stream, &big))
    };
    assert!(conn.read_exact(1 << 20).iter().all(|b| *b == b'A'));
    writer.join().unwrap().unwrap();
    conn.shutdown_write();
    assert!(
        conn.closed(),
        "the tunnel stayed open after the client closed"
    );
}

/// A second handle on the connection's socket, to write from another thread.
fn conn_clone(conn: &Conn) -> TcpStream {
    conn.stream().try_clone().expect("clone the socket")
}

#[test]
fn two_worktrees_of_one_repository_get_two_labels_and_reach_their_own_servers() {
    let Some(git) = require_system_tool("git", "git") else {
        return;
    };
    let p = Proxied::start();
    let a = p.project("a/app");
    let b = p.scratch.path("projects/b/app");
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new(&git)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&a, &["init", "-q"]);
    git(&a, &["commit", "-q", "--allow-empty", "-m", "start"]);
    git(&a, &["worktree", "add", "-q", b.to_str().unwrap()]);
    p.lease(0, "web", &a);
    p.lease(1, "web", &b);
    let _a = p.echo(0, "a");
    let _b = p.echo(1, "b");

    let reached = |label: &str| p.get(&p.host("web", label), "/").json()["who"].clone();
    assert_eq!(
        reached("app"),
        "a",
        "the first worktree keeps the plain label"
    );
    assert_eq!(reached("app-2"), "b");
    // The bare name is in both: the proxy says so instead of guessing.
    let ambiguous = p.get_json(&p.host("web", ""), "/");
    assert_eq!(ambiguous.status, 404);
    assert_eq!(ambiguous.error_code().as_deref(), Some("ambiguous"));
    let names = ambiguous.json()["error"]["names"].clone();
    let urls: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["url"].as_str())
        .collect();
    let port = p.proxy_port();
    assert_eq!(
        urls,
        [
            format!("http://web.app.localhost:{port}/"),
            format!("http://web.app-2.localhost:{port}/")
        ]
    );

    // Labels are kept in the database: the same after a restart.
    let mut p = p;
    p.d.restart();
    let reached = |label: &str| p.get(&p.host("web", label), "/").json()["who"].clone();
    assert_eq!(reached("app-2"), "b");
    assert_eq!(reached("app"), "a");
}

#[test]
fn an_ended_lease_answers_404_at_once_even_on_a_connection_kept_alive() {
    let p = Proxied::start();
    let lease = p.lease(0, "api", &p.project("shop"));
    let _api = p.echo(0, "api");
    let host = p.host("api", "shop");
    let mut conn = Conn::open(p.proxy_port());
    assert_eq!(conn.get(&host, "/").status, 200);

    let released = p.d.delete(&format!("/v1/leases/{}", p.block.port(0)));
    assert_eq!(released.status, 200, "{}", released.body);
    assert_eq!(released.json()["id"], lease["id"]);
    // The very next request, on the same connection, after the API said
    // the lease ended: no cached route serves it.
    conn.send(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n").as_bytes(),
    );
    let after = conn.response();
    assert_eq!(after.status, 404, "{after:?}");
    assert_eq!(after.error_code().as_deref(), Some("ended"));
    assert_eq!(after.json()["error"]["end_reason"], "released");
}
