//! Echo servers the prober opens in target namespaces for the length of one probe run.
//!
//! TCP: read the probe line, answer `netfault-echo seen=<peer address> by=<host>` (the host that
//! answered: which endpoint served a Service's probe), then echo what follows
//! (an HTTP request line instead gets that line as a `200 OK` answer, so `curl` works).
//! UDP: answer every datagram with `netfault-echo seen=<peer address> by=<host>` and the datagram, from the
//! address it was sent to. Listeners use SO_REUSEPORT so two probers (and the standing servers
//! of `netfault serve`) can share a pinned lab. A port held by a server that is not netfault's
//! (without SO_REUSEPORT) is left to it: its probes take what it does as the answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spec::ECHO_PREFIX;
use crate::dropwatch::Book;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::topology::Proto;

/// Running echo servers; dropping this stops them and closes their sockets.
#[derive(Default)]
pub struct Servers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Servers {
    /// Stops every server and waits until their sockets are closed. Dropping only asks the
    /// runtime to cancel them later: a listener still open then shares its port
    /// (SO_REUSEPORT) with the next run's, takes some of its connections, and resets them
    /// when it closes.
    pub(crate) async fn stop(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
    }

    /// Starts an echo server; false when a server that is not netfault's holds the port (it
    /// is probed as it is).
    pub(crate) async fn start(
        &mut self,
        ns: &Netns,
        host: &str,
        proto: Proto,
        ip: IpAddr,
        port: u16,
        book: Option<Arc<Book>>,
    ) -> Result<bool> {
        let sock = match ns.run_async(move || listen(proto, ip, port)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::AddrInUse => return Ok(false),
            // A kernel without the protocol (SCTP here): the probe's own socket fails the
            // same way and says `unsupported`.
            Ok(Err(e))
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT)
                ) =>
            {
                return Ok(true)
            }
            r => r.and_then(|r| r).map_err(|e| {
                Error::io(
                    format!("{host}: opening a {proto} echo listener on {ip}:{port}"),
                    e,
                )
            })?,
        };
        let task = match proto.base() {
            Proto::Tcp | Proto::Sctp => {
                let l = tokio::net::TcpListener::from_std(sock.into())
                    .map_err(|e| Error::io(format!("{host}: tcp listener"), e))?;
                tokio::spawn(tcp_server(l, host.into()))
            }
            Proto::Udp => {
                let u = tokio::net::UdpSocket::from_std(sock.into())
                    .map_err(|e| Error::io(format!("{host}: udp listener"), e))?;
                tokio::spawn(udp_server(u, port, book, host.into()))
            }
            _ => return Ok(true),
        };
        self.tasks.push(task);
        Ok(true)
    }
}

impl Servers {
    /// Serves on a standing listener (see `standing`).
    pub(crate) fn adopt(&mut self, host: &str, proto: Proto, sock: Socket) -> Result<()> {
        let task = match proto {
            Proto::Tcp | Proto::Tcp6 => {
                let l = tokio::net::TcpListener::from_std(sock.into())
                    .map_err(|e| Error::io("a standing tcp listener", e))?;
                tokio::spawn(tcp_server(l, host.into()))
            }
            _ => {
                let u = tokio::net::UdpSocket::from_std(sock.into())
                    .map_err(|e| Error::io("a standing udp listener", e))?;
                tokio::spawn(standing_udp_server(u, host.into()))
            }
        };
        self.tasks.push(task);
        Ok(())
    }
}

/// A non-blocking TCP or UDP socket that shares its port (SO_REUSEADDR, SO_REUSEPORT) with
/// the other echo servers of the lab. An IPv6 one is IPv6-only: the IPv4 twin has its own.
pub(super) fn shared_socket(proto: Proto) -> std::io::Result<Socket> {
    let v6 = proto.family() == crate::topology::Family::V6;
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = match proto.base() {
        Proto::Tcp => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
        Proto::Sctp => Socket::new(domain, Type::STREAM, Some(super::sock::sctp()))?,
        _ => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?,
    };
    if v6 {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn listen(proto: Proto, ip: IpAddr, port: u16) -> std::io::Result<Socket> {
    let s = shared_socket(proto)?;
    if proto.is_stream() {
        // Any local address: also answers DNAT'd connections and probes to other addresses.
        let any: IpAddr = match ip {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        s.bind(&SockAddr::from(SocketAddr::new(any, port)))?;
        s.listen(1024)?;
    } else {
        // Bound to the probed address so replies leave from it; freebind in case a fault removed
        // it (an IPv6 address is also still "tentative" while DAD runs, where DAD is on).
        match ip {
            IpAddr::V4(_) => s.set_freebind_v4(true)?,
            IpAddr::V6(_) => s.set_freebind_v6(true)?,
        }
        s.bind(&SockAddr::from(SocketAddr::new(ip, port)))?;
    }
    Ok(s)
}

async fn tcp_server(l: tokio::net::TcpListener, host: Arc<str>) {
    loop {
        let Ok((mut s, peer)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let host = host.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut first = Vec::new();
            // The probe line first.
            loop {
                let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await
                else {
                    return;
                };
                if n == 0 {
                    return;
                }
                first.extend_from_slice(&buf[..n]);
                if let Some(pos) = first.iter().position(|&b| b == b'\n') {
                    let ip = peer.ip();
                    // `curl` inside a lab: an HTTP request gets an HTTP answer, then close.
                    if is_http_request(&first[..pos]) {
                        let _ = http_answer(&mut s, &mut first, ip, &host).await;
                        return;
                    }
                    if s.write_all(format!("{ECHO_PREFIX}{ip} by={host}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if s.write_all(&first[pos + 1..]).await.is_err() {
                        return;
                    }
                    break;
                }
                if first.len() > 4096 {
                    return;
                }
            }
            // Then echo the rest until the client closes.
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await
            {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Whether a line is an HTTP/1.x request line (`GET / HTTP/1.1`).
fn is_http_request(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let method = parts.next().unwrap_or("");
    let version = parts.nth(1).unwrap_or("");
    method.len() >= 3
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && version.starts_with("HTTP/1.")
}

/// Reads the request's headers (up to a blank line) and answers `200 OK` with the echo line.
async fn http_answer(
    s: &mut tokio::net::TcpStream,
    got: &mut Vec<u8>,
    seen: IpAddr,
    host: &str,
) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && !got.windows(2).any(|w| w == b"\n\n") {
        if got.len() > 16 * 1024 {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let body = format!("{ECHO_PREFIX}{seen} by={host}\n");
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}

/// A reply that cannot be sent (no route back, a filter on the way out) is booked to its probe.
async fn udp_server(u: tokio::net::UdpSocket, port: u16, book: Option<Arc<Book>>, host: Arc<str>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = u.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let mut reply = format!("{ECHO_PREFIX}{} by={host} ", peer.ip()).into_bytes();
        // The request back, cut so a large probe's reply is as large as the probe itself.
        let keep = if n > reply.len() + 64 {
            n - reply.len()
        } else {
            n
        };
        reply.extend_from_slice(&buf[..keep]);
        let Some(b) = &book else {
            let _ = u.send_to(&reply, peer).await;
            continue;
        };
        // Sent without waiting (the socket takes a datagram at once, or it is dropped), so
        // that the send is one window.
        let request = &buf[..n];
        if let Err(e) = b.reply_window(peer, port, request, || u.try_send_to(&reply, peer)) {
            if e.kind() != std::io::ErrorKind::WouldBlock {
                b.reply_failed(peer, port, request, &e);
            }
        }
    }
}

/// A standing UDP server (wildcard address, either family): answers each datagram as the
/// prober's UDP echo does, from the address it was sent to (IP_PKTINFO, IPV6_PKTINFO).
async fn standing_udp_server(u: tokio::net::UdpSocket, host: Arc<str>) {
    use nix::sys::socket::SockaddrStorage;
    use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    let fd = u.as_raw_fd();
    let mut buf = vec![0u8; 65536];
    let mut space = nix::cmsg_space!(libc::in6_pktinfo);
    loop {
        let got = u
            .async_io(tokio::io::Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let m =
                    recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut space), MsgFlags::empty())
                        .map_err(std::io::Error::from)?;
                let info = m.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::Ipv4PacketInfo(i) => Some(Ok(i)),
                        ControlMessageOwned::Ipv6PacketInfo(i) => Some(Err(i)),
                        _ => None,
                    })
                });
                Ok((m.bytes, m.address, info))
            })
            .await;
        let Ok((n, Some(peer), Some(info))) = got else {
            continue;
        };
        let peer_ip: Option<std::net::IpAddr> =
            match (peer.as_sockaddr_in(), peer.as_sockaddr_in6()) {
                (Some(a), _) => Some(a.ip().into()),
                (_, Some(a)) => Some(a.ip().into()),
                _ => None,
            };
        let Some(peer_ip) = peer_ip else { continue };
        let mut reply = format!("{ECHO_PREFIX}{peer_ip} by={host} ").into_bytes();
        reply.extend_from_slice(&buf[..n]);
        // The reply leaves from the address the request was sent to, on any interface.
        let v4 = info.ok().map(|i| libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: i.ipi_addr,
            ipi_addr: i.ipi_addr,
        });
        let v6 = info.err().map(|i| libc::in6_pktinfo {
            ipi6_addr: i.ipi6_addr,
            ipi6_ifindex: 0,
        });
        let cmsg = match (&v4, &v6) {
            (Some(a), _) => ControlMessage::Ipv4PacketInfo(a),
            (_, Some(a)) => ControlMessage::Ipv6PacketInfo(a),
            _ => continue,
        };
        let iov = [std::io::IoSlice::new(&reply)];
        let _ = sendmsg(fd, &iov, &[cmsg], MsgFlags::MSG_DONTWAIT, Some(&peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_request_lines_are_told_from_probe_lines() {
        assert!(is_http_request(b"GET / HTTP/1.1\r"));
        assert!(is_http_request(b"HEAD /x HTTP/1.0"));
        assert!(!is_http_request(b"netfault-probe 12"));
        assert!(!is_http_request(b"get / HTTP/1.1"));
        assert!(!is_http_request(b"GET /"));
    }
}
