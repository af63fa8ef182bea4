//! The connection tracking table over ctnetlink (no `conntrack` binary needed).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET / IPCTNL_MSG_CT_DELETE.
const CT_GET: u16 = (1 << 8) | 1;
const CT_DELETE: u16 = (1 << 8) | 2;
/// ctattr_type, ctattr_tuple, ctattr_ip, ctattr_l4proto (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
/// CTA_IP_V4_SRC, CTA_IP_V6_SRC; the DST of each follows it.
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_PROTO_NUM: u16 = 1;
/// CTA_PROTO_SRC_PORT; CTA_PROTO_DST_PORT follows it (as each address's DST follows its SRC).
const CTA_PROTO_SRC_PORT: u16 = 2;
/// The type bits of an attribute (NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Forgets every IPv4 connection of the calling thread's namespace (`conntrack -F`), as
/// kube-proxy does after changing a Service: flows keep no NAT decision made before.
pub fn flush() -> io::Result<()> {
    let sock = socket()?;
    send(&sock, request(CT_DELETE, libc::AF_INET as u8, &[]))?;
    ack(&sock)
}

/// Deletes the UDP entries of the calling thread's namespace whose reply comes from one of
/// `endpoints` (their translation leads there), as kube-proxy does for an endpoint that went
/// (`conntrack -D -p udp --reply-src IP`); how many.
pub fn delete_udp_to(endpoints: &[IpAddr]) -> io::Result<usize> {
    delete_udp_where(|f| endpoints.contains(&f.to.0))
}

/// A UDP flow as conntrack keeps it: where its first packet was sent, and where its translation
/// sends it (the reply's source), each as address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFlow {
    pub dst: (IpAddr, u16),
    pub to: (IpAddr, u16),
}

/// Deletes the UDP entries of the calling thread's namespace that `stale` picks; how many.
pub fn delete_udp_where(stale: impl Fn(&UdpFlow) -> bool) -> io::Result<usize> {
    let sock = socket()?;
    send(&sock, request(CT_GET, libc::AF_UNSPEC as u8, &[]))?;
    let mut doomed = Vec::new();
    for (family, attrs) in dump(&sock)? {
        let Some(orig) = find(&attrs, CTA_TUPLE_ORIG) else {
            continue;
        };
        let reply = find(&attrs, CTA_TUPLE_REPLY).map(|t| &t[4..]);
        if tuple_proto(&orig[4..]) != Some(libc::IPPROTO_UDP as u8) {
            continue;
        }
        let flow = (|| {
            let reply = reply?;
            Some(UdpFlow {
                dst: (
                    tuple_addr(&orig[4..], false)?,
                    tuple_port(&orig[4..], false)?,
                ),
                to: (tuple_addr(reply, true)?, tuple_port(reply, true)?),
            })
        })();
        if flow.is_some_and(|f| stale(&f)) {
            doomed.push((family, orig.to_vec()));
        }
    }
    for (family, orig) in &doomed {
        send(&sock, request(CT_DELETE, *family, orig))?;
        ack(&sock)?;
    }
    Ok(doomed.len())
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain socket call; the descriptor is owned at once.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// A ctnetlink request: nlmsghdr, nfgenmsg (family, version 0, res_id 0), attributes.
fn request(kind: u16, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = 20 + attrs.len();
    let flags = if kind == CT_GET {
        libc::NLM_F_REQUEST | libc::NLM_F_DUMP
    } else {
        libc::NLM_F_REQUEST | libc::NLM_F_ACK
    } as u16;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[family, 0, 0, 0]);
    msg.extend_from_slice(attrs);
    msg
}

fn send(sock: &OwnedFd, msg: Vec<u8>) -> io::Result<()> {
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `addr` are live for the call.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn recv(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The ack: an nlmsgerr whose error is 0, or -errno (ENOENT: nothing to delete, which is
/// what was wanted).
fn ack(sock: &OwnedFd) -> io::Result<()> {
    let mut buf = [0u8; 256];
    let n = recv(sock, &mut buf)?;
    if n >= 20 {
        let err = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
        if err < 0 && -err != libc::ENOENT {
            return Err(io::Error::from_raw_os_error(-err));
        }
    }
    Ok(())
}

/// Every entry of a dump: its family and its attributes (after nfgenmsg).
fn dump(sock: &OwnedFd) -> io::Result<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock, &mut buf)?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2"));
            if len < 16 || at + len > n {
                return Ok(out);
            }
            match kind as i32 {
                libc::NLMSG_DONE => return Ok(out),
                libc::NLMSG_ERROR => {
                    let err = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4"));
                    if err < 0 {
                        return Err(io::Error::from_raw_os_error(-err));
                    }
                }
                _ if len >= 20 => out.push((buf[at + 16], buf[at + 20..at + len].to_vec())),
                _ => {}
            }
            at += (len + 3) & !3;
        }
    }
}

/// The first attribute of `kind` in `attrs`, whole (header included).
fn find(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let len = u16::from_ne_bytes([attrs[at], attrs[at + 1]]) as usize;
        let k = u16::from_ne_bytes([attrs[at + 2], attrs[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > attrs.len() {
            return None;
        }
        if k == kind {
            return Some(&attrs[at..at + len]);
        }
        at += (len + 3) & !3;
    }
    None
}

/// A tuple's source or destination address (its nested attributes given).
fn tuple_addr(tuple: &[u8], src: bool) -> Option<IpAddr> {
    let ip = &find(tuple, CTA_TUPLE_IP)?[4..];
    let (v4, v6) = match src {
        true => (CTA_IP_V4_SRC, CTA_IP_V6_SRC),
        false => (CTA_IP_V4_SRC + 1, CTA_IP_V6_SRC + 1),
    };
    if let Some(a) = find(ip, v4).filter(|a| a.len() >= 8) {
        return Some(IpAddr::from(<[u8; 4]>::try_from(&a[4..8]).ok()?));
    }
    let a = find(ip, v6).filter(|a| a.len() >= 20)?;
    Some(IpAddr::from(<[u8; 16]>::try_from(&a[4..20]).ok()?))
}

/// A tuple's source or destination port (network order on the wire).
fn tuple_port(tuple: &[u8], src: bool) -> Option<u16> {
    let p = &find(tuple, CTA_TUPLE_PROTO)?[4..];
    let kind = if src {
        CTA_PROTO_SRC_PORT
    } else {
        CTA_PROTO_SRC_PORT + 1
    };
    let a = find(p, kind).filter(|a| a.len() >= 6)?;
    Some(u16::from_be_bytes([a[4], a[5]]))
}

/// A tuple's transport protocol number.
fn tuple_proto(tuple: &[u8]) -> Option<u8> {
    let p = &find(tuple, CTA_TUPLE_PROTO)?[4..];
    find(p, CTA_PROTO_NUM).and_then(|a| a.get(4).copied())
}
