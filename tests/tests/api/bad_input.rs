//! Bad input never breaks the daemon: malformed requests get JSON errors,
//! garbage and idle clients are shrugged off.

use std::os::unix::net::UnixStream;

use super::*;

#[test]
fn bad_requests_get_json_errors_and_never_break_the_daemon() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let port = block.port(0);
    let me = owner.owner();
    let big = format!("{{\"project\":\"/{}\"}}", "a".repeat(70 * 1024));
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        (
            "POST",
            "/v1/leases".into(),
            Some("{not json".into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/leases".into(),
            Some("[1, 2]".into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/leases".into(),
            Some(json!({"port": port, "colour": "red", "owner": me}).to_string()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/leases".into(),
            Some(
                json!({"port": port, "owner": {"pid": owner.pid(), "start_time": 1.0, "x": 1}})
                    .to_string(),
            ),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/leases".into(),
            Some(big),
            413,
            "body_too_large",
        ),
        ("PUT", "/v1/leases".into(), None, 405, "method_not_allowed"),
        (
            "DELETE",
            "/v1/health".into(),
            None,
            405,
            "method_not_allowed",
        ),
        ("GET", "/v1/nope".into(), None, 404, "not_found"),
        ("GET", "/".into(), None, 404, "not_found"),
        (
            "POST",
            "/v1/leases".into(),
            Some(json!({"port": 0, "owner": me}).to_string()),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/leases".into(),
            Some(json!({"port": 70000, "owner": me}).to_string()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/leases".into(),
            Some(json!({"range": "9-8", "owner": me}).to_string()),
            400,
            "bad_request",
        ),
        ("GET", "/v1/leases/abc".into(), None, 422, "invalid_value"),
        (
            "DELETE",
            "/v1/leases/abc".into(),
            None,
            422,
            "invalid_value",
        ),
        ("GET", "/v1/ports/70000".into(), None, 422, "invalid_value"),
        (
            "GET",
            "/v1/leases?all=maybe".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/leases?colour=red".into(),
            None,
            400,
            "bad_request",
        ),
    ];
    for (method, path, body, status, code) in &cases {
        let answer = call(&d, method, path, body.as_deref());
        assert_eq!(
            (answer.status, answer.error_code().as_deref()),
            (*status, Some(*code)),
            "{method} {path}: {}",
            answer.body
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        d.assert_healthy(&format!("{method} {path}"));
    }

    let noise: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let raw: [(&str, &[u8]); 6] = [
        ("binary garbage", b"\x00\x01\x02garbage\xff\xfe\r\n\r\n"),
        ("4 KiB of noise", &noise),
        (
            "headers cut short",
            b"GET /v1/health HTTP/1.1\r\nHost: portd\r\n",
        ),
        (
            "a body shorter than announced",
            b"POST /v1/leases HTTP/1.1\r\nHost: portd\r\nContent-Length: 100\r\n\r\n{\"port\":",
        ),
        (
            "a negative content length",
            b"POST /v1/leases HTTP/1.1\r\nHost: portd\r\nContent-Length: -5\r\n\r\n{}",
        ),
        ("HTTP/0.9", b"GET /v1/health\r\n\r\n"),
    ];
    for (what, bytes) in raw {
        // Whatever comes back (an error, nothing, a reset) is fine; the
        // daemon must survive it.
        let _ = d.send_raw(bytes);
        d.assert_healthy(what);
    }

    // A client that connects and says nothing does not hold the daemon.
    let idle = UnixStream::connect(d.socket()).expect("connect");
    d.assert_healthy("an idle connection");
    drop(idle);

    // And it still grants.
    expect(&lease(&d, json!({"port": port, "owner": me})), 201);
}

#[test]
fn the_body_limit_is_64_kib_exactly() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    // Malformed JSON of exactly the limit is read (and refused as JSON);
    // one byte more is refused for its size.
    let at_limit = format!("{{{}", " ".repeat(portd_api::MAX_BODY_BYTES - 1));
    let answer = call(&d, "POST", "/v1/leases", Some(&at_limit));
    expect_error(&answer, 400, "bad_request");
    let over = format!("{at_limit} ");
    let answer = call(&d, "POST", "/v1/leases", Some(&over));
    expect_error(&answer, 413, "body_too_large");
    d.assert_healthy("bodies at the limit");
}

/// Idle clients cannot lock others out (the reliability suite's
/// `resources` and `stalls` tests hold more than the connection cap).
#[test]
fn idle_clients_beyond_the_connection_cap_do_not_lock_the_daemon_out() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let idle: Vec<UnixStream> = (0..530)
        .map(|_| UnixStream::connect(d.socket()).expect("connect"))
        .collect();
    let answered = http::try_request(d.socket(), "GET", "/v1/health", None);
    assert_eq!(answered.map(|a| a.status).ok(), Some(200));
    drop(idle);
}

/// A name is shown back by `ls`, `who` and the proxy: characters that are
/// invisible or reorder the text around them could make one name look like
/// another. They are refused as malformed, like an oversized project path.
#[test]
fn names_that_could_disguise_a_listing_and_oversized_projects_are_400() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let me = owner.owner();
    let hidden = [
        "api\u{202e}bew",  // RIGHT-TO-LEFT OVERRIDE
        "\u{202a}api",     // LEFT-TO-RIGHT EMBEDDING
        "api\u{2067}",     // RIGHT-TO-LEFT ISOLATE
        "ap\u{200f}i",     // RIGHT-TO-LEFT MARK
        "ap\u{061c}i",     // ARABIC LETTER MARK
        "a\u{200b}pi",     // ZERO WIDTH SPACE
        "api\u{feff}",     // ZERO WIDTH NO-BREAK SPACE
        "api\u{7}",        // BEL
        "api\u{1b}[2Jweb", // ESC: a terminal escape
        "api\u{9b}",       // CSI, a C1 control
    ];
    for name in hidden {
        let answer = lease(
            &d,
            json!({"port": block.port(0), "name": name, "project": "/tmp/p", "owner": me}),
        );
        expect_error(&answer, 400, "bad_request");
        let message = answer.json()["error"]["message"].to_string();
        assert!(message.contains("name"), "{name:?}: {message}");
    }

    let project = |len: usize| format!("/{}", "p".repeat(len - 1));
    let answer = lease(
        &d,
        json!({"port": block.port(0), "name": "api", "project": project(4097), "owner": me}),
    );
    let error = expect_error(&answer, 400, "bad_request");
    assert!(error["message"].to_string().contains("4096"), "{error}");
    let all = expect(&get(&d, "/v1/leases?all=true"), 200);
    assert_eq!(all["leases"], json!([]), "nothing was leased");

    // At the limit, and names in other scripts, are fine.
    let at_limit =
        json!({"port": block.port(0), "name": "api", "project": project(4096), "owner": me});
    expect(&lease(&d, at_limit), 201);
    let arabic = json!({"port": block.port(1), "name": "واجهة", "project": "/tmp/p", "owner": me});
    expect(&lease(&d, arabic), 201);
}

/// A body that is JSON but not an object is refused on every route that
/// takes a body, before it can act: serde would read `[30531]` as
/// `{"port": 30531}` and `[]` as `{}` (a reap).
#[test]
fn bodies_that_are_not_json_objects_are_refused_on_every_route() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let port = block.port(0);
    let me = owner.owner();
    let routes = [
        "/v1/leases".to_string(),
        "/v1/reap".to_string(),
        format!("/v1/ports/{port}/kill"),
    ];
    let bodies = [
        format!("[{port}]"),
        format!("[{port}, true]"),
        format!("[{port}, true, null, null, null, {me}]"),
        "[]".to_string(),
        "\"x\"".to_string(),
        "1".to_string(),
        "true".to_string(),
        "null".to_string(),
        " \n [] ".to_string(),
    ];
    for route in &routes {
        for body in &bodies {
            let answer = call(&d, "POST", route, Some(body));
            let error = expect_error(&answer, 400, "bad_request");
            assert!(
                error["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("JSON object")),
                "POST {route} {body}: {error}"
            );
        }
    }
    assert_eq!(active_lease(&d, port), None, "an array body was granted");
    assert!(
        events(&d).is_empty(),
        "a refused body left events: {:?}",
        events(&d)
    );
    // An object, and an empty body (read as `{}`), still work.
    expect(&lease(&d, json!({"port": port, "owner": me})), 201);
    expect(&call(&d, "POST", "/v1/reap", Some("")), 200);
}

/// A client that sends a whole request and then shuts its writing half
/// (`shutdown(SHUT_WR)`, as `nc -N` and some HTTP libraries do) still gets
/// its answer; the request's effect must never come without one.
#[test]
fn a_request_followed_by_a_half_close_is_answered() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let port = block.port(0);

    let raw = d
        .send_raw(&http::request_bytes("GET", "/v1/health", None))
        .expect("send health");
    let answer = http::parse_response(&raw).unwrap_or_else(|e| panic!("health: {e}"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["pid"], d.pid());

    let body = json!({"port": port, "owner": owner.owner()}).to_string();
    let raw = d
        .send_raw(&http::request_bytes(
            "POST",
            "/v1/leases",
            Some(body.as_bytes()),
        ))
        .expect("send lease");
    let answer = http::parse_response(&raw).unwrap_or_else(|e| panic!("lease: {e}"));
    let granted = expect(&answer, 201);
    assert_eq!(granted["port"], port);
    assert_eq!(
        active_lease(&d, port).map(|l| l["id"].clone()),
        Some(granted["id"].clone())
    );
}
