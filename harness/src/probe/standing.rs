//! Echo servers that stay: `netfault serve` keeps them listening on every port the lab's probes
//! use, so `curl`, `nc` and `ping` inside a pinned lab work as in a real cluster.
//!
//! They share the ports with the prober's own listeners (SO_REUSEPORT) and step aside for them:
//! TCP listens on the wildcard address like the prober's, and any of them answers a connection
//! the same way; UDP listens on the wildcard address, which the kernel ranks below the
//! prober's listener bound to the probed address, so a probe's reply is sent (and watched) by
//! the prober. A wildcard UDP server answers from the address the request was sent to
//! (IP_PKTINFO), as the prober's bound socket does.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{SockAddr, Socket};

use super::echo::Servers;
use super::spec::{pairs_of, ProbeSpec};
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::topology::Proto;

/// Every (host, protocol, port) a probe of `specs` reaches a listener at.
pub fn listening_ports(specs: &[ProbeSpec]) -> BTreeSet<(String, Proto, u16)> {
    let mut out = BTreeSet::new();
    for s in specs.iter().filter(|s| s.query.is_none()) {
        if !matches!(s.proto.base(), Proto::Tcp | Proto::Udp) {
            continue;
        }
        for (pod, _, port) in &s.listeners {
            out.insert((pod.clone(), s.proto, *port));
        }
        if let (Some(port), true) = (s.port, s.listens_at_dst()) {
            out.insert((s.to.clone(), s.proto, port));
        }
    }
    out
}

/// Starts the standing servers of every port the lab's matrix probes; returns them (they stop
/// when dropped) and what was left to a server that is not netfault's.
pub async fn serve(lab: &Lab) -> Result<(Servers, Vec<String>)> {
    // A listener per pod and port: a big lab needs more than the default 1024 descriptors.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let mut servers = Servers::default();
    let mut taken = Vec::new();
    for (host, proto, port) in listening_ports(&pairs_of(lab.topology())) {
        let ns = &lab.host(&host)?.ns;
        let sock = match ns.run_async(move || listen(proto, port)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::AddrInUse => {
                taken.push(format!("{host} {proto}/{port}"));
                continue;
            }
            r => r.and_then(|r| r).map_err(|e| {
                Error::io(
                    format!("{host}: a standing {proto} server on port {port}"),
                    e,
                )
            })?,
        };
        servers.adopt(&host, proto, sock)?;
    }
    Ok((servers, taken))
}

fn listen(proto: Proto, port: u16) -> std::io::Result<Socket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let s = super::echo::shared_socket(proto)?;
    let v6 = proto.family() == crate::topology::Family::V6;
    let any: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    s.bind(&SockAddr::from(SocketAddr::new(any, port)))?;
    match (proto.base(), v6) {
        (Proto::Tcp, _) => s.listen(1024)?,
        (_, true) => setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true)?,
        (_, false) => setsockopt(&s, sockopt::Ipv4PacketInfo, &true)?,
    }
    Ok(s)
}
