//! The pages the proxy answers with itself: an unknown name's 404 with
//! the project's names and links, the 502 of a lease not yet listening
//! (which refreshes itself), an ended lease's 404 with when and why, the
//! index; JSON when the request asks for it; and what it refuses to be:
//! an open proxy, or a proxy for any host but a `.localhost` name.

use portd_e2e::wait_until;
use portd_e2e::web::Conn;

use super::*;

#[test]
fn an_unknown_name_gets_a_404_listing_its_projects_names_with_links() {
    let p = Proxied::start();
    let shop = p.project("shop");
    p.lease(0, "api", &shop);
    p.lease(1, "web", &shop);
    let _api = p.echo(0, "api");
    let port = p.proxy_port();

    let html = p.get(&p.host("db", "shop"), "/");
    assert_eq!(html.status, 404, "{html:?}");
    assert!(
        html.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    for name in ["api", "web"] {
        let link = format!("<a href=\"http://{name}.shop.localhost:{port}/\">{name}</a>");
        assert!(
            html.body.contains(&link),
            "no link to {name}:\n{}",
            html.body
        );
    }
    assert!(html.body.contains("portctl run --name db"), "{}", html.body);

    let json = p.get_json(&p.host("db", "shop"), "/");
    assert_eq!(json.status, 404);
    assert!(
        json.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let names = json.json()["error"]["names"].clone();
    assert_eq!(names[0]["name"], "api");
    assert_eq!(
        names[0]["url"],
        format!("http://api.shop.localhost:{port}/")
    );
    assert_eq!(names[1]["name"], "web");

    // An unknown label, or a name no project has: every name, all projects.
    p.lease(2, "docs", &p.project("blog"));
    for host in [
        p.host("api", "nope"),
        p.host("nope", ""),
        format!("a.b.c.localhost:{port}"),
    ] {
        let answer = p.get_json(&host, "/");
        assert_eq!(answer.status, 404, "{host}: {answer:?}");
        let listed: Vec<String> = answer.json()["error"]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                format!(
                    "{}.{}",
                    n["name"].as_str().unwrap(),
                    n["label"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(listed, ["docs.blog", "api.shop", "web.shop"], "{host}");
    }
    // No owner, no command line, no pid on any page.
    let pid = p.owner.pid().to_string();
    assert!(!html.body.contains(&pid) && !json.body.contains(&pid));
}

#[test]
fn the_index_lists_every_project_and_says_which_names_run() {
    let p = Proxied::start();
    p.lease(0, "api", &p.project("shop"));
    p.lease(1, "docs", &p.project("blog"));
    let index = p.get(&format!("localhost:{}", p.proxy_port()), "/");
    assert_eq!(index.status, 200);
    assert!(index.body.contains("<h2>blog</h2>") && index.body.contains("<h2>shop</h2>"));
    let json = p
        .get_json(&format!("localhost:{}", p.proxy_port()), "/")
        .json();
    assert_eq!(json["names"].as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(json["names"][0]["active"], true);
}

#[test]
fn a_lease_that_does_not_listen_yet_gets_a_502_that_refreshes_until_it_does() {
    let p = Proxied::start();
    p.lease(0, "api", &p.project("shop"));
    let host = p.host("api", "shop");

    let starting = p.get(&host, "/");
    assert_eq!(starting.status, 502, "{starting:?}");
    assert_eq!(starting.header("retry-after"), Some("1"));
    assert!(
        starting
            .header("cache-control")
            .unwrap()
            .contains("no-store")
    );
    assert!(
        starting
            .body
            .contains("<meta http-equiv=\"refresh\" content=\"1\">"),
        "{}",
        starting.body
    );
    assert!(
        starting.body.contains("api is starting"),
        "{}",
        starting.body
    );
    let json = p.get_json(&host, "/");
    assert_eq!(json.error_code().as_deref(), Some("starting"));

    let _api = p.echo(0, "api");
    let up = wait_until(DEADLINE, || p.get(&host, "/").status == 200);
    assert!(up, "still not 200 once the server listens");
}

#[test]
fn a_name_whose_lease_ended_gets_a_404_saying_when_and_why() {
    let mut p = Proxied::start();
    let lease = p.lease(0, "api", &p.project("shop"));
    let _api = p.echo(0, "api");
    let host = p.host("api", "shop");
    assert_eq!(p.get(&host, "/").status, 200);

    p.owner.kill9();
    let ended =
        p.d.wait_lease_ended(lease["id"].as_str().unwrap(), DEADLINE);
    let page = p.get(&host, "/");
    assert_eq!(page.status, 404, "{page:?}");
    let at = ended["ended_at"].as_str().unwrap();
    assert!(
        page.body
            .contains(&format!("ended at {at} (the process that held it exited)")),
        "{}",
        page.body
    );
    let json = p.get_json(&host, "/").json();
    assert_eq!(json["error"]["code"], "ended");
    assert_eq!(json["error"]["ended_at"], at);
    assert_eq!(json["error"]["end_reason"], "owner_died");
}

#[test]
fn foreign_hosts_absolute_urls_connect_and_requests_without_a_host_are_refused() {
    let p = Proxied::start();
    p.lease(0, "api", &p.project("shop"));
    let _api = p.echo(0, "api");
    let port = p.proxy_port();

    for host in [
        format!("example.com:{port}"),
        format!("127.0.0.1:{port}"),
        format!("api.shop.localhost.example.com:{port}"),
    ] {
        let answer = p.get(&host, "/");
        assert_eq!(answer.status, 421, "{host}: {answer:?}");
        assert!(
            !answer.body.contains("<li>"),
            "{host} was shown names: {}",
            answer.body
        );
        let json = p.get_json(&host, "/").json();
        assert_eq!(json["error"]["code"], "misdirected");
        assert!(
            json["error"].get("names").is_none(),
            "{host} was shown names: {json}"
        );
    }
    let refused = |request: String| {
        let mut conn = Conn::open(port);
        conn.send(request.as_bytes());
        conn.response()
    };
    let host = p.host("api", "shop");
    for request in [
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!("GET http://example.com/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        "GET / HTTP/1.0\r\n\r\n".to_string(),
    ] {
        let answer = refused(request.clone());
        assert_eq!(answer.status, 400, "{request:?}: {answer:?}");
        assert!(
            answer.header("x-echo").is_none(),
            "{request:?} reached the server"
        );
    }
}
