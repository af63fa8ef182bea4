//! MTU: pods above the overlay's MTU, fragmentation-needed dropped.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::{perr, ParamError};
use super::super::kind::{Breakage, Kind, NODE};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::lab::Lab;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodMtu {
    pub node: String,
    pub mtu: u32,
}

impl Breakage for PodMtu {
    const KIND: Kind = Kind { name: "pod-mtu", params: &[NODE, ("mtu", "the new MTU")], description: "set the MTU of the node's bridge, pod veths and pods' eth0 (pods at 1500 over a 1450 overlay)", component: "mtu", example: "pod-mtu:node=node1,mtu=1500" };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, mtu } = self;
        c.role("node", node, "node")?;
        if !(68..=65535).contains(mtu) {
            return Err(perr(
                "mtu",
                format!("mtu {mtu} is out of range"),
                "use 68..65535",
            ));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node, mtu } = self;
        pod_mtu(lab, node, *mtu).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockFragNeeded {
    pub node: String,
}

impl Breakage for BlockFragNeeded {
    const KIND: Kind = Kind {
        name: "block-frag-needed",
        params: &[NODE],
        description: "drop ICMP fragmentation-needed at the node (path MTU discovery breaks)",
        component: "mtu",
        example: "block-frag-needed:node=node1",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        c.role("node", node, "node")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node } = self;
        add_table(
            lab,
            node,
            "inet",
            "icmp-filter",
            "table inet icmp-filter {\n chain output {\n  type filter hook output priority 0; policy accept;\n  icmp type destination-unreachable icmp code frag-needed drop\n }\n \
             chain forward {\n  type filter hook forward priority 0; policy accept;\n  icmp type destination-unreachable icmp code frag-needed drop\n }\n}\n",
        )
        .await
    }
}
