//! Health, status, the version header, and what the daemon sets up for
//! itself at start (ephemeral-range warning, open-file limit).

use std::fs;

use portd_api::PortRange;
use portd_e2e::via_bash;

use super::*;

#[test]
fn health_and_status_describe_the_daemon() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());

    let health = expect(&get(&d, "/v1/health"), 200);
    assert_eq!(health["ok"], true);
    assert_eq!(health["version"], VERSION);
    assert_eq!(health["pid"], d.pid());

    let status = expect(&get(&d, "/v1/status"), 200);
    assert_eq!(status["range"], block.range().to_string(), "{status}");
    assert_eq!(status["db"], d.db().display().to_string(), "{status}");
    assert_eq!(
        status["socket"],
        d.socket().display().to_string(),
        "{status}"
    );
    assert_eq!(status["pid"], d.pid());
    assert_eq!(status["version"], VERSION);
    assert_eq!(status["counts"]["active_leases"], 0, "{status}");
}

#[test]
fn every_answer_carries_the_version_header() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let port = block.port(0);
    let grant = json!({"port": port, "owner": owner.owner()}).to_string();
    // `call` asserts the header on each: successes and errors alike.
    let answers = [
        call(&d, "GET", "/v1/health", None),
        call(&d, "GET", "/v1/status", None),
        call(&d, "POST", "/v1/leases", Some(&grant)),
        call(&d, "POST", "/v1/leases", Some(&grant)),
        call(&d, "GET", "/v1/leases", None),
        call(&d, "GET", &format!("/v1/leases/{port}"), None),
        call(&d, "GET", &format!("/v1/ports/{port}"), None),
        call(&d, "GET", "/v1/events", None),
        call(&d, "DELETE", &format!("/v1/leases/{port}"), None),
        call(&d, "GET", &format!("/v1/leases/{port}"), None),
        call(&d, "GET", "/v1/nope", None),
        call(&d, "PUT", "/v1/leases", None),
        call(&d, "POST", "/v1/leases", Some("{")),
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [
            200, 200, 201, 200, 200, 200, 200, 200, 200, 404, 404, 405, 400
        ]
    );
}

#[test]
fn a_range_in_the_ephemeral_port_range_is_warned_about() {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let bounds: Vec<u16> = text
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let ephemeral = PortRange::new(bounds[0], bounds[1]).unwrap();
    // This daemon leases nothing: no port of the range is ever bound.
    let risky = TestDaemon::start(PortRange::new(ephemeral.start, ephemeral.start + 4).unwrap());
    assert!(risky.log().contains("ephemeral"), "{}", risky.log());

    let block = PortBlock::reserve();
    let safe = TestDaemon::start(block.range());
    // Blocks lie below the default ephemeral range; a host that moved it
    // down over them cannot show the quiet case.
    if !block.range().overlaps(&ephemeral) {
        assert!(!safe.log().contains("ephemeral"), "{}", safe.log());
    }
}

#[test]
fn the_daemon_raises_its_open_file_limit_to_the_hard_limit() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    d.launch_with(|cmd| via_bash(&cmd, "ulimit -Sn 256"));
    let limits = fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line")
        .split_whitespace()
        .collect();
    // "Max open files <soft> <hard> files"
    assert_eq!(open_files[3], open_files[4], "{limits}");
    assert_ne!(open_files[3], "256", "{limits}");
}
