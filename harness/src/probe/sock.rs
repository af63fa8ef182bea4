//! Socket plumbing the probes share: registering with tokio, non-blocking receives, the
//! error queue of IP_RECVERR, echo replies.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::classify::classify_ee;
use super::spec::{Observation, ECHO_PREFIX};

/// Registers a probe socket with tokio for readability and errors (queued ICMP errors raise
/// only EPOLLERR, which plain readability would miss).
pub(crate) fn register(sock: Socket) -> std::io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns a valid fd, which nothing closes or replaces while `AsyncFd` owns it.
    unsafe {
        AsyncFd::register_with_interest(sock, Interest::READABLE | Interest::ERROR)
            .map_err(|e| e.into_parts().1)
    }
}

pub(crate) fn parse_echo(b: &[u8]) -> Option<Ipv4Addr> {
    let s = std::str::from_utf8(b).ok()?;
    let rest = s.strip_prefix(ECHO_PREFIX)?;
    rest.split_whitespace().next()?.parse().ok()
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

/// The first queued ICMP error on a socket with IP_RECVERR, classified.
pub(crate) fn errqueue(s: &Socket) -> Option<Observation> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn};
    let mut data = [0u8; 512];
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in);
    let msg = recvmsg::<SockaddrIn>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::Ipv4RecvErr(ee, from) = c {
            let offender = from.map(|a| Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)));
            return Some(classify_ee(&ee, offender));
        }
    }
    None
}
