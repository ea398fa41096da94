//! The proxy's listening sockets: 127.0.0.1 and ::1 on the configured
//! port, bound by the daemon, or the ones systemd passed. A port that
//! cannot be bound turns the proxy off with the reason, which `status`
//! shows; the daemon serves leases either way.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use portd_api::ProxyStatus;

/// Where the proxy's sockets come from.
pub enum ProxySockets {
    /// The daemon binds the configured port itself.
    Bind,
    /// systemd bound them (socket activation).
    Passed(Vec<TcpListener>),
}

/// The listeners for `port` (0: none), and what `status` says of them;
/// non-blocking, for the runtime that will serve them.
pub fn open(port: u16, sockets: ProxySockets) -> (Vec<TcpListener>, ProxyStatus) {
    let bound = match sockets {
        ProxySockets::Passed(passed) => {
            let ports: Vec<u16> = passed
                .iter()
                .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
                .collect();
            if ports.iter().any(|p| *p != port) {
                tracing::warn!(
                    configured = port,
                    passed = ?ports,
                    "the proxy serves on the port portd.socket names, not the configured one; \
                     run `portctl install` again to carry the configured port into the unit"
                );
            }
            Ok(passed)
        }
        ProxySockets::Bind if port == 0 => return (Vec::new(), ProxyStatus::default()),
        ProxySockets::Bind => bind(port),
    };
    let mut status = ProxyStatus {
        port,
        ..ProxyStatus::default()
    };
    let listeners = bound.and_then(|sockets| {
        sockets
            .into_iter()
            .map(|socket| {
                let address = socket.local_addr()?;
                socket.set_nonblocking(true)?;
                status.port = address.port();
                status.listening.push(address.to_string());
                Ok(socket)
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot serve the proxy's sockets: {e}"))
    });
    match listeners {
        Ok(listeners) => {
            tracing::info!(listening = ?status.listening, "proxy serving");
            (listeners, status)
        }
        Err(why) => {
            tracing::warn!("the .localhost proxy is off: {why}");
            status.listening.clear();
            status.error = Some(why);
            (Vec::new(), status)
        }
    }
}

/// Binds 127.0.0.1 and ::1 on `port`. A host without IPv6 serves on
/// 127.0.0.1 alone; any other failure on either address fails both, since
/// a browser that reached another program on the other address would be
/// served by it.
fn bind(port: u16) -> Result<Vec<TcpListener>, String> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut sockets = vec![TcpListener::bind(v4).map_err(|e| why(v4, &e))?];
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match TcpListener::bind(v6) {
        Ok(socket) => sockets.push(socket),
        Err(e) if no_ipv6(&e) => {
            tracing::debug!(error = %e, "no IPv6 loopback; proxy on 127.0.0.1 only")
        }
        Err(e) => return Err(why(v6, &e)),
    }
    Ok(sockets)
}

/// EADDRNOTAVAIL or EAFNOSUPPORT: the host has no ::1.
fn no_ipv6(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// What failed, and what to do about it.
fn why(address: SocketAddr, e: &io::Error) -> String {
    let port = address.port();
    let fix = "give the proxy another port: proxy_port in config.toml, --proxy-port or \
               PORTD_PROXY_PORT (0 turns it off)";
    match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "cannot listen on {address}: the port is in use (`portctl who {port}` shows by \
             what; another user's portd takes the same default); {fix}"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {address}: permission denied (ports below 1024 need privileges); {fix}"
        ),
        _ => format!("cannot listen on {address}: {e}; {fix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_turns_the_proxy_off_and_says_why() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let (listeners, status) = open(port, ProxySockets::Bind);
        assert!(listeners.is_empty());
        assert!(status.listening.is_empty());
        let error = status.error.expect("a reason");
        assert!(
            error.contains(&format!("127.0.0.1:{port}: the port is in use")),
            "{error}"
        );
        assert!(error.contains("proxy_port"), "{error}");
    }

    #[test]
    fn port_zero_is_off_without_an_error() {
        let (listeners, status) = open(0, ProxySockets::Bind);
        assert!(listeners.is_empty());
        assert_eq!(status, ProxyStatus::default());
    }
}
