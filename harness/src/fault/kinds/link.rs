//! Links: veths deleted, set down or taken off their bridge; interfaces and bridges down.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::ParamError;
use super::super::kind::{Breakage, Kind, NODE, POD};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::error::{nl_error, Error};
use crate::lab::Lab;
use crate::nl::{self as netlink};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteVeth {
    pub pod: String,
}

impl Breakage for DeleteVeth {
    const KIND: Kind = Kind {
        name: "delete-veth",
        params: &[POD],
        description: "delete the pod's veth pair (the pod's eth0 and its routes go with it)",
        component: "link",
        example: "delete-veth:pod=pod-a",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { pod } = self;
        c.role("pod", pod, "pod")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { pod } = self;
        delete_veth(lab, pod).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VethDown {
    pub pod: String,
}

impl Breakage for VethDown {
    const KIND: Kind = Kind {
        name: "veth-down",
        params: &[POD],
        description: "set the node side of the pod's veth down",
        component: "link",
        example: "veth-down:pod=pod-a",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { pod } = self;
        c.role("pod", pod, "pod")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { pod } = self;
        let (node, veth, _) = pod_sides(lab, pod)?;
        link_admin(lab, &node, &veth, false).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetachVeth {
    pub pod: String,
}

impl Breakage for DetachVeth {
    const KIND: Kind = Kind {
        name: "detach-veth",
        params: &[POD],
        description: "take the node side of the pod's veth off its bridge",
        component: "bridge",
        example: "detach-veth:pod=pod-a",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { pod } = self;
        c.role("pod", pod, "pod")?;
        c.bridged("detach-veth")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { pod } = self;
        let (node, veth, _) = pod_sides(lab, pod)?;
        let h = lab.host(&node)?;
        let l = live_link(h, &veth).await?;
        let Some(m) = l.master else {
            return Err(Error::NotApplicable(format!(
                "{node} {veth} is on no bridge"
            )));
        };
        let master = ifname_of(h, m).await?;
        netlink::set_master(h.handle(), l.index, None)
            .await
            .map_err(|e| nl_error(&node, format!("detaching {veth}"), e))?;
        // A port joins a bridge with hairpin off: a pod reaching itself through a Service
        // needs it back on (undone backwards: attached first, then hairpin).
        let hairpin = l.details.iter().any(|d| d == "hairpin on");
        let mut undo = Vec::new();
        if hairpin {
            undo.push(Undo::Hairpin {
                host: node.clone(),
                ifname: veth.clone(),
                on: true,
            });
        }
        undo.push(Undo::LinkMaster {
            host: node,
            ifname: veth,
            master: Some(master),
        });
        Ok(undo)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeDown {
    pub node: String,
}

impl Breakage for BridgeDown {
    const KIND: Kind = Kind {
        name: "bridge-down",
        params: &[NODE],
        description: "set the node's pod bridge down",
        component: "link",
        example: "bridge-down:node=node1",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        c.role("node", node, "node")?;
        c.bridged(Self::KIND.name)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node } = self;
        let bridge = node_spec(lab, node)?.bridge.clone();
        link_admin(lab, node, &bridge, false).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDown {
    pub host: String,
    pub interface: String,
}

impl Breakage for LinkDown {
    const KIND: Kind = Kind {
        name: "link-down",
        params: &[
            ("host", "any host"),
            ("interface", "an interface of the host"),
        ],
        description: "set an interface down (a node's uplink: the node is partitioned)",
        component: "link",
        example: "link-down:host=node1,interface=eth0",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { host, interface } = self;
        c.role("host", host, "host")?;
        c.iface(host, interface)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { host, interface } = self;
        link_admin(lab, host, interface, false).await
    }
}
