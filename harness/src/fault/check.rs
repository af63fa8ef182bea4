//! The words a fault's check is written in: a fixture's hosts by role, their interfaces, what
//! the fixture's network has, addresses and networks. Each kind's check (under `kinds/`) uses
//! them; the errors say which field is wrong and what would be right.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub use crate::topology::param::{perr, ParamError};
use crate::topology::{Network, Topology};

/// A topology to check fault parameters against.
pub struct Checker<'a> {
    pub t: &'a Topology,
}

impl Checker<'_> {
    pub fn role(
        &self,
        field: &'static str,
        name: &str,
        want: &str,
    ) -> std::result::Result<(), ParamError> {
        let t = self.t;
        let of_role: Vec<&str> = t
            .hosts
            .iter()
            .filter(|h| want == "host" || h.role_name() == want)
            .map(|h| h.name.as_str())
            .collect();
        let near = crate::topology::did_you_mean(name, of_role.iter().copied());
        let help = match (of_role.is_empty(), near) {
            (true, _) => format!("the fixture {} has no {want}", t.name),
            (false, Some(n)) => format!(
                "did you mean \"{n}\"? ({want}s in {}: {})",
                t.name,
                of_role.join(", ")
            ),
            (false, None) => format!("{want}s in {}: {}", t.name, of_role.join(", ")),
        };
        match t.host(name) {
            None => Err(perr(field, format!("unknown host \"{name}\""), help)),
            Some(h) if want != "host" && h.role_name() != want => {
                let an = if h.role_name() == "external" {
                    "an"
                } else {
                    "a"
                };
                Err(perr(
                    field,
                    format!("{name} is {an} {}, not a {want}", h.role_name()),
                    help,
                ))
            }
            Some(_) => Ok(()),
        }
    }

    pub fn iface(&self, host: &str, name: &str) -> std::result::Result<(), ParamError> {
        let t = self.t;
        let plan = crate::lab::Plan::from_topology(t);
        let names: Vec<String> = plan
            .host(host)
            .map(|p| p.ifaces.iter().map(|i| i.name.clone()).collect())
            .unwrap_or_default();
        if names.iter().any(|n| n == name) {
            Ok(())
        } else {
            Err(perr(
                "interface",
                format!("{host} has no interface \"{name}\""),
                format!("interfaces of {host}: {}", names.join(", ")),
            ))
        }
    }

    pub fn vxlan(&self, what: &str) -> std::result::Result<(), ParamError> {
        let t = self.t;
        if matches!(t.cluster.network, Network::Vxlan(_)) {
            Ok(())
        } else {
            Err(perr(
                "type",
                format!(
                    "{what} needs a vxlan fixture; {} uses network \"{}\"",
                    t.name,
                    t.cluster.network.name()
                ),
                "use a fixture with [cluster] network = \"vxlan\", such as two-node-vxlan",
            ))
        }
    }

    pub fn bridged(&self, what: &str) -> std::result::Result<(), ParamError> {
        let t = self.t;
        if t.has_bridge() {
            Ok(())
        } else {
            Err(perr(
                "type",
                format!("{what} needs pods on a bridge; {} is routed", t.name),
                "use a bridged fixture",
            ))
        }
    }

    pub fn check_peer(&self, node: &str, peer: &str) -> std::result::Result<(), ParamError> {
        let _t = self.t;
        self.role("peer", peer, "node")?;
        if node == peer {
            return Err(perr(
                "peer",
                "the peer is the node itself",
                "name another node",
            ));
        }
        Ok(())
    }

    pub fn cidr(&self, field: &'static str, s: &str) -> std::result::Result<Ipv4Net, ParamError> {
        let _t = self.t;
        s.parse::<Ipv4Net>().map(|n| n.trunc()).map_err(|_| {
            perr(
                field,
                format!("\"{s}\" is not a CIDR"),
                "write a network such as \"10.244.2.0/24\"",
            )
        })
    }

    pub fn addr(&self, field: &'static str, s: &str) -> std::result::Result<Ipv4Addr, ParamError> {
        let _t = self.t;
        s.parse::<Ipv4Addr>().map_err(|_| {
            perr(
                field,
                format!("\"{s}\" is not an IPv4 address"),
                "write an address such as \"203.0.113.2\"",
            )
        })
    }
}
