//! Probe binds: is a port free for a server to listen on?
//!
//! A port is free when a TCP bind on it succeeds for every address of both
//! families, with SO_REUSEADDR so that TIME_WAIT leftovers do not count as
//! busy. One dual-stack socket checks both at once: a bind on `[::]` with
//! IPV6_V6ONLY off conflicts with anything bound on the port over IPv4
//! (`0.0.0.0`, `127.0.0.1`, ...) or IPv6, exactly where the two binds
//! DESIGN describes (`0.0.0.0`, then `[::]` with IPV6_V6ONLY) would, at
//! half the sockets; docs/DECISIONS.md has the comparison. A host without
//! IPv6 gets the IPv4 bind alone. The probe binds but never listens, so it
//! never accepts a connection meant for someone else and leaves nothing
//! behind.

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

/// Probes `port` on both families, or on IPv4 where the host has no IPv6.
pub fn probe(port: u16) -> Probe {
    match bind_v6(port, false) {
        Ok(()) => Probe::Free,
        // No IPv6 on this host: IPv4 alone.
        Err(Errno::EAFNOSUPPORT | Errno::EADDRNOTAVAIL) => match bind_v4(port) {
            Ok(()) => Probe::Free,
            Err(errno) => classify(errno),
        },
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

/// A bind on `[::]`; with `v6only` off (the probe), whatever
/// net.ipv6.bindv6only says, it covers IPv4 too.
fn bind_v6(port: u16, v6only: bool) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &v6only)?;
    let any = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0);
    bind(fd.as_raw_fd(), &SockaddrIn6::from(any))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{SockaddrStorage, getsockname};
    use portd_e2e::wait_until;
    use std::net::{Ipv6Addr, TcpListener};
    use std::os::fd::OwnedFd;

    /// How long a forked copy of a listener may outlive the original: a
    /// child another test forks holds a copy of every fd until it execs.
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

    #[test]
    fn a_loopback_listener_makes_its_port_busy() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(probe(port), Probe::InUse);
        drop(listener);
        assert!(wait_until(DEADLINE, || probe(port) == Probe::Free));
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
        assert!(wait_until(DEADLINE, || probe(port) == Probe::Free));
        assert_eq!(probe(port), Probe::Free);
        TcpListener::bind(("0.0.0.0", port)).expect("the probe must not keep the port");
    }

    /// DESIGN's two binds: `0.0.0.0`, then `[::]` with IPV6_V6ONLY.
    fn two_binds(port: u16) -> Probe {
        match bind_v4(port).and_then(|()| bind_v6(port, true)) {
            Ok(()) => Probe::Free,
            Err(errno) => classify(errno),
        }
    }

    /// A socket another program could hold: bound to `ip` (the kernel picks
    /// the port), listening only on loopback.
    struct Holder {
        what: &'static str,
        ip: &'static str,
        v6only: Option<bool>,
        reuse: bool,
        listen: bool,
    }

    impl Holder {
        fn hold(&self) -> (OwnedFd, u16) {
            let addr = std::net::SocketAddr::new(self.ip.parse().unwrap(), 0);
            let family = match addr {
                std::net::SocketAddr::V4(_) => AddressFamily::Inet,
                std::net::SocketAddr::V6(_) => AddressFamily::Inet6,
            };
            assert!(!self.listen || addr.ip().to_canonical().is_loopback());
            let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
            setsockopt(&fd, sockopt::ReuseAddr, &self.reuse).unwrap();
            if let Some(only) = self.v6only {
                setsockopt(&fd, sockopt::Ipv6V6Only, &only).unwrap();
            }
            bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).unwrap();
            if self.listen {
                nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::new(1).unwrap()).unwrap();
            }
            let local: SockaddrStorage = getsockname(fd.as_raw_fd()).unwrap();
            let port = local
                .as_sockaddr_in()
                .map(|a| a.port())
                .or_else(|| local.as_sockaddr_in6().map(|a| a.port()))
                .unwrap();
            (fd, port)
        }
    }

    #[test]
    fn one_dual_stack_bind_finds_what_the_two_binds_find() {
        if socket(
            AddressFamily::Inet6,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .is_err()
        {
            return; // no IPv6 on this host: the IPv4 bind is the whole probe
        }
        let holder = |what, ip, v6only, reuse, listen| Holder {
            what,
            ip,
            v6only,
            reuse,
            listen,
        };
        let cases = [
            (
                holder("IPv4 loopback listener", "127.0.0.1", None, true, true),
                Probe::InUse,
            ),
            (
                holder(
                    "IPv4 loopback, bound, SO_REUSEADDR",
                    "127.0.0.1",
                    None,
                    true,
                    false,
                ),
                Probe::Free,
            ),
            (
                holder("IPv4 loopback, bound", "127.0.0.1", None, false, false),
                Probe::InUse,
            ),
            (
                holder("IPv4 any, bound", "0.0.0.0", None, false, false),
                Probe::InUse,
            ),
            (
                holder(
                    "IPv6 loopback listener, v6 only",
                    "::1",
                    Some(true),
                    true,
                    true,
                ),
                Probe::InUse,
            ),
            (
                holder(
                    "IPv6 loopback listener, dual stack",
                    "::1",
                    Some(false),
                    true,
                    true,
                ),
                Probe::InUse,
            ),
            (
                holder("IPv6 any, v6 only, bound", "::", Some(true), false, false),
                Probe::InUse,
            ),
            (
                holder(
                    "IPv6 any, dual stack, bound",
                    "::",
                    Some(false),
                    false,
                    false,
                ),
                Probe::InUse,
            ),
            (
                holder(
                    "IPv4-mapped loopback listener",
                    "::ffff:127.0.0.1",
                    None,
                    true,
                    true,
                ),
                Probe::InUse,
            ),
        ];
        for (holder, expected) in cases {
            let (fd, port) = holder.hold();
            let what = holder.what;
            assert_eq!(two_binds(port), expected, "{what}: the two binds");
            assert_eq!(probe(port), expected, "{what}: the probe");
            drop(fd);
        }
    }
}
