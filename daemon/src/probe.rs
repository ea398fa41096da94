//! Probe binds: is a port free for a server to listen on?
//!
//! A port is free when TCP binds succeed on `0.0.0.0` and on `[::]` with
//! IPV6_V6ONLY, both with SO_REUSEADDR so that TIME_WAIT leftovers do not
//! count as busy. The probe binds but never listens, so it never accepts a
//! connection meant for someone else and leaves nothing behind.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt, socket, sockopt,
};

/// What a probe bind found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Free,
    /// Something listens on or binds the port.
    InUse,
    /// The daemon may not bind it (EACCES: a port below 1024 without privilege).
    NotPermitted,
}

/// Probes `port` on IPv4 and, where the host has IPv6, on IPv6.
pub fn probe(port: u16) -> Probe {
    match bind_v4(port) {
        Ok(()) => {}
        Err(errno) => return classify(errno),
    }
    match bind_v6(port) {
        Ok(()) => Probe::Free,
        // No IPv6 on this host: the IPv4 answer stands.
        Err(Errno::EAFNOSUPPORT | Errno::EADDRNOTAVAIL) => Probe::Free,
        Err(errno) => classify(errno),
    }
}

fn classify(errno: Errno) -> Probe {
    match errno {
        Errno::EACCES | Errno::EPERM => Probe::NotPermitted,
        _ => Probe::InUse,
    }
}

fn bind_v4(port: u16) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, port))
}

fn bind_v6(port: u16) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    let any = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0);
    bind(fd.as_raw_fd(), &SockaddrIn6::from(any))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, TcpListener};

    #[test]
    fn a_loopback_listener_makes_its_port_busy() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(probe(port), Probe::InUse);
        drop(listener);
        assert_eq!(probe(port), Probe::Free);
    }

    #[test]
    fn an_ipv6_only_listener_makes_its_port_busy() {
        let Ok(listener) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) else {
            return; // no IPv6 on this host: nothing to observe
        };
        let port = listener.local_addr().unwrap().port();
        assert_eq!(probe(port), Probe::InUse);
    }

    #[test]
    fn probing_leaves_the_port_free() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(probe(port), Probe::Free);
        assert_eq!(probe(port), Probe::Free);
        TcpListener::bind(("0.0.0.0", port)).expect("the probe must not keep the port");
    }
}
