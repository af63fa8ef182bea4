//! Teaching a pod bridge where each pod is before the first probe.
//!
//! Why: netfault's pods never ARP (their neighbours are static), so until a pod sends, its
//! bridge does not know the pod's port and floods every frame for it to every port. N pods
//! probed at once then cost N² frame copies, which overflow the softirq backlog at ~1,000 pods
//! and drop probes. One frame from each pod to its gateway's MAC — unicast, so the bridge
//! learns the source port and floods nothing — prevents that. The entry it makes is dynamic
//! (state captures leave dynamic entries out) and ages out like any learned one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::nl::Mac;

/// IEEE 802 local experimental ethertype: the node's stack drops the frame without a counter.
const ETH_P_HELLO: u16 = 0x88b5;

/// Sends one minimal frame from `src` to `dst` out of interface `ifindex`, in the calling
/// thread's namespace.
pub fn hello(ifindex: u32, src: Mac, dst: Mac) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame[12..14].copy_from_slice(&ETH_P_HELLO.to_be_bytes());
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_HELLO.to_be();
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&dst);
    // SAFETY: `frame` and `to` outlive the call; the lengths are theirs.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
