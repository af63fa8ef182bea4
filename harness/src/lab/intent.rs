//! What the lab's plan intends a server to see as a probe's source: the sender's own address,
//! or, for a pod's packet that leaves its node by the masqueraded uplink, the node's. The probe
//! layer compares it with the source the echo server saw ("seen as").

use super::plan::Plan;
use crate::topology::Topology;

/// The host whose planned addresses a server may see as the source of `from`'s probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Intended {
    /// The sender's own address.
    Own(String),
    /// Masqueraded by this node (its uplink's address).
    MasqueradedBy(String),
}

impl Intended {
    pub fn host(&self) -> &str {
        match self {
            Intended::Own(h) | Intended::MasqueradedBy(h) => h,
        }
    }

    /// Whether the plan gives `seen` to the intended host.
    pub fn accepts(&self, plan: &Plan, seen: std::net::IpAddr) -> bool {
        plan.host(self.host()).is_some_and(|h| match seen {
            std::net::IpAddr::V4(a) => h.addresses.iter().any(|(_, n)| n.addr() == a),
            std::net::IpAddr::V6(a) => h.v6.addresses.iter().any(|(_, n)| n.addr() == a),
        })
    }

    pub fn describe(&self, from: &str) -> String {
        match self {
            Intended::Own(h) => format!("{h}'s own address"),
            Intended::MasqueradedBy(n) => format!("{from} masqueraded to {n}'s address"),
        }
    }
}

/// The source the plan intends `to` to see from `from`; None where the plan does not say (a
/// CNI plugin builds the pod side; a target that is not a host).
pub fn intended_source(plan: &Plan, t: &Topology, from: &str, to: &str) -> Option<Intended> {
    if t.cni.is_some() {
        return None;
    }
    let dst = t.host(to)?.address();
    let Some((_, pod)) = t.pods().find(|(name, _)| *name == from) else {
        return t.host(from).map(|_| Intended::Own(from.to_string()));
    };
    let own = Some(Intended::Own(from.to_string()));
    let node = plan.host(&pod.node)?;
    let Some(m) = &node.masquerade else {
        return own;
    };
    let local = node.addresses.iter().any(|(_, n)| n.addr() == dst);
    if !m.pod_cidr.contains(&pod.ip) || m.cluster_cidr.contains(&dst) || local {
        return own;
    }
    match node.egress_dev(dst)? {
        dev if dev == m.uplink => Some(Intended::MasqueradedBy(pod.node.clone())),
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single_node() -> Topology {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/single-node.toml");
        crate::topology::parse::load_fixture(std::path::Path::new(path)).unwrap()
    }

    #[test]
    fn pods_are_masqueraded_leaving_the_cluster_and_seen_as_themselves_inside_it() {
        let t = single_node();
        let plan = Plan::from_topology(&t);
        let i = |from: &str, to: &str| intended_source(&plan, &t, from, to);
        assert_eq!(
            i("pod-a", "ext"),
            Some(Intended::MasqueradedBy("node1".into()))
        );
        assert_eq!(i("pod-a", "pod-b"), Some(Intended::Own("pod-a".into())));
        // The node's own address is delivered locally: no postrouting, no masquerade.
        assert_eq!(i("pod-a", "node1"), Some(Intended::Own("pod-a".into())));
        assert_eq!(i("ext", "pod-a"), Some(Intended::Own("ext".into())));
        assert_eq!(i("node1", "ext"), Some(Intended::Own("node1".into())));
        let masq = i("pod-a", "ext").unwrap();
        let node1_uplink: std::net::IpAddr = "203.0.113.1".parse().unwrap();
        assert!(masq.accepts(&plan, node1_uplink));
        assert!(!masq.accepts(&plan, "10.244.1.2".parse().unwrap()));
        assert!(!Intended::Own("pod-a".into()).accepts(&plan, node1_uplink));
    }
}
