//! The path the lab's plan intends a packet to take: hop by hop the route each host uses (its
//! interface and gateway), the host that route leads to, and the source translation the plan
//! applies there. Plain data from the plan, no syscall: the diagnosis holds the live routes
//! against it (`diagnose::walk`), and anyone can print it.

use std::net::Ipv4Addr;

use super::plan::{IfaceKind, Plan};
use crate::topology::Topology;

/// One hop of an intended path: `host` sends out of `dev` (via `gateway`, or on the link) to
/// `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedHop {
    pub host: String,
    pub dev: String,
    pub gateway: Option<Ipv4Addr>,
    /// The host the route leads to; None where the plan does not say (an address nobody has).
    pub next: Option<String>,
    /// The source the packet leaves with, where the plan translates it here (a node's
    /// masquerade of its pods' traffic leaving by the uplink).
    pub snat: Option<Ipv4Addr>,
}

/// The hops from the sender to the host that holds the destination, as the plan routes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntendedPath {
    pub hops: Vec<PlannedHop>,
    /// The last hop leads to the host that holds the destination.
    pub arrives: bool,
}

impl IntendedPath {
    /// `pod-a eth0 → node1 eth0 (masquerade to 203.0.113.1) → ext`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for h in &self.hops {
            s.push_str(&format!("{} {}", h.host, h.dev));
            if let Some(a) = h.snat {
                s.push_str(&format!(" (masquerade to {a})"));
            }
            s.push_str(" → ");
        }
        match self.hops.last().and_then(|h| h.next.as_deref()) {
            Some(n) if self.arrives => s.push_str(n),
            _ => s.push_str("(the plan has no way on)"),
        }
        s
    }
}

/// The most hops an intended path follows (a plan never loops; a bound all the same).
const MAX_HOPS: usize = 16;

/// The path the plan intends from `from` to `dst`, with `src` as the packet's source.
pub fn intended_path(
    plan: &Plan,
    t: &Topology,
    from: &str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> IntendedPath {
    let mut hops = Vec::new();
    let mut host = from.to_string();
    let mut src = src;
    for _ in 0..MAX_HOPS {
        let Some(hp) = plan.host(&host) else { break };
        if hp.addresses.iter().any(|(_, n)| n.addr() == dst) {
            return IntendedPath {
                hops,
                arrives: true,
            };
        }
        let Some((dev, gateway)) = hp.route_for(dst) else {
            break;
        };
        let next = planned_next(plan, t, &host, dev, gateway.unwrap_or(dst));
        let snat = hp
            .masquerade
            .as_ref()
            .filter(|m| {
                m.uplink == dev && m.pod_cidr.contains(&src) && !m.cluster_cidr.contains(&dst)
            })
            .and_then(|m| hp.addresses.iter().find(|(d, _)| *d == m.uplink))
            .map(|(_, n)| n.addr());
        src = snat.unwrap_or(src);
        hops.push(PlannedHop {
            host: host.clone(),
            dev: dev.to_string(),
            gateway,
            next: next.clone(),
            snat,
        });
        match next {
            Some(n) => host = n,
            None => break,
        }
    }
    IntendedPath {
        hops,
        arrives: false,
    }
}

/// The host `host`'s route out of `dev` towards `nexthop` leads to: the one the lab gives that
/// address, or the far end of a veth (a routed pod's gateway is nobody's address: its node
/// answers for it).
pub fn planned_next(
    plan: &Plan,
    t: &Topology,
    host: &str,
    dev: &str,
    nexthop: Ipv4Addr,
) -> Option<String> {
    if let Some(h) = t.owner_of(nexthop) {
        return Some(h.name.clone());
    }
    match &plan.host(host)?.iface(dev)?.kind {
        IfaceKind::Veth { peer_host, .. } => Some(peer_host.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Topology {
        let path = format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        crate::topology::parse::load_fixture(std::path::Path::new(&path)).unwrap()
    }

    fn path(t: &Topology, from: &str, to: &str) -> IntendedPath {
        let plan = Plan::from_topology(t);
        let (src, dst) = (
            t.host(from).unwrap().address(),
            t.host(to).unwrap().address(),
        );
        intended_path(&plan, t, from, src, dst)
    }

    #[test]
    fn a_pod_leaves_by_its_gateway_and_is_masqueraded_at_the_uplink() {
        let t = fixture("single-node.toml");
        let p = path(&t, "pod-a", "ext");
        assert!(p.arrives);
        assert_eq!(
            p.describe(),
            "pod-a eth0 → node1 eth0 (masquerade to 203.0.113.1) → ext"
        );
        assert_eq!(p.hops[0].gateway, Some("10.244.1.1".parse().unwrap()));
        // Pod to pod on one bridge: one hop, no translation; ext has no way to a pod.
        assert_eq!(path(&t, "pod-a", "pod-b").describe(), "pod-a eth0 → pod-b");
        let back = path(&t, "ext", "pod-a");
        assert!(!back.arrives, "{}", back.describe());
    }

    #[test]
    fn overlay_and_routed_designs_lead_hop_by_hop() {
        let t = fixture("two-node-vxlan.toml");
        assert_eq!(
            path(&t, "pod-a", "pod-c").describe(),
            "pod-a eth0 → node1 flannel.1 → node2 cni0 → pod-c"
        );
        let t = fixture("two-node-routed.toml");
        let p = path(&t, "pod-a", "pod-c");
        assert!(p.arrives, "{}", p.describe());
        assert_eq!(p.hops[0].next.as_deref(), Some("node1"), "proxy ARP's node");
    }
}
