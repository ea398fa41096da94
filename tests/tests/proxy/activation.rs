//! The proxy's sockets from systemd: `systemd-socket-activate` binds the
//! API's Unix socket and the proxy's two loopback sockets, as portd.socket
//! does, and portd serves the proxy on the ones it was passed.

use std::process::Command;

use portd_e2e::cli::{portctl, scrub};
use portd_e2e::finish;
use portd_e2e::skip::require_system_tool;

use super::*;

#[test]
fn portd_serves_the_proxy_on_the_sockets_systemd_passes_after_its_own() {
    let Some(activate) = require_system_tool("systemd-socket-activate", "systemd") else {
        return;
    };
    let block = PortBlock::reserve();
    let proxy = block.port(PROXY_INDEX);
    let mut d = TestDaemon::new(block.sub_range(0, PROXY_INDEX));
    let socket = d.socket().to_path_buf();
    let env = d.activation_env();
    let ipv6 = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok();
    d.launch_with(|portd| {
        let mut cmd = Command::new(&activate);
        cmd.arg("-l").arg(&socket);
        cmd.arg("-l").arg(format!("127.0.0.1:{proxy}"));
        if ipv6 {
            cmd.arg("-l").arg(format!("[::1]:{proxy}"));
        }
        cmd.args(&env).arg(portd.get_program()).args([
            "--range",
            &block.sub_range(0, PROXY_INDEX).to_string(),
            "-v",
        ]);
        scrub(&mut cmd);
        cmd
    });

    // No --proxy-port and no variable reached portd: the port it serves is
    // the one it was handed, not its default.
    let status = d.get("/v1/status").json();
    let mut expected = vec![format!("127.0.0.1:{proxy}")];
    if ipv6 {
        expected.push(format!("[::1]:{proxy}"));
    }
    assert_eq!(status["proxy"]["port"], proxy, "{status}");
    assert_eq!(status["proxy"]["listening"], json!(expected), "{status}");
    let fd4 = std::fs::read_link(format!("/proc/{}/fd/4", d.pid())).unwrap();
    assert!(
        fd4.to_string_lossy().starts_with("socket:["),
        "fd 4 is {fd4:?}"
    );

    let scratch = Scratch::new();
    let project = project_dir(&scratch.path(""), "shop");
    let owner = ChildGuard::sleep(60);
    let leased = d.post(
        "/v1/leases",
        &json!({"port": block.port(0), "name": "api", "project": project.to_str().unwrap(),
                "owner": owner.owner()}),
    );
    assert_eq!(leased.status, 201, "{}", leased.body);
    let _api = web::echo_server(&scratch.path(""), block.port(0), "api");
    let answer = web::get(proxy, &format!("api.shop.localhost:{proxy}"), "/", &[]);
    assert_eq!(answer.json()["who"], "api", "{answer:?}");
    let url = finish(
        portctl(d.socket())
            .current_dir(&project)
            .args(["url", "api"]),
        DEADLINE,
    );
    assert_eq!(
        url.expect(0).stdout,
        format!("http://api.shop.localhost:{proxy}/\n")
    );
}
