//! Socket plumbing the probes share: registering with tokio, non-blocking receives, the
//! error queue of IP_RECVERR, echo replies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::classify::{classify_ee, classify_errno};
use super::spec::{Observation, ECHO_PREFIX};
use std::time::Duration;

/// Registers a probe socket with tokio for readability and errors (queued ICMP errors raise
/// only EPOLLERR, which plain readability would miss).
pub(crate) fn register(sock: Socket) -> std::io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns a valid fd, which nothing closes or replaces while `AsyncFd` owns it.
    unsafe {
        AsyncFd::register_with_interest(sock, Interest::READABLE | Interest::ERROR)
            .map_err(|e| e.into_parts().1)
    }
}

/// Whether device `dev` of the socket's namespace is up with a carrier (`IFF_RUNNING`). A
/// device without one swaps its queue for the kernel's discard-all queue. True where the
/// device cannot be asked about: that decides nothing.
pub(crate) fn can_send(sock: RawFd, dev: &str) -> bool {
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        flags: libc::c_short,
        _rest: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _rest: [0; 22],
    };
    if dev.len() >= libc::IFNAMSIZ {
        return true;
    }
    for (d, s) in req.name.iter_mut().zip(dev.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: a valid fd, and a pointer to an ifreq-sized struct the call fills.
    let r = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) };
    let want = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    r != 0 || req.flags & want == want
}

pub(crate) fn parse_echo(b: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(b).ok()?;
    let rest = s.strip_prefix(ECHO_PREFIX)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The host an echo names as the one that answered (`by=HOST`, the word after the address).
pub(crate) fn echo_server(b: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(b.get(..b.len().min(512))?);
    let rest = s.strip_prefix(ECHO_PREFIX)?;
    let by = rest.split_whitespace().nth(1)?.strip_prefix("by=")?;
    Some(by.to_string())
}

pub(crate) fn recv(s: &Socket, buf: &mut [u8]) -> std::io::Result<usize> {
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What a failed send on a datagram probe socket (not EWOULDBLOCK) comes to.
pub(crate) enum SendFailed {
    /// The path's answer: a queued ICMP error, no route, a firewall's EPERM, ...
    Answer(Observation),
    /// ENOBUFS: a local queue (a full qdisc, a neighbour queue, a veth whose peer could not
    /// take the frame) dropped this one packet. Under load the next send may pass, so it
    /// decides nothing before the deadline; it is what the probe saw if nothing else came.
    Dropped(Observation),
}

/// After a local drop the next send goes sooner than `RESEND`: a queue that was full at one
/// instant has room a few milliseconds later.
pub(crate) const AFTER_LOCAL_DROP: Duration = Duration::from_millis(20);

pub(crate) fn send_failed(s: &Socket, e: &std::io::Error) -> SendFailed {
    if let Some(o) = errqueue(s) {
        return SendFailed::Answer(o);
    }
    let o = classify_errno(e, "send");
    if e.raw_os_error() == Some(libc::ENOBUFS) {
        SendFailed::Dropped(o)
    } else {
        SendFailed::Answer(o)
    }
}

/// The first queued ICMP (ICMPv6) error on a socket with IP_RECVERR (IPV6_RECVERR), classified.
pub(crate) fn errqueue(s: &Socket) -> Option<Observation> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    let mut data = [0u8; 512];
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
    let msg = recvmsg::<SockaddrStorage>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        match c {
            ControlMessageOwned::Ipv4RecvErr(ee, from) => {
                let offender = from.map(|a| Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)));
                return Some(classify_ee(&ee, offender.map(IpAddr::from)));
            }
            ControlMessageOwned::Ipv6RecvErr(ee, from) => {
                let offender = from.map(|a| Ipv6Addr::from(a.sin6_addr.s6_addr));
                return Some(classify_ee(&ee, offender.map(IpAddr::from)));
            }
            _ => {}
        }
    }
    None
}

/// IPPROTO_SCTP, which socket2 does not name.
pub(crate) fn sctp() -> socket2::Protocol {
    socket2::Protocol::from(libc::IPPROTO_SCTP)
}
