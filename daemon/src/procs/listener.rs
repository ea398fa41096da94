//! A listening TCP socket as the kernel reports it: what `sockdiag` (and the
//! /proc/net/tcp fallback in `holders`) produce and `holders` maps to
//! processes. A leaf of its own, so that both sides import it and neither
//! imports the other for it.

/// A listening TCP socket (IPv4 or IPv6): its local port, its inode (the
/// `socket:[N]` a holder's /proc/PID/fd links to) and its owner's uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSocket {
    pub port: u16,
    pub inode: u64,
    pub uid: u32,
}
