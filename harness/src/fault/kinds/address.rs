//! Addresses: a pod's own, or its gateway's on the bridge.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::ParamError;
use super::super::kind::{Breakage, Kind, NODE, POD};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::lab::Lab;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovePodAddress {
    pub pod: String,
}

impl Breakage for RemovePodAddress {
    const KIND: Kind = Kind {
        name: "remove-pod-address",
        params: &[POD],
        description: "remove the pod's address from its eth0",
        component: "address",
        example: "remove-pod-address:pod=pod-a",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { pod } = self;
        c.role("pod", pod, "pod")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { pod } = self;
        let ip = t.host(pod).map(|h| h.address()).expect("checked");
        remove_address(lab, pod, ip).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveGatewayAddress {
    pub node: String,
}

impl Breakage for RemoveGatewayAddress {
    const KIND: Kind = Kind { name: "remove-gateway-address", params: &[NODE], description: "remove the bridge's address, the pods' gateway (the route to the pod CIDR goes with it)", component: "address", example: "remove-gateway-address:node=node1" };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        c.role("node", node, "node")?;
        c.bridged(Self::KIND.name)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node } = self;
        let gw = node_spec(lab, node)?.gateway;
        remove_address(lab, node, gw).await
    }
}
