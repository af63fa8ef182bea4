//! The connection tracking table over ctnetlink (no `conntrack` binary needed).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE: a delete naming no tuple flushes.
const CT_DELETE: u16 = (1 << 8) | 2;

/// Forgets every IPv4 connection of the calling thread's namespace (`conntrack -F`), as
/// kube-proxy does after changing a Service: flows keep no NAT decision made before.
pub fn flush() -> io::Result<()> {
    // SAFETY: plain socket calls on a descriptor this function owns.
    let sock = unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    // nlmsghdr (16 bytes) + nfgenmsg (family, version 0, res_id 0).
    let mut msg = Vec::with_capacity(20);
    msg.extend_from_slice(&20u32.to_ne_bytes());
    msg.extend_from_slice(&CT_DELETE.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
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
    // The ack: an nlmsgerr whose error is 0, or -errno.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n >= 20 {
        let err = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
        // ENOENT: the table was empty already.
        if err < 0 && -err != libc::ENOENT {
            return Err(io::Error::from_raw_os_error(-err));
        }
    }
    Ok(())
}
