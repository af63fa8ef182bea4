//! Echo servers the prober opens in target namespaces for the length of one probe run.
//!
//! TCP: read the probe line, answer `netfault-echo seen=<peer address>`, then echo what follows.
//! UDP: answer every datagram with `netfault-echo seen=<peer address>` and the datagram, from the
//! address it was sent to. Listeners use SO_REUSEPORT so two probers can share a pinned lab.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
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
pub(crate) struct Servers {
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
    pub(crate) async fn start(
        &mut self,
        ns: &Netns,
        host: &str,
        proto: Proto,
        ip: Ipv4Addr,
        port: u16,
        book: Option<Arc<Book>>,
    ) -> Result<()> {
        let sock = ns
            .run_async(move || listen(proto, ip, port))
            .await
            .and_then(|r| r)
            .map_err(|e| {
                Error::io(
                    format!("{host}: opening a {proto} echo listener on {ip}:{port}"),
                    e,
                )
            })?;
        let task = match proto {
            Proto::Tcp => {
                let l = tokio::net::TcpListener::from_std(sock.into())
                    .map_err(|e| Error::io(format!("{host}: tcp listener"), e))?;
                tokio::spawn(tcp_server(l))
            }
            Proto::Udp => {
                let u = tokio::net::UdpSocket::from_std(sock.into())
                    .map_err(|e| Error::io(format!("{host}: udp listener"), e))?;
                tokio::spawn(udp_server(u, port, book))
            }
            Proto::Icmp | Proto::Dns => return Ok(()),
        };
        self.tasks.push(task);
        Ok(())
    }
}

fn listen(proto: Proto, ip: Ipv4Addr, port: u16) -> std::io::Result<Socket> {
    let s = match proto {
        Proto::Tcp => Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?,
        _ => Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?,
    };
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    if proto == Proto::Tcp {
        // Any local address: also answers DNAT'd connections and probes to other addresses.
        s.bind(&SockAddr::from(SocketAddrV4::new(
            Ipv4Addr::UNSPECIFIED,
            port,
        )))?;
        s.listen(1024)?;
    } else {
        // Bound to the probed address so replies leave from it; freebind in case a fault removed it.
        s.set_freebind_v4(true)?;
        s.bind(&SockAddr::from(SocketAddrV4::new(ip, port)))?;
    }
    Ok(s)
}

async fn tcp_server(l: tokio::net::TcpListener) {
    loop {
        let Ok((mut s, peer)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
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
                    let ip = match peer {
                        SocketAddr::V4(a) => *a.ip(),
                        SocketAddr::V6(_) => return,
                    };
                    if s.write_all(format!("{ECHO_PREFIX}{ip}\n").as_bytes())
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

/// A reply that cannot be sent (no route back, a filter on the way out) is booked to its probe.
async fn udp_server(u: tokio::net::UdpSocket, port: u16, book: Option<Arc<Book>>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = u.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let SocketAddr::V4(p) = peer else { continue };
        let mut reply = format!("{ECHO_PREFIX}{} ", p.ip()).into_bytes();
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
        if let Err(e) = b.reply_window(p, port, request, || u.try_send_to(&reply, peer)) {
            if e.kind() != std::io::ErrorKind::WouldBlock {
                b.reply_failed(p, port, request, &e);
            }
        }
    }
}
