//! What a probe is and what it saw: the specification of one probe, its observation, and the
//! probes a topology's matrix makes. Plain data; `run` sends them.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::Serialize;

use crate::topology::{Outcome, Proto};

/// One probe: from a host to an address of another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeSpec {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub dst: IpAddr,
    pub port: Option<u16>,
    /// Size of the probe's IP packets (ICMP, UDP: one packet with DF set; TCP: this many bytes
    /// echoed back). None: a small probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// An ICMP echo as large as the sender's path MTU, with DF, resent smaller when a router
    /// answers "fragmentation needed" (as path MTU discovery does): only a path that drops big
    /// packets silently fails it. `size` is then unset.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
    /// Packets (ICMP, UDP) or connections (TCP) to send; above 1 the probe measures loss.
    pub count: u32,
    /// With `count` above 1: the share lost (percent) still called reachable.
    pub tolerance: u8,
    /// Echo listeners the probe needs elsewhere than at `dst` (a Service's endpoints:
    /// pod, address, port).
    #[serde(skip)]
    pub listeners: Vec<(String, IpAddr, u16)>,
    /// A DNS probe's name and the address it should resolve to.
    #[serde(skip)]
    pub query: Option<(String, Ipv4Addr)>,
    /// A fixed source port: a UDP Service's probes reuse one flow (one conntrack entry) run
    /// after run, as a long-lived client would.
    #[serde(skip)]
    pub sport: Option<u16>,
    /// The target port is held by a server that is not netfault's: a TCP connection it accepts,
    /// or any UDP answer, is reachable (what it saw is unknown).
    #[serde(skip)]
    pub foreign: bool,
}

impl ProbeSpec {
    /// Whether the probe's own destination host runs its echo listener: a host probe, not a
    /// Kubernetes target (a Service's listeners are its endpoints, and one without endpoints
    /// has none: kube-proxy rejects it) nor a lookup.
    pub fn listens_at_dst(&self) -> bool {
        self.listeners.is_empty()
            && self.query.is_none()
            && crate::topology::k8s::Target::parse(&self.to).is_none()
    }

    /// A single small probe.
    pub fn new(
        from: &str,
        to: &str,
        proto: Proto,
        dst: impl Into<IpAddr>,
        port: Option<u16>,
    ) -> Self {
        ProbeSpec {
            from: from.to_string(),
            to: to.to_string(),
            proto,
            dst: dst.into(),
            port,
            size: None,
            full: false,
            count: 1,
            tolerance: 0,
            listeners: Vec::new(),
            query: None,
            sport: None,
            foreign: false,
        }
    }
}

/// How a probe ended, and what we learnt on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub outcome: Outcome,
    /// The source address the echo server saw (TCP, UDP): differs from the prober's own
    /// address when something translated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_as: Option<IpAddr>,
    /// What decided the outcome: "ICMP host unreachable from 10.244.1.1", "no route at source".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The router that answered with ICMP net or host unreachable (a routing error, which the
    /// kernel rate-limits per source).
    #[serde(skip)]
    pub routing_error_from: Option<IpAddr>,
    /// The next-hop MTU a "fragmentation needed" / "packet too big" error carried: path MTU
    /// discovery resends at it (IPv6's IPV6_MTU still reads the old route until the next send).
    #[serde(skip)]
    pub next_hop_mtu: Option<usize>,
    /// The host whose echo server answered (`by=` in the echo): for a Service, the endpoint
    /// that served the probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
}

impl Observation {
    pub fn new(outcome: Outcome, detail: impl Into<Option<String>>) -> Self {
        Observation {
            outcome,
            seen_as: None,
            detail: detail.into(),
            routing_error_from: None,
            next_hop_mtu: None,
            served_by: None,
        }
    }

    /// `unsupported` because this kernel has no such socket at all (no SCTP here): nothing
    /// can be decided on this machine, so the cell expects nothing (see `Matrix::new`).
    pub fn kernel_lacks(detail: String) -> Self {
        Observation::new(Outcome::Unsupported, format!("{KERNEL_LACKS}{detail}"))
    }

    pub fn is_kernel_lacking(&self) -> bool {
        kernel_lacked(self.outcome, self.detail.as_deref())
    }
}

/// Whether an outcome and its detail say this kernel could not make the probe.
pub fn kernel_lacked(outcome: Outcome, detail: Option<&str>) -> bool {
    outcome == Outcome::Unsupported && detail.is_some_and(|d| d.starts_with(KERNEL_LACKS))
}

/// How the detail of a probe this kernel cannot make begins.
pub const KERNEL_LACKS: &str = "not decidable here: ";

/// The detail of a probe answered by a server that is not netfault's.
pub const FOREIGN_SERVER: &str =
    "answered by a server that is not netfault's (probed as it is: what it saw is unknown)";

/// Said of a UDP probe a server that is not netfault's left unanswered.
pub const FOREIGN_SILENT: &str =
    "a server that is not netfault's holds the port: it may not answer netfault's probe";

/// How the detail of a probe decided by a drop the kernel showed begins.
pub const SEEN_DROPPED: &str = "seen dropped: ";

/// The first payload line of every probe, and the prefix of every echo.
pub(crate) const PROBE_LINE: &str = "netfault-probe";
pub(crate) const ECHO_PREFIX: &str = "netfault-echo seen=";
/// ICMP and UDP probes are sent again at this interval until answered or timed out.
pub(crate) const RESEND: Duration = Duration::from_millis(200);

/// Every probe a topology's matrix makes: its host pairs (`Topology::coverage`) for every
/// protocol, then targets.
pub fn pairs_of(t: &crate::topology::Topology) -> Vec<ProbeSpec> {
    let mut v = Vec::new();
    for (a, b) in t.coverage().pairs {
        let (a, b) = (&t.hosts[a], &t.hosts[b]);
        for &proto in &t.probe.protocols {
            // An IPv6 probe needs an IPv6 address at both ends.
            let (Some(dst), Some(_)) = (b.address_of(proto.family()), a.address_of(proto.family()))
            else {
                continue;
            };
            v.push(ProbeSpec {
                from: a.name.clone(),
                to: b.name.clone(),
                proto,
                dst,
                port: t.probe.port(proto),
                size: t.probe.size(proto),
                full: t.full_size_ping(&a.name, &b.name, proto),
                count: t.probe.count,
                tolerance: t.probe.loss_tolerance,
                listeners: Vec::new(),
                query: None,
                sport: None,
                foreign: false,
            });
        }
    }
    v.extend(target_probes(t));
    v
}

/// Every probe of the fixture's Kubernetes targets (Services, NodePorts, names).
pub fn target_probes(t: &crate::topology::Topology) -> Vec<ProbeSpec> {
    let mut v = Vec::new();
    let families = [crate::topology::Family::V4, crate::topology::Family::V6];
    for (i, target) in t.target_names().into_iter().enumerate() {
        for a in &t.hosts {
            for tp in families
                .iter()
                .filter_map(|f| t.target_probe(&a.name, &target, *f))
            {
                let udp = tp.proto.base() == Proto::Udp;
                v.push(ProbeSpec {
                    listeners: tp.listeners,
                    query: tp.query,
                    sport: udp.then_some(UDP_SERVICE_SPORT + i as u16),
                    foreign: false,
                    ..ProbeSpec::new(&a.name, &target, tp.proto, tp.dst, tp.port)
                });
            }
        }
    }
    v
}

/// UDP probes of a Service's target number `i` (in `target_names` order) come from this port
/// plus `i`.
pub const UDP_SERVICE_SPORT: u16 = 40000;
