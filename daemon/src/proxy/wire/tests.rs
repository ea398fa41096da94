use super::*;

fn whole(raw: &str) -> Head {
    let mut read = BytesMut::from(raw.as_bytes());
    let head = parse_head(&mut read).unwrap().expect("a whole head");
    assert!(read.is_empty(), "the head is taken off what was read");
    head
}

fn framed(method: Method, raw: &str) -> (io::Result<Framing>, Head) {
    let mut head = whole(raw);
    (framing(&method, &mut head), head)
}

#[test]
fn a_request_head_is_the_method_target_and_every_field_in_order() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("web.app.localhost"));
    headers.append("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    let uri: Uri = "/p/q?x=1%20y".parse().unwrap();
    let bytes = request_head(&Method::DELETE, &uri, &headers);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "DELETE /p/q?x=1%20y HTTP/1.1\r\nhost: web.app.localhost\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
    );
}

#[test]
fn a_response_head_is_taken_once_whole_and_what_follows_stays() {
    let mut read = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
    assert!(parse_head(&mut read).unwrap().is_none());
    read.extend_from_slice(b"ngth: 2\r\nX-A: 1\r\nX-A: 2\r\n\r\nok");
    let head = parse_head(&mut read).unwrap().unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.version, Version::HTTP_11);
    let xa: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(xa, ["1", "2"]);
    assert_eq!(&read[..], b"ok");
    assert!(head.reason.is_none(), "the status code's own phrase");
    let fine = whole("HTTP/1.1 200 Fine Thanks\r\n\r\n").reason;
    assert_eq!(
        fine.as_ref().map(|r| r.as_bytes()),
        Some(&b"Fine Thanks"[..])
    );

    assert_eq!(
        whole("HTTP/1.0 404 Not Found\r\n\r\n").version,
        Version::HTTP_10
    );
    for bad in [
        "NOT HTTP\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
    ] {
        let mut read = BytesMut::from(bad.as_bytes());
        assert!(parse_head(&mut read).is_err(), "{bad:?}");
    }
    let mut endless = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
    endless.extend_from_slice("x-long: y\r\n".repeat(MAX_HEAD / 10).as_bytes());
    assert!(
        parse_head(&mut endless).is_err(),
        "a head without end is refused"
    );
}

#[test]
fn a_body_ends_as_rfc_9112_says() {
    let ok = "HTTP/1.1 200 OK\r\n";
    let cases = [
        (
            Method::HEAD,
            format!("{ok}Content-Length: 9\r\n\r\n"),
            "empty",
        ),
        (
            Method::GET,
            "HTTP/1.1 204 No Content\r\n\r\n".into(),
            "empty",
        ),
        (
            Method::GET,
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n".into(),
            "empty",
        ),
        (
            Method::GET,
            format!("{ok}Content-Length: 0\r\n\r\n"),
            "empty",
        ),
        (
            Method::GET,
            format!("{ok}Content-Length: 9\r\n\r\n"),
            "length 9",
        ),
        (
            Method::GET,
            format!("{ok}Content-Length: 9, 9\r\nContent-Length: 9\r\n\r\n"),
            "length 9",
        ),
        (
            Method::GET,
            format!("{ok}Transfer-Encoding: gzip, Chunked\r\n\r\n"),
            "chunked",
        ),
        (
            Method::GET,
            format!("{ok}Transfer-Encoding: chunked, gzip\r\n\r\n"),
            "close",
        ),
        (
            Method::GET,
            format!("{ok}Content-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "chunked",
        ),
        (Method::GET, format!("{ok}\r\n"), "close"),
    ];
    for (method, raw, want) in cases {
        let (framing, head) = framed(method, &raw);
        let got = match framing.unwrap() {
            Framing::Empty => "empty".to_string(),
            Framing::Length(n) => format!("length {n}"),
            Framing::Chunked(_) => "chunked".to_string(),
            Framing::Close => "close".to_string(),
        };
        assert_eq!(got, want, "{raw:?}");
        if raw.contains("Transfer-Encoding") {
            assert!(
                !head.headers.contains_key(header::CONTENT_LENGTH),
                "{raw:?}"
            );
        }
    }
    for raw in [
        format!("{ok}Content-Length: 9\r\nContent-Length: 8\r\n\r\n"),
        format!("{ok}Content-Length: +9\r\n\r\n"),
        format!("{ok}Content-Length: nine\r\n\r\n"),
    ] {
        assert!(framed(Method::GET, &raw).0.is_err(), "{raw:?}");
    }
}

#[test]
fn a_connection_is_kept_after_http_1_1_unless_the_server_says_close() {
    assert!(keeps_alive(&whole("HTTP/1.1 200 OK\r\n\r\n")));
    assert!(keeps_alive(&whole(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n"
    )));
    assert!(!keeps_alive(&whole(
        "HTTP/1.1 200 OK\r\nConnection: x, Close\r\n\r\n"
    )));
    assert!(!keeps_alive(&whole("HTTP/1.0 200 OK\r\n\r\n")));
}
