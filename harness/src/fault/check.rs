//! Checking a fault's parameters against a topology before anything is touched.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::topology::{Network, Proto, Topology};

use super::k8s;
use super::kind::*;

impl Fault {
    /// Checks the fault's parameters against a topology: names exist and have the right role,
    /// interfaces exist on their host, numbers are in range, the fixture has what the fault needs.
    pub fn check(&self, t: &Topology) -> std::result::Result<(), ParamError> {
        if k8s::is_k8s(self) {
            return k8s::check(self, t);
        }

        let role =
            |field: &'static str, name: &str, want: &str| -> std::result::Result<(), ParamError> {
                let of_role: Vec<&str> = t
                    .hosts
                    .iter()
                    .filter(|h| want == "host" || h.role_name() == want)
                    .map(|h| h.name.as_str())
                    .collect();
                let help = if of_role.is_empty() {
                    format!("the fixture {} has no {want}", t.name)
                } else {
                    format!("{want}s in {}: {}", t.name, of_role.join(", "))
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
            };
        let iface = |host: &str, name: &str| -> std::result::Result<(), ParamError> {
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
        };
        let vxlan = |what: &str| -> std::result::Result<(), ParamError> {
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
        };
        let bridged = |what: &str| -> std::result::Result<(), ParamError> {
            if t.has_bridge() {
                Ok(())
            } else {
                Err(perr(
                    "type",
                    format!("{what} needs pods on a bridge; {} is routed", t.name),
                    "use a bridged fixture",
                ))
            }
        };
        let check_peer = |node: &str, peer: &str| -> std::result::Result<(), ParamError> {
            role("peer", peer, "node")?;
            if node == peer {
                return Err(perr(
                    "peer",
                    "the peer is the node itself",
                    "name another node",
                ));
            }
            Ok(())
        };
        let cidr = |field: &'static str, s: &str| -> std::result::Result<Ipv4Net, ParamError> {
            s.parse::<Ipv4Net>().map(|n| n.trunc()).map_err(|_| {
                perr(
                    field,
                    format!("\"{s}\" is not a CIDR"),
                    "write a network such as \"10.244.2.0/24\"",
                )
            })
        };
        let addr = |field: &'static str, s: &str| -> std::result::Result<Ipv4Addr, ParamError> {
            s.parse::<Ipv4Addr>().map_err(|_| {
                perr(
                    field,
                    format!("\"{s}\" is not an IPv4 address"),
                    "write an address such as \"203.0.113.2\"",
                )
            })
        };
        match self {
            Fault::DeleteVeth { pod }
            | Fault::VethDown { pod }
            | Fault::DeletePodRoute { pod }
            | Fault::RemovePodAddress { pod } => role("pod", pod, "pod"),
            Fault::DetachVeth { pod } => {
                role("pod", pod, "pod")?;
                bridged("detach-veth")
            }
            Fault::DisableProxyArp { pod } => {
                role("pod", pod, "pod")?;
                if matches!(t.cluster.network, Network::Routed { .. }) {
                    Ok(())
                } else {
                    Err(perr(
                        "type",
                        format!(
                            "disable-proxy-arp needs a routed fixture; {} is not",
                            t.name
                        ),
                        "use two-node-routed",
                    ))
                }
            }
            Fault::DisableIpForward { node }
            | Fault::DeleteMasquerade { node }
            | Fault::ForwardDropPolicy { node }
            | Fault::StrictRpFilter { node }
            | Fault::BlockFragNeeded { node } => role("node", node, "node"),
            Fault::BridgeDown { node } | Fault::RemoveGatewayAddress { node } => {
                role("node", node, "node")?;
                bridged(self.name())
            }
            Fault::DisableForwarding { node, interface } => {
                role("node", node, "node")?;
                iface(node, interface)
            }
            Fault::NftReject {
                node,
                from,
                port,
                proto,
            } => {
                role("node", node, "node")?;
                role("from", from, "host")?;
                if port.is_some() && matches!(proto, None | Some(Proto::Icmp)) {
                    return Err(perr(
                        "port",
                        "a port needs proto = \"tcp\" or \"udp\"",
                        "add proto = \"tcp\"",
                    ));
                }
                if *port == Some(0) {
                    return Err(perr("port", "port 0 is not a port", "use 1..65535"));
                }
                Ok(())
            }
            Fault::DropInSecondTable { node, from } => {
                role("node", node, "node")?;
                role("from", from, "host")
            }
            Fault::RouteVia { host, to, via } => {
                role("host", host, "host")?;
                cidr("to", to)?;
                addr("via", via).map(|_| ())
            }
            Fault::DeleteRoute { host, to } => {
                role("host", host, "host")?;
                cidr("to", to).map(|_| ())
            }
            Fault::DeleteVxlanFdb { node, peer } | Fault::DeleteVxlanNeighbour { node, peer } => {
                role("node", node, "node")?;
                check_peer(node, peer)?;
                vxlan(self.name())
            }
            Fault::WrongVxlanFdb { node, peer, vtep } => {
                role("node", node, "node")?;
                check_peer(node, peer)?;
                addr("vtep", vtep)?;
                vxlan(self.name())
            }
            Fault::BlockVxlanPort { node } => {
                role("node", node, "node")?;
                vxlan(self.name())
            }
            Fault::VxlanPort { node, port } => {
                role("node", node, "node")?;
                vxlan(self.name())?;
                if *port == 0 {
                    return Err(perr("port", "port 0 is not a port", "use 1..65535"));
                }
                if let Network::Vxlan(v) = &t.cluster.network {
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
            Fault::PodMtu { node, mtu } => {
                role("node", node, "node")?;
                if !(68..=65535).contains(mtu) {
                    return Err(perr(
                        "mtu",
                        format!("mtu {mtu} is out of range"),
                        "use 68..65535",
                    ));
                }
                Ok(())
            }
            Fault::LinkDown { host, interface } => {
                role("host", host, "host")?;
                iface(host, interface)
            }
            Fault::WrongNeighbour { node, pod } => {
                role("node", node, "node")?;
                role("pod", pod, "pod")
            }
            Fault::MisdirectFdb { node, pod, port } => {
                role("node", node, "node")?;
                role("pod", pod, "pod")?;
                bridged("misdirect-fdb")?;
                iface(node, port).map_err(|mut e| {
                    e.field = "port";
                    e
                })
            }
            Fault::PacketLoss {
                host,
                interface,
                percent,
            } => {
                role("host", host, "host")?;
                iface(host, interface)?;
                if !(1..=100).contains(percent) {
                    return Err(perr(
                        "percent",
                        format!("{percent}% is out of range"),
                        "use 1..100",
                    ));
                }
                Ok(())
            }
            Fault::Bandwidth {
                host,
                interface,
                rate,
            } => {
                role("host", host, "host")?;
                iface(host, interface)?;
                parse_rate(rate)
                    .map(|_| ())
                    .map_err(|m| perr("rate", m, "write a rate such as \"1mbit\" or \"500kbit\""))
            }
            Fault::Delay {
                host,
                interface,
                ms,
            } => {
                role("host", host, "host")?;
                iface(host, interface)?;
                if *ms == 0 || *ms > 60_000 {
                    return Err(perr(
                        "ms",
                        format!("{ms} ms is out of range"),
                        "use 1..60000",
                    ));
                }
                Ok(())
            }
            _ => unreachable!("Kubernetes faults are checked above"),
        }
    }
}
