//! Forwarding sysctls: ip_forward, per-interface forwarding, strict reverse-path filtering, proxy ARP.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::{perr, ParamError};
use super::super::kind::{Breakage, Kind, NODE, POD};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::lab::Lab;
use crate::nl::{self as netlink};
use crate::topology::Network;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableIpForward {
    pub node: String,
}

impl Breakage for DisableIpForward {
    const KIND: Kind = Kind {
        name: "disable-ip-forward",
        params: &[NODE],
        description: "net.ipv4.ip_forward = 0 on the node",
        component: "forwarding",
        example: "disable-ip-forward:node=node1",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        c.role("node", node, "node")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node } = self;
        disable_forwarding(lab, node, crate::topology::Family::V4).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableForwarding {
    pub node: String,
    pub interface: String,
}

impl Breakage for DisableForwarding {
    const KIND: Kind = Kind {
        name: "disable-forwarding",
        params: &[NODE, ("interface", "an interface of the node")],
        description: "net.ipv4.conf.IF.forwarding = 0 on one interface only",
        component: "forwarding",
        example: "disable-forwarding:node=node1,interface=cni0",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, interface } = self;
        c.role("node", node, "node")?;
        c.iface(node, interface)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node, interface } = self;
        set_sysctls(
            lab,
            node,
            vec![(format!("net/ipv4/conf/{interface}/forwarding"), "0".into())],
        )
        .await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrictRpFilter {
    pub node: String,
}

impl Breakage for StrictRpFilter {
    const KIND: Kind = Kind { name: "strict-rp-filter", params: &[NODE], description: "net.ipv4.conf.all.rp_filter = 1: packets whose return route leaves by another interface are dropped", component: "rp-filter", example: "strict-rp-filter:node=node1" };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        c.role("node", node, "node")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node } = self;
        set_sysctls(
            lab,
            node,
            vec![("net.ipv4.conf.all.rp_filter".into(), "1".into())],
        )
        .await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableProxyArp {
    pub pod: String,
}

impl Breakage for DisableProxyArp {
    const KIND: Kind = Kind { name: "disable-proxy-arp", params: &[POD], description: "routed: proxy_arp off on the pod's host veth (and the pod's ARP entry for its gateway flushed)", component: "neighbour", example: "disable-proxy-arp:pod=pod-a" };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { pod } = self;
        c.role("pod", pod, "pod")?;
        if matches!(c.t.cluster.network, Network::Routed { .. }) {
            Ok(())
        } else {
            Err(perr(
                "type",
                format!(
                    "disable-proxy-arp needs a routed fixture; {} is not",
                    c.t.name
                ),
                "use two-node-routed",
            ))
        }
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { pod } = self;
        let (node, veth, ifname) = pod_sides(lab, pod)?;
        let gw = match &t.cluster.network {
            Network::Routed { gateway } => *gateway,
            _ => unreachable!("checked"),
        };
        // Heal turns proxy ARP back on, then makes the pod ask again at once (a failed entry
        // would otherwise answer "unreachable" until its next probe).
        let mut log = vec![Undo::FlushNeighbour {
            host: pod.clone(),
            ifname: ifname.clone(),
            ip: gw,
        }];
        log.extend(
            set_sysctls(
                lab,
                &node,
                vec![(format!("net/ipv4/conf/{veth}/proxy_arp"), "0".into())],
            )
            .await?,
        );
        // The pod must ask now: forget what it learnt about its gateway.
        let p = lab.host(pod)?;
        let ix = p.index(&ifname).await?;
        let _ = netlink::del_neighbour(p.handle(), ix, gw).await;
        Ok(log)
    }
}
