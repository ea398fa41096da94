//! Listening TCP sockets from the kernel's sock_diag netlink interface.
//!
//! Reading /proc/net/tcp makes the kernel walk the whole connection hash
//! table (milliseconds on a large machine even when it is empty); a
//! sock_diag dump restricted to the LISTEN state only walks the listening
//! table. This is what `ss -l` does. The socket and its I/O go through nix;
//! the records are the kernel's structs (linux/netlink.h,
//! linux/inet_diag.h) read from and written as bytes with zerocopy.

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};
use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::listener::ListenSocket;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u8 = 10;

/// `struct nlmsghdr`, in the host's byte order as netlink is.
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct inet_diag_sockid`: ports and addresses in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct InetDiagSockId {
    sport: U16,
    dport: U16,
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

/// One netlink message asking for a dump.
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct Request {
    header: NlMsgHdr,
    body: InetDiagReqV2,
}

/// `struct inet_diag_msg`: one socket of the dump.
#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
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

// The sizes of the kernel's structs; IntoBytes already refuses padding.
const _: () = assert!(size_of::<NlMsgHdr>() == 16);
const _: () = assert!(size_of::<InetDiagReqV2>() == 56);
const _: () = assert!(size_of::<InetDiagMsg>() == 72);

/// Listening TCP sockets (IPv4 and IPv6) on `port`, or on every port.
pub fn listening_sockets(port: Option<u16>) -> io::Result<Vec<ListenSocket>> {
    let mut found = dump(AddressFamily::Inet, port)?;
    match dump(AddressFamily::Inet6, port) {
        Ok(more) => found.extend(more),
        // No IPv6 in this kernel: nothing listens there.
        Err(e)
            if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                || e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    Ok(found)
}

fn dump(family: AddressFamily, port: Option<u16>) -> io::Result<Vec<ListenSocket>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    let request = Request {
        header: NlMsgHdr {
            len: size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST | NLM_F_DUMP,
            seq: 1,
            pid: 0,
        },
        body: InetDiagReqV2 {
            family: family as u8,
            protocol: libc::IPPROTO_TCP as u8,
            states: 1 << TCP_LISTEN,
            ..InetDiagReqV2::default()
        },
    };
    // Port id 0: the kernel.
    let kernel = NetlinkAddr::new(0, 0);
    sendto(
        fd.as_raw_fd(),
        request.as_bytes(),
        &kernel,
        MsgFlags::empty(),
    )?;
    let mut found = Vec::new();
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let len = recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty())?;
        match parse(&buffer[..len], port, &mut found)? {
            Parsed::Done => return Ok(found),
            Parsed::More => {}
        }
    }
}

enum Parsed {
    More,
    Done,
}

fn truncated(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("truncated {what}"))
}

/// Parses one datagram of netlink messages, adding listeners on `port` (on
/// any port if `None`).
fn parse(mut data: &[u8], port: Option<u16>, found: &mut Vec<ListenSocket>) -> io::Result<Parsed> {
    while let Ok((header, _)) = NlMsgHdr::read_from_prefix(data) {
        let len = header.len as usize;
        if len < size_of::<NlMsgHdr>() || len > data.len() {
            return Err(truncated("netlink message"));
        }
        let payload = &data[size_of::<NlMsgHdr>()..len];
        match header.kind {
            NLMSG_DONE => return Ok(Parsed::Done),
            NLMSG_ERROR => {
                let (code, _) =
                    i32::read_from_prefix(payload).map_err(|_| truncated("netlink error"))?;
                return Err(io::Error::from_raw_os_error(-code));
            }
            SOCK_DIAG_BY_FAMILY => {
                // Attributes may follow the record; a shorter one is skipped.
                if let Ok((msg, _)) = InetDiagMsg::read_from_prefix(payload) {
                    let local = msg.id.sport.get();
                    if msg.state == TCP_LISTEN && port.is_none_or(|p| p == local) && msg.inode != 0
                    {
                        found.push(ListenSocket {
                            port: local,
                            inode: u64::from(msg.inode),
                            uid: msg.uid,
                        });
                    }
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
        // A dump of every port has them too, each with its port and owner
        // read from the right place in the kernel's record.
        let uid = nix::unistd::geteuid().as_raw();
        let every_port = listening_sockets(None).unwrap();
        for inode in &ours {
            let socket = every_port.iter().find(|s| s.inode == *inode);
            assert_eq!(
                socket,
                Some(&ListenSocket {
                    port,
                    inode: *inode,
                    uid
                }),
                "{every_port:?}"
            );
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

    /// One netlink message of `kind` carrying `payload`, padded to 4 bytes
    /// as the kernel sends it.
    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let header = NlMsgHdr {
            len: (size_of::<NlMsgHdr>() + payload.len()) as u32,
            kind,
            ..Default::default()
        };
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        bytes
    }

    fn listener(port: u16, state: u8, uid: u32, inode: u32) -> InetDiagMsg {
        InetDiagMsg {
            state,
            id: InetDiagSockId {
                sport: U16::new(port),
                ..Default::default()
            },
            uid,
            inode,
            ..Default::default()
        }
    }

    #[test]
    fn messages_are_walked_until_done() {
        let mut found = Vec::new();
        let mut data = message(
            SOCK_DIAG_BY_FAMILY,
            listener(8000, TCP_LISTEN, 7, 42).as_bytes(),
        );
        data.extend(message(NLMSG_DONE, &[]));
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

    #[test]
    fn records_with_attributes_are_stepped_over_at_their_padded_length() {
        // The kernel appends attributes after the record; a length that is
        // not a multiple of 4 is followed by padding up to the next message.
        let mut with_attribute = listener(8000, TCP_LISTEN, 7, 42).as_bytes().to_vec();
        with_attribute.extend_from_slice(&[1, 2, 3, 4, 5]);
        let mut data = message(SOCK_DIAG_BY_FAMILY, &with_attribute);
        assert_eq!(data.len() % 4, 0);
        // Neither a connection, nor a socket without an inode, nor a record
        // cut short is a listener.
        for skipped in [
            listener(8000, 1, 7, 43).as_bytes(),
            listener(8000, TCP_LISTEN, 7, 0).as_bytes(),
            &listener(8000, TCP_LISTEN, 7, 44).as_bytes()[..40],
        ] {
            data.extend(message(SOCK_DIAG_BY_FAMILY, skipped));
        }
        data.extend(message(
            SOCK_DIAG_BY_FAMILY,
            listener(9000, TCP_LISTEN, 8, 45).as_bytes(),
        ));
        let mut found = Vec::new();
        assert!(matches!(
            parse(&data, None, &mut found).unwrap(),
            Parsed::More
        ));
        let inodes: Vec<u64> = found.iter().map(|s| s.inode).collect();
        assert_eq!(inodes, [42, 45]);
        assert_eq!((found[1].port, found[1].uid), (9000, 8));
    }

    #[test]
    fn an_error_message_is_the_kernels_errno_and_a_cut_message_is_invalid() {
        let data = message(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        let err = parse(&data, None, &mut Vec::new()).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");

        let mut cut = message(
            SOCK_DIAG_BY_FAMILY,
            listener(8000, TCP_LISTEN, 7, 42).as_bytes(),
        );
        cut.truncate(cut.len() - 8);
        let err = parse(&cut, None, &mut Vec::new()).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
