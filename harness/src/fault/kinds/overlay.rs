//! The vxlan overlay: FDB and neighbour entries for remote VTEPs, its UDP port.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::{perr, ParamError};
use super::super::kind::{Breakage, Kind, NODE};
use super::super::ops::*;
use super::super::undo::{del_fdb, FdbEntry, Undo};
use crate::error::{nl_error, Error};
use crate::lab::Lab;
use crate::nl::{self as netlink};
use crate::topology::Network;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteVxlanFdb {
    pub node: String,
    pub peer: String,
}

impl Breakage for DeleteVxlanFdb {
    const KIND: Kind = Kind {
        name: "delete-vxlan-fdb",
        params: &[NODE, ("peer", "the remote node")],
        description: "delete the node's vxlan FDB entry for the peer's VTEP",
        component: "overlay",
        example: "delete-vxlan-fdb:node=node1,peer=node2",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, peer } = self;
        c.role("node", node, "node")?;
        c.check_peer(node, peer)?;
        c.vxlan(Self::KIND.name)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node, peer } = self;
        let (dev, entry) = vxlan_fdb_for(lab, node, peer).await?;
        del_fdb(lab, node, &dev, &entry).await?;
        Ok(vec![Undo::ReaddFdb {
            host: node.clone(),
            entries: vec![entry],
        }])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongVxlanFdb {
    pub node: String,
    pub peer: String,
    pub vtep: String,
}

impl Breakage for WrongVxlanFdb {
    const KIND: Kind = Kind {
        name: "wrong-vxlan-fdb",
        params: &[
            NODE,
            ("peer", "the remote node"),
            ("vtep", "the wrong VTEP address"),
        ],
        description: "point the node's vxlan FDB entry for the peer at another VTEP address",
        component: "overlay",
        example: "wrong-vxlan-fdb:node=node1,peer=node2,vtep=203.0.113.99",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, peer, vtep } = self;
        c.role("node", node, "node")?;
        c.check_peer(node, peer)?;
        c.addr("vtep", vtep)?;
        c.vxlan(Self::KIND.name)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node, peer, vtep } = self;
        let vtep: Ipv4Addr = vtep.parse().expect("checked");
        let (dev, entry) = vxlan_fdb_for(lab, node, peer).await?;
        if entry.dst == Some(vtep) {
            return Err(Error::NotApplicable(format!(
                "{node}'s FDB already sends {peer}'s VTEP to {vtep}"
            )));
        }
        del_fdb(lab, node, &dev, &entry).await?;
        let h = lab.host(node)?;
        let ix = h.index(&dev).await?;
        netlink::add_fdb(h.handle(), ix, &entry.mac, vtep)
            .await
            .map_err(|e| nl_error(node, format!("adding an fdb entry on {dev}"), e))?;
        let wrong = FdbEntry {
            dst: Some(vtep),
            ..entry.clone()
        };
        Ok(vec![
            Undo::ReaddFdb {
                host: node.clone(),
                entries: vec![entry],
            },
            Undo::DeleteFdb {
                host: node.clone(),
                entries: vec![wrong],
            },
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteVxlanNeighbour {
    pub node: String,
    pub peer: String,
}

impl Breakage for DeleteVxlanNeighbour {
    const KIND: Kind = Kind {
        name: "delete-vxlan-neighbour",
        params: &[NODE, ("peer", "the remote node")],
        description: "delete the node's vxlan neighbour entry for the peer's VTEP address",
        component: "overlay",
        example: "delete-vxlan-neighbour:node=node1,peer=node2",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, peer } = self;
        c.role("node", node, "node")?;
        c.check_peer(node, peer)?;
        c.vxlan(Self::KIND.name)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node, peer } = self;
        let dev = vxlan_device(lab)?;
        let vtep = node_spec(lab, peer)?.pod_cidr.network();
        let h = lab.host(node)?;
        let l = live_link(h, &dev).await?;
        let n = netlink::neighbours(h.handle())
            .await
            .map_err(|e| nl_error(node, "listing neighbours", e))?
            .into_iter()
            .find(|n| n.index == l.index && n.ip == vtep)
            .ok_or_else(|| {
                Error::NotApplicable(format!("{node} has no neighbour entry for {vtep} on {dev}"))
            })?;
        netlink::del_neighbour(h.handle(), l.index, vtep)
            .await
            .map_err(|e| nl_error(node, format!("deleting neighbour {vtep}"), e))?;
        Ok(vec![Undo::Neighbour {
            host: node.clone(),
            ifname: dev,
            ip: vtep,
            mac: n.mac,
        }])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockVxlanPort {
    pub node: String,
}

impl Breakage for BlockVxlanPort {
    const KIND: Kind = Kind {
        name: "block-vxlan-port",
        params: &[NODE],
        description: "drop VXLAN's UDP port arriving at the node",
        component: "filter",
        example: "block-vxlan-port:node=node1",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        c.role("node", node, "node")?;
        c.vxlan(Self::KIND.name)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { node } = self;
        let port = match &t.cluster.network {
            Network::Vxlan(v) => v.port,
            _ => unreachable!("checked"),
        };
        add_table(
            lab,
            node,
            "inet",
            "hardening",
            &format!(
                "table inet hardening {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  udp dport {port} drop\n }}\n}}\n"
            ),
        )
        .await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanPort {
    pub node: String,
    pub port: u16,
}

impl Breakage for VxlanPort {
    const KIND: Kind = Kind {
        name: "vxlan-port",
        params: &[
            NODE,
            ("port", "the UDP port the node's vxlan device will use"),
        ],
        description:
            "re-create the node's vxlan device on another UDP port than the rest of the overlay",
        component: "overlay",
        example: "vxlan-port:node=node1,port=4789",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, port } = self;
        c.role("node", node, "node")?;
        c.vxlan(Self::KIND.name)?;
        if *port == 0 {
            return Err(perr("port", "port 0 is not a port", "use 1..65535"));
        }
        if let Network::Vxlan(v) = &c.t.cluster.network {
            if v.port == *port {
                return Err(perr(
                    "port",
                    format!("{port} is already the overlay's port: nothing would break"),
                    "pick another port, such as 4789",
                ));
            }
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node, port } = self;
        vxlan_port(lab, node, *port).await
    }
}
