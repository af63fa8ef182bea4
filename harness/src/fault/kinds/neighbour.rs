//! Neighbours and the bridge FDB: wrong MACs, misdirected ports.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::ParamError;
use super::super::kind::{Breakage, Kind, NODE, POD};
use super::super::ops::*;
use super::super::undo::{FdbEntry, Undo};
use crate::error::{nl_error, Error};
use crate::lab::Lab;
use crate::nl::{self as netlink};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongNeighbour {
    pub node: String,
    pub pod: String,
}

impl Breakage for WrongNeighbour {
    const KIND: Kind = Kind {
        name: "wrong-neighbour",
        params: &[NODE, POD],
        description:
            "a permanent neighbour entry on the node for the pod's address with a wrong MAC",
        component: "neighbour",
        example: "wrong-neighbour:node=node1,pod=pod-a",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, pod } = self;
        c.role("node", node, "node")?;
        c.role("pod", pod, "pod")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { node, pod } = self;
        let ip = t.host(pod).map(|h| h.address()).expect("checked");
        let h = lab.host(node)?;
        let n = netlink::neighbours(h.handle())
            .await
            .map_err(|e| nl_error(node, "listing neighbours", e))?
            .into_iter()
            .find(|n| n.ip == ip)
            .ok_or_else(|| {
                Error::NotApplicable(format!("{node} has no neighbour entry for {ip}"))
            })?;
        let dev = ifname_of(h, n.index).await?;
        netlink::add_permanent_neighbour(h.handle(), n.index, ip, &BOGUS_MAC)
            .await
            .map_err(|e| nl_error(node, format!("replacing neighbour {ip}"), e))?;
        let previous = if n.state == "permanent" { n.mac } else { None };
        Ok(vec![Undo::Neighbour {
            host: node.clone(),
            ifname: dev,
            ip,
            mac: previous,
        }])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MisdirectFdb {
    pub node: String,
    pub pod: String,
    pub port: String,
}

impl Breakage for MisdirectFdb {
    const KIND: Kind = Kind {
        name: "misdirect-fdb",
        params: &[NODE, POD, ("port", "another port of the node's bridge")],
        description: "a static bridge FDB entry sending the pod's MAC out of the wrong port",
        component: "bridge",
        example: "misdirect-fdb:node=node1,pod=pod-a,port=veth-pod-b",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, pod, port } = self;
        c.role("node", node, "node")?;
        c.role("pod", pod, "pod")?;
        c.bridged("misdirect-fdb")?;
        c.iface(node, port).map_err(|mut e| {
            e.field = "port";
            e
        })
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node, pod, port } = self;
        let (_, own_veth, ifname) = pod_sides(lab, pod)?;
        if *port == own_veth {
            return Err(Error::NotApplicable(format!(
                "{port} is {pod}'s own port: name another port of the bridge"
            )));
        }
        let mac = live_link(lab.host(pod)?, &ifname)
            .await?
            .mac
            .ok_or_else(|| Error::other(format!("{pod} {ifname} has no MAC")))?;
        let h = lab.host(node)?;
        let l = live_link(h, port).await?;
        if l.master.is_none() {
            return Err(Error::NotApplicable(format!(
                "{node} {port} is not a bridge port"
            )));
        }
        netlink::add_bridge_fdb(h.handle(), l.index, &mac)
            .await
            .map_err(|e| nl_error(node, format!("adding a static fdb entry on {port}"), e))?;
        Ok(vec![Undo::DeleteFdb {
            host: node.clone(),
            entries: vec![FdbEntry {
                ifname: port.clone(),
                mac,
                dst: None,
                is_self: false,
            }],
        }])
    }
}
