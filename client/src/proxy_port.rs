//! The `.localhost` proxy's port in the systemd units `install` writes:
//! which port portd will use (`PORTD_PROXY_PORT`, else what `portd
//! --print-config` says of the config file, else the default), whether
//! another program already holds it, and the socket unit's lines for it.
//!
//! portd.socket lists the proxy's two loopback sockets after the API's. A
//! socket unit that cannot bind one of them fails as a whole, API and all;
//! so when another program holds the port, `install` leaves the proxy out
//! of the unit, and portd, binding it itself, says why it cannot.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};

use portd_api::routes::GetStatus;
use portd_api::{DEFAULT_PROXY_PORT, PROXY_PORT_ENV, Status};

use crate::connect::connect;
use crate::error::ClientError;
use crate::transport::exchange;

/// The proxy's lines in `systemd/portd.socket`, with the default port.
const LINES: [&str; 2] = ["ListenStream=127.0.0.1:7355", "ListenStream=[::1]:7355"];

/// What the units say of the proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyUnits {
    /// The port portd.socket binds for the proxy; `None`: no proxy sockets.
    pub sockets: Option<u16>,
    /// `--proxy-port` for `ExecStart`, when the port came from
    /// `PORTD_PROXY_PORT` (which systemd's portd would not see).
    pub flag: Option<u16>,
}

/// The port portd will serve the proxy on, and whether it came from
/// `PORTD_PROXY_PORT`.
pub fn chosen(portd: &Path) -> Result<(u16, bool), ClientError> {
    if let Some(text) = std::env::var_os(PROXY_PORT_ENV).filter(|v| !v.is_empty()) {
        let text = text.to_string_lossy();
        let port = match text.trim() {
            "0" => 0,
            port => portd_api::parse_port(port).map_err(|e| {
                ClientError::Usage(format!("{PROXY_PORT_ENV}: {e}; or 0 for no proxy"))
            })?,
        };
        return Ok((port, true));
    }
    // The daemon reads the config file; ask it rather than read it twice.
    let printed = Command::new(portd)
        .arg("--print-config")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let port = printed
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| configured_port(&String::from_utf8_lossy(&out.stdout)));
    Ok((port.unwrap_or(DEFAULT_PROXY_PORT), false))
}

/// `proxy_port = N` in `portd --print-config`'s output.
fn configured_port(printed: &str) -> Option<u16> {
    printed
        .lines()
        .find_map(|line| line.strip_prefix("proxy_port = "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// True when another program listens on `127.0.0.1:port`: it cannot be
/// bound, and the portd on `socket` (if one answers) does not serve its
/// proxy there.
pub fn held_by_another(port: u16, socket: &Path) -> bool {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => !ours(port, socket),
        Err(_) => false,
    }
}

/// Whether the daemon on `socket` serves its proxy on `port`.
fn ours(port: u16, socket: &Path) -> bool {
    let Ok(stream) = connect(socket) else {
        return false;
    };
    exchange(stream, &GetStatus)
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| serde_json::from_slice::<Status>(&r.body).ok())
        .is_some_and(|s| s.proxy.port == port && !s.proxy.listening.is_empty())
}

/// `template` (portd.socket) with the proxy's lines on `port`, or without
/// them.
pub fn socket_unit(template: &str, port: Option<u16>) -> String {
    let mut text = template.to_string();
    for line in LINES {
        let replaced = match port {
            Some(port) => format!("{}\n", line.replace("7355", &port.to_string())),
            None => String::new(),
        };
        text = text.replace(&format!("{line}\n"), &replaced);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::SOCKET_TEMPLATE;

    #[test]
    fn the_template_names_the_default_port_once_per_address() {
        for line in LINES {
            assert_eq!(
                SOCKET_TEMPLATE.matches(&format!("\n{line}\n")).count(),
                1,
                "{line}"
            );
        }
        assert!(LINES[0].ends_with(&DEFAULT_PROXY_PORT.to_string()));
    }

    #[test]
    fn the_socket_unit_carries_the_chosen_port_or_no_proxy_lines() {
        let moved = socket_unit(SOCKET_TEMPLATE, Some(7400));
        assert!(moved.contains("\nListenStream=127.0.0.1:7400\n"), "{moved}");
        assert!(moved.contains("\nListenStream=[::1]:7400\n"), "{moved}");
        assert!(!moved.contains(":7355"), "{moved}");
        let off = socket_unit(SOCKET_TEMPLATE, None);
        assert!(
            !off.contains("ListenStream=127.0.0.1") && !off.contains("[::1]"),
            "{off}"
        );
        assert!(
            off.contains("\nListenStream=%t/portd/portd.sock\n"),
            "{off}"
        );
        assert_eq!(socket_unit(SOCKET_TEMPLATE, Some(7355)), SOCKET_TEMPLATE);
    }

    #[test]
    fn the_port_is_read_from_print_config() {
        let printed = "grace = \"5s\"        # default\nproxy_port = 7400     # file /c.toml\n";
        assert_eq!(configured_port(printed), Some(7400));
        assert_eq!(configured_port("proxy_port = 0  # flag\n"), Some(0));
        assert_eq!(configured_port("range = \"8000-8999\"\n"), None);
    }

    #[test]
    fn a_port_held_by_a_program_that_is_not_portd_is_reported() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let nowhere = Path::new("/nonexistent/portd.sock");
        assert!(held_by_another(port, nowhere));
        drop(held);
        assert!(!held_by_another(port, nowhere));
    }
}
