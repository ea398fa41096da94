//! Listening TCP sockets from the kernel's sock_diag netlink interface.
//!
//! Reading /proc/net/tcp makes the kernel walk the whole connection hash
//! table (milliseconds on a large machine even when it is empty); a
//! sock_diag dump restricted to the LISTEN state only walks the listening
//! table. This is what `ss -l` does.

use std::io;
use std::mem::size_of;

use super::listener::ListenSocket;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u8 = 10;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Request {
    header: NlMsgHdr,
    body: InetDiagReqV2,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

/// Listening TCP sockets (IPv4 and IPv6) on `port`, or on every port.
pub fn listening_sockets(port: Option<u16>) -> io::Result<Vec<ListenSocket>> {
    let mut found = dump(libc::AF_INET as u8, port)?;
    match dump(libc::AF_INET6 as u8, port) {
        Ok(more) => found.extend(more),
        // No IPv6 in this kernel: nothing listens there.
        Err(e)
            if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                || e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    Ok(found)
}

fn dump(family: u8, port: Option<u16>) -> io::Result<Vec<ListenSocket>> {
    // SAFETY: a plain socket(2); the fd is owned by `Fd` below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = Fd(raw);
    let request = Request {
        header: NlMsgHdr {
            len: size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST | NLM_F_DUMP,
            seq: 1,
            pid: 0,
        },
        body: InetDiagReqV2 {
            family,
            protocol: libc::IPPROTO_TCP as u8,
            states: 1 << TCP_LISTEN,
            ..InetDiagReqV2::default()
        },
    };
    // SAFETY: sockaddr_nl is plain data; zero means "the kernel".
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: the request and address live across the call; sizes are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.0,
            (&request as *const Request).cast(),
            size_of::<Request>(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: the buffer is ours and as long as we say.
        let len = unsafe { libc::recv(fd.0, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        match parse(&buffer[..len as usize], port, &mut found)? {
            Parsed::Done => return Ok(found),
            Parsed::More => {}
        }
    }
}

enum Parsed {
    More,
    Done,
}

/// Parses one datagram of netlink messages, adding listeners on `port` (on
/// any port if `None`).
fn parse(mut data: &[u8], port: Option<u16>, found: &mut Vec<ListenSocket>) -> io::Result<Parsed> {
    while data.len() >= size_of::<NlMsgHdr>() {
        let header: NlMsgHdr = read(data);
        let len = header.len as usize;
        if len < size_of::<NlMsgHdr>() || len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        match header.kind {
            NLMSG_DONE => return Ok(Parsed::Done),
            NLMSG_ERROR => {
                let code: i32 = read(&data[size_of::<NlMsgHdr>()..len]);
                return Err(io::Error::from_raw_os_error(-code));
            }
            SOCK_DIAG_BY_FAMILY if len >= size_of::<NlMsgHdr>() + size_of::<InetDiagMsg>() => {
                let msg: InetDiagMsg = read(&data[size_of::<NlMsgHdr>()..len]);
                let local = u16::from_be_bytes(msg.id.sport);
                if msg.state == TCP_LISTEN && port.is_none_or(|p| p == local) && msg.inode != 0 {
                    found.push(ListenSocket {
                        port: local,
                        inode: u64::from(msg.inode),
                        uid: msg.uid,
                    });
                }
            }
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        let step = (len + 3) & !3;
        data = data.get(step..).unwrap_or_default();
    }
    Ok(Parsed::More)
}

/// Reads a plain-data struct from the front of `data` (which must be long
/// enough); unaligned reads are fine.
fn read<T: Copy + Default>(data: &[u8]) -> T {
    if data.len() < size_of::<T>() {
        return T::default();
    }
    // SAFETY: `data` holds at least size_of::<T>() bytes and T is plain data.
    unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<T>()) }
}

struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { libc::close(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, TcpListener, TcpStream};

    /// The socket inode of a listener, as /proc and sock_diag name it.
    fn inode(listener: &TcpListener) -> u64 {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[test]
    fn finds_ipv4_and_ipv6_listeners_but_not_connections() {
        // Other tests may listen on the same port number on another address
        // family, so compare by inode rather than by count.
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).ok();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let ours: Vec<u64> = std::iter::once(inode(&v4))
            .chain(v6.as_ref().map(inode))
            .collect();
        let found: Vec<u64> = listening_sockets(Some(port))
            .unwrap()
            .iter()
            .map(|s| s.inode)
            .collect();
        for inode in &ours {
            assert!(found.contains(inode), "{inode} not in {found:?}");
        }
        let client_inode = {
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/proc/self/fd/{}", client.as_raw_fd()))
                .unwrap()
                .ino()
        };
        assert!(
            !found.contains(&client_inode),
            "a connection is not a listener"
        );
        drop((v4, v6));
        // A child another test forks in this moment holds a copy of every
        // fd until it execs: the listeners may outlive the drop briefly.
        let inodes = || -> Vec<u64> {
            listening_sockets(Some(port))
                .unwrap()
                .iter()
                .map(|s| s.inode)
                .collect()
        };
        let gone = portd_e2e::wait_until(std::time::Duration::from_secs(10), || {
            let after = inodes();
            ours.iter().all(|i| !after.contains(i))
        });
        assert!(gone, "{:?}", inodes());
    }

    #[test]
    fn messages_are_walked_until_done() {
        let mut found = Vec::new();
        let mut data = Vec::new();
        let header = NlMsgHdr {
            len: (size_of::<NlMsgHdr>() + size_of::<InetDiagMsg>()) as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            ..Default::default()
        };
        let msg = InetDiagMsg {
            state: TCP_LISTEN,
            id: InetDiagSockId {
                sport: 8000u16.to_be_bytes(),
                ..Default::default()
            },
            uid: 7,
            inode: 42,
            ..Default::default()
        };
        // SAFETY: plain data viewed as bytes.
        unsafe {
            data.extend_from_slice(std::slice::from_raw_parts(
                (&header as *const NlMsgHdr).cast::<u8>(),
                size_of::<NlMsgHdr>(),
            ));
            data.extend_from_slice(std::slice::from_raw_parts(
                (&msg as *const InetDiagMsg).cast::<u8>(),
                size_of::<InetDiagMsg>(),
            ));
        }
        let done = NlMsgHdr {
            len: size_of::<NlMsgHdr>() as u32,
            kind: NLMSG_DONE,
            ..Default::default()
        };
        // SAFETY: as above.
        unsafe {
            data.extend_from_slice(std::slice::from_raw_parts(
                (&done as *const NlMsgHdr).cast::<u8>(),
                size_of::<NlMsgHdr>(),
            ))
        };
        assert!(matches!(
            parse(&data, Some(8000), &mut found).unwrap(),
            Parsed::Done
        ));
        assert_eq!(
            found,
            [ListenSocket {
                port: 8000,
                inode: 42,
                uid: 7
            }]
        );
        found.clear();
        parse(&data, Some(8001), &mut found).unwrap();
        assert!(found.is_empty());
    }
}
