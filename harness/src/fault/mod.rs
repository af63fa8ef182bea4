//! Faults: one variant per kind of breakage. `inject` changes the live lab and returns a
//! [`Guard`] holding an undo log; `heal` replays it backwards and restores exactly the state
//! before (names, MACs, addresses, routes, neighbours, FDB, sysctls, rule positions). Faults
//! compose: heal several in reverse order.
//!
//! Faults read the live lab, not what the harness remembers building: `delete-masquerade` finds
//! masquerade rules by content, whoever wrote them (nft's native `masquerade` or iptables-nft's xt
//! `MASQUERADE` target); `delete-route` deletes whatever route the host has to that network.

mod k8s;
mod ops;
mod undo;

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::topology::{Network, Proto, Topology};
pub use ops::reinsert_lines;
pub use undo::Undo;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    DeleteVeth {
        pod: String,
    },
    VethDown {
        pod: String,
    },
    DetachVeth {
        pod: String,
    },
    DeletePodRoute {
        pod: String,
    },
    RemovePodAddress {
        pod: String,
    },
    DisableIpForward {
        node: String,
    },
    DisableForwarding {
        node: String,
        interface: String,
    },
    DeleteMasquerade {
        node: String,
    },
    BridgeDown {
        node: String,
    },
    RemoveGatewayAddress {
        node: String,
    },
    ForwardDropPolicy {
        node: String,
    },
    NftReject {
        node: String,
        from: String,
        proto: Option<Proto>,
        port: Option<u16>,
    },
    DropInSecondTable {
        node: String,
        from: String,
    },
    StrictRpFilter {
        node: String,
    },
    RouteVia {
        host: String,
        to: String,
        via: String,
    },
    DeleteRoute {
        host: String,
        to: String,
    },
    DeleteVxlanFdb {
        node: String,
        peer: String,
    },
    WrongVxlanFdb {
        node: String,
        peer: String,
        vtep: String,
    },
    DeleteVxlanNeighbour {
        node: String,
        peer: String,
    },
    BlockVxlanPort {
        node: String,
    },
    VxlanPort {
        node: String,
        port: u16,
    },
    PodMtu {
        node: String,
        mtu: u32,
    },
    BlockFragNeeded {
        node: String,
    },
    LinkDown {
        host: String,
        interface: String,
    },
    DisableProxyArp {
        pod: String,
    },
    WrongNeighbour {
        node: String,
        pod: String,
    },
    MisdirectFdb {
        node: String,
        pod: String,
        port: String,
    },
    PacketLoss {
        host: String,
        interface: String,
        percent: u8,
    },
    Bandwidth {
        host: String,
        interface: String,
        rate: String,
    },
    Delay {
        host: String,
        interface: String,
        ms: u32,
    },
    DeleteServiceRule {
        node: String,
        service: String,
    },
    RemoveEndpoint {
        service: String,
        pod: String,
    },
    WrongEndpointPort {
        service: String,
        port: u16,
    },
    StaleEndpointIp {
        service: String,
        pod: String,
    },
    NoEndpoints {
        service: String,
    },
    HairpinOff {
        pod: String,
    },
    DefaultDenyEgress {
        namespace: String,
        allow_port: Option<u16>,
    },
    DnsServerDown,
    WrongNameserver {
        pod: String,
        nameserver: Ipv4Addr,
    },
    BridgeNfOff {
        node: String,
    },
    FlushKubeProxy {
        node: String,
    },
    StaleConntrack {
        service: String,
        pod: String,
    },
}

/// One entry of the catalog (`netfault faults`).
#[derive(Debug, Clone, Serialize)]
pub struct Kind {
    pub name: &'static str,
    /// (parameter, what it is)
    pub params: &'static [(&'static str, &'static str)],
    pub description: &'static str,
    /// The diagnosis component this fault breaks.
    pub component: &'static str,
}

const POD: (&str, &str) = ("pod", "a pod");
const NODE: (&str, &str) = ("node", "a node");
const SERVICE: (&str, &str) = ("service", "a Service of the fixture");

pub const CATALOG: &[Kind] = &[
    Kind { name: "delete-veth", params: &[POD], description: "delete the pod's veth pair (the pod's eth0 and its routes go with it)", component: "link" },
    Kind { name: "veth-down", params: &[POD], description: "set the node side of the pod's veth down", component: "link" },
    Kind { name: "detach-veth", params: &[POD], description: "take the node side of the pod's veth off its bridge", component: "bridge" },
    Kind { name: "delete-pod-route", params: &[POD], description: "delete the pod's default route", component: "route" },
    Kind { name: "remove-pod-address", params: &[POD], description: "remove the pod's address from its eth0", component: "address" },
    Kind { name: "disable-ip-forward", params: &[NODE], description: "net.ipv4.ip_forward = 0 on the node", component: "forwarding" },
    Kind { name: "disable-forwarding", params: &[NODE, ("interface", "an interface of the node")], description: "net.ipv4.conf.IF.forwarding = 0 on one interface only", component: "forwarding" },
    Kind { name: "delete-masquerade", params: &[NODE], description: "delete every masquerade rule in the node's live ruleset (native or iptables-nft)", component: "masquerade" },
    Kind { name: "bridge-down", params: &[NODE], description: "set the node's pod bridge down", component: "link" },
    Kind { name: "remove-gateway-address", params: &[NODE], description: "remove the bridge's address, the pods' gateway (the route to the pod CIDR goes with it)", component: "address" },
    Kind { name: "forward-drop-policy", params: &[NODE], description: "table ip filter, chain FORWARD: policy drop, as Docker sets it", component: "filter" },
    Kind { name: "nft-reject", params: &[NODE, ("from", "a host whose traffic is rejected"), ("proto", "icmp, tcp or udp (optional)"), ("port", "a destination port (optional)")], description: "reject the host's traffic in the node's input and forward hooks", component: "filter" },
    Kind { name: "drop-in-second-table", params: &[NODE, ("from", "a host whose traffic is dropped")], description: "one table's forward chain accepts everything, a second table's drops the host's traffic", component: "filter" },
    Kind { name: "strict-rp-filter", params: &[NODE], description: "net.ipv4.conf.all.rp_filter = 1: packets whose return route leaves by another interface are dropped", component: "rp-filter" },
    Kind { name: "route-via", params: &[("host", "any host"), ("to", "a destination CIDR"), ("via", "a gateway address")], description: "replace the host's route to a network by one via another gateway (say, to make a path asymmetric)", component: "route" },
    Kind { name: "delete-route", params: &[("host", "any host"), ("to", "a destination CIDR")], description: "delete the host's route to a network (host-gw: a remote pod CIDR)", component: "route" },
    Kind { name: "delete-vxlan-fdb", params: &[NODE, ("peer", "the remote node")], description: "delete the node's vxlan FDB entry for the peer's VTEP", component: "overlay" },
    Kind { name: "wrong-vxlan-fdb", params: &[NODE, ("peer", "the remote node"), ("vtep", "the wrong VTEP address")], description: "point the node's vxlan FDB entry for the peer at another VTEP address", component: "overlay" },
    Kind { name: "delete-vxlan-neighbour", params: &[NODE, ("peer", "the remote node")], description: "delete the node's vxlan neighbour entry for the peer's VTEP address", component: "overlay" },
    Kind { name: "block-vxlan-port", params: &[NODE], description: "drop VXLAN's UDP port arriving at the node", component: "filter" },
    Kind { name: "vxlan-port", params: &[NODE, ("port", "the UDP port the node's vxlan device will use")], description: "re-create the node's vxlan device on another UDP port than the rest of the overlay", component: "overlay" },
    Kind { name: "pod-mtu", params: &[NODE, ("mtu", "the new MTU")], description: "set the MTU of the node's bridge, pod veths and pods' eth0 (pods at 1500 over a 1450 overlay)", component: "mtu" },
    Kind { name: "block-frag-needed", params: &[NODE], description: "drop ICMP fragmentation-needed at the node (path MTU discovery breaks)", component: "mtu" },
    Kind { name: "link-down", params: &[("host", "any host"), ("interface", "an interface of the host")], description: "set an interface down (a node's uplink: the node is partitioned)", component: "link" },
    Kind { name: "disable-proxy-arp", params: &[POD], description: "routed: proxy_arp off on the pod's host veth (and the pod's ARP entry for its gateway flushed)", component: "neighbour" },
    Kind { name: "wrong-neighbour", params: &[NODE, POD], description: "a permanent neighbour entry on the node for the pod's address with a wrong MAC", component: "neighbour" },
    Kind { name: "misdirect-fdb", params: &[NODE, POD, ("port", "another port of the node's bridge")], description: "a static bridge FDB entry sending the pod's MAC out of the wrong port", component: "bridge" },
    Kind { name: "packet-loss", params: &[("host", "any host"), ("interface", "an interface of the host"), ("percent", "1..100")], description: "drop that percentage of packets leaving the interface at random (nft numgen)", component: "filter" },
    Kind { name: "bandwidth", params: &[("host", "any host"), ("interface", "an interface of the host"), ("rate", "like 1mbit, 500kbit")], description: "shape the interface's egress with a tbf qdisc", component: "link" },
    Kind { name: "delete-service-rule", params: &[NODE, SERVICE], description: "delete kube-proxy's rule sending the Service's ClusterIP to its chain on the node", component: "service" },
    Kind { name: "remove-endpoint", params: &[SERVICE, ("pod", "an endpoint pod of the Service")], description: "the pod is no longer an endpoint of the Service (kube-proxy re-syncs every node)", component: "service" },
    Kind { name: "wrong-endpoint-port", params: &[SERVICE, ("port", "the wrong target port")], description: "the Service's endpoints point at a port nothing listens on (targetPort typo)", component: "service" },
    Kind { name: "stale-endpoint-ip", params: &[SERVICE, ("pod", "an endpoint pod of the Service")], description: "the pod's endpoint is replaced by a deleted pod's address (a vacant one in its pod CIDR)", component: "service" },
    Kind { name: "no-endpoints", params: &[SERVICE], description: "every endpoint of the Service goes: kube-proxy rejects its ClusterIP", component: "service" },
    Kind { name: "hairpin-off", params: &[POD], description: "hairpin mode off on the pod's bridge port: the pod cannot reach itself through its own Service", component: "bridge" },
    Kind { name: "default-deny-egress", params: &[("namespace", "a namespace with pods"), ("allow_port", "a UDP port egress stays open to (optional; 53 is the classic mistake when DNS is DNATed to 5353)")], description: "a NetworkPolicy selecting every pod of the namespace for egress, allowing nothing (or one UDP port)", component: "policy" },
    Kind { name: "dns-server-down", params: &[], description: "stop the cluster DNS server (its socket closes: queries get ICMP port unreachable)", component: "dns" },
    Kind { name: "wrong-nameserver", params: &[POD, ("nameserver", "the wrong nameserver address")], description: "the pod's resolv.conf names another nameserver", component: "dns" },
    Kind { name: "bridge-nf-off", params: &[NODE], description: "net.bridge.bridge-nf-call-iptables = 0: bridged replies from same-node endpoints skip conntrack's un-DNAT", component: "service" },
    Kind { name: "flush-kube-proxy", params: &[NODE], description: "flush kube-proxy's nft table on the node (chains stay, rules go)", component: "service" },
    Kind { name: "stale-conntrack", params: &[SERVICE, ("pod", "the UDP Service's endpoint pod")], description: "the endpoint pod comes back with a new address and kube-proxy follows, but does not flush UDP conntrack: clients' running flows stay DNATed to the old address", component: "service" },
    Kind { name: "delay", params: &[("host", "any host"), ("interface", "an interface of the host"), ("ms", "milliseconds")], description: "delay the interface's egress (needs netem: reported unsupported where the kernel lacks it)", component: "link" },
];

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::DeleteVeth { .. } => "delete-veth",
            Fault::VethDown { .. } => "veth-down",
            Fault::DetachVeth { .. } => "detach-veth",
            Fault::DeletePodRoute { .. } => "delete-pod-route",
            Fault::RemovePodAddress { .. } => "remove-pod-address",
            Fault::DisableIpForward { .. } => "disable-ip-forward",
            Fault::DisableForwarding { .. } => "disable-forwarding",
            Fault::DeleteMasquerade { .. } => "delete-masquerade",
            Fault::BridgeDown { .. } => "bridge-down",
            Fault::RemoveGatewayAddress { .. } => "remove-gateway-address",
            Fault::ForwardDropPolicy { .. } => "forward-drop-policy",
            Fault::NftReject { .. } => "nft-reject",
            Fault::DropInSecondTable { .. } => "drop-in-second-table",
            Fault::StrictRpFilter { .. } => "strict-rp-filter",
            Fault::RouteVia { .. } => "route-via",
            Fault::DeleteRoute { .. } => "delete-route",
            Fault::DeleteVxlanFdb { .. } => "delete-vxlan-fdb",
            Fault::WrongVxlanFdb { .. } => "wrong-vxlan-fdb",
            Fault::DeleteVxlanNeighbour { .. } => "delete-vxlan-neighbour",
            Fault::BlockVxlanPort { .. } => "block-vxlan-port",
            Fault::VxlanPort { .. } => "vxlan-port",
            Fault::PodMtu { .. } => "pod-mtu",
            Fault::BlockFragNeeded { .. } => "block-frag-needed",
            Fault::LinkDown { .. } => "link-down",
            Fault::DisableProxyArp { .. } => "disable-proxy-arp",
            Fault::WrongNeighbour { .. } => "wrong-neighbour",
            Fault::MisdirectFdb { .. } => "misdirect-fdb",
            Fault::PacketLoss { .. } => "packet-loss",
            Fault::Bandwidth { .. } => "bandwidth",
            Fault::Delay { .. } => "delay",
            Fault::DeleteServiceRule { .. } => "delete-service-rule",
            Fault::RemoveEndpoint { .. } => "remove-endpoint",
            Fault::WrongEndpointPort { .. } => "wrong-endpoint-port",
            Fault::StaleEndpointIp { .. } => "stale-endpoint-ip",
            Fault::NoEndpoints { .. } => "no-endpoints",
            Fault::HairpinOff { .. } => "hairpin-off",
            Fault::DefaultDenyEgress { .. } => "default-deny-egress",
            Fault::DnsServerDown => "dns-server-down",
            Fault::WrongNameserver { .. } => "wrong-nameserver",
            Fault::BridgeNfOff { .. } => "bridge-nf-off",
            Fault::FlushKubeProxy { .. } => "flush-kube-proxy",
            Fault::StaleConntrack { .. } => "stale-conntrack",
        }
    }

    /// The fault's parameters as `key=value` pairs, in catalog order.
    fn params(&self) -> Vec<(&'static str, String)> {
        let v = serde_json::to_value(self).unwrap_or_default();
        let kind = CATALOG.iter().find(|k| k.name == self.name());
        kind.map(|k| k.params)
            .unwrap_or(&[])
            .iter()
            .filter_map(|(p, _)| {
                let x = v.get(*p)?;
                if x.is_null() {
                    return None;
                }
                Some((
                    *p,
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string()),
                ))
            })
            .collect()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        for (k, v) in self.params() {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// What a fault's parameters got wrong: the field, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub field: &'static str,
    pub message: String,
    pub help: String,
}

fn perr(field: &'static str, message: impl Into<String>, help: impl Into<String>) -> ParamError {
    ParamError {
        field,
        message: message.into(),
        help: help.into(),
    }
}

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

    /// Injects the fault into a live lab.
    pub async fn inject(&self, lab: &Lab) -> Result<Guard> {
        self.check(lab.topology())
            .map_err(|e| Error::NotFound(format!("{self}: {}; {}", e.message, e.help)))?;
        let undo = ops::inject(self, lab).await?;
        crate::testhook::pause("fault:injected");
        Ok(Guard {
            fault: self.clone(),
            undo,
        })
    }
}

/// A rate like `1mbit`, `500kbit`, `2gbit`, `8000bit` in bits per second.
pub fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("gbit") {
        (n, 1_000_000_000)
    } else if let Some(n) = lower.strip_suffix("mbit") {
        (n, 1_000_000)
    } else if let Some(n) = lower.strip_suffix("kbit") {
        (n, 1_000)
    } else if let Some(n) = lower.strip_suffix("bit") {
        (n, 1)
    } else {
        return Err(format!("rate \"{s}\" has no unit"));
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("rate \"{s}\" is not a number with a unit"))?;
    let bits = n * mult;
    if !(8_000..=100_000_000_000).contains(&bits) {
        return Err(format!("rate \"{s}\" is out of range (8kbit..100gbit)"));
    }
    Ok(bits)
}

/// An injected fault; `heal` puts back exactly what inject changed.
#[must_use = "a fault that is never healed leaves the lab broken"]
pub struct Guard {
    pub fault: Fault,
    undo: Vec<Undo>,
}

impl Guard {
    pub async fn heal(self, lab: &Lab) -> Result<()> {
        for u in self.undo.into_iter().rev() {
            u.apply(lab).await?;
            crate::testhook::pause("fault:healed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{parse_fixture, Source};

    #[test]
    fn faults_parse_and_reject_unknown_fields() {
        let f: Fault = toml::from_str("type = \"delete-veth\"\npod = \"pod-a\"\n").unwrap();
        assert_eq!(
            f,
            Fault::DeleteVeth {
                pod: "pod-a".into()
            }
        );
        assert!(
            toml::from_str::<Fault>("type = \"delete-veth\"\npod = \"pod-a\"\nnode = \"x\"\n")
                .is_err()
        );
        assert!(toml::from_str::<Fault>("type = \"melt-cpu\"\n").is_err());
        assert_eq!(f.to_string(), "delete-veth pod=pod-a");
        let f: Fault = toml::from_str("type = \"nft-reject\"\nnode = \"node1\"\nfrom = \"pod-a\"\nproto = \"tcp\"\nport = 80\n").unwrap();
        assert_eq!(
            f.to_string(),
            "nft-reject node=node1 from=pod-a proto=tcp port=80"
        );
    }

    #[test]
    fn every_variant_is_in_the_catalog() {
        let names: Vec<&str> = CATALOG.iter().map(|k| k.name).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len(), "a kind is listed twice");
        // serde names every variant of the enum when it meets an unknown one: that list, not a
        // count, is what the catalog must equal.
        let err = toml::from_str::<Fault>("type = \"no-such-fault\"\n")
            .unwrap_err()
            .to_string();
        let listed = err
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("serde's error names no variants: {err}"));
        let mut variants: Vec<&str> = listed
            .split(',')
            .map(|v| {
                v.trim()
                    .trim_matches(|c: char| c == '`' || c.is_whitespace())
            })
            .filter(|v| !v.is_empty())
            .collect();
        variants.sort();
        assert_eq!(dedup, variants, "CATALOG and the Fault enum differ");
    }

    #[test]
    fn parameters_are_checked_against_the_fixture() {
        let t = parse_fixture(&Source::new(
            "single-node.toml",
            include_str!("../../../fixtures/single-node.toml"),
        ))
        .unwrap();
        let e = Fault::LinkDown {
            host: "node1".into(),
            interface: "eth9".into(),
        }
        .check(&t)
        .unwrap_err();
        assert_eq!(e.field, "interface");
        assert_eq!(
            e.help,
            "interfaces of node1: cni0, veth-pod-a, veth-pod-b, eth0"
        );
        let e = Fault::DeleteVxlanFdb {
            node: "node1".into(),
            peer: "node1".into(),
        }
        .check(&t)
        .unwrap_err();
        assert_eq!(e.message, "the peer is the node itself");
        let e = Fault::BlockVxlanPort {
            node: "node1".into(),
        }
        .check(&t)
        .unwrap_err();
        assert!(e.message.contains("needs a vxlan fixture"), "{}", e.message);
        let e = Fault::PacketLoss {
            host: "node1".into(),
            interface: "eth0".into(),
            percent: 0,
        }
        .check(&t)
        .unwrap_err();
        assert_eq!(e.field, "percent");
        let e = Fault::NftReject {
            node: "node1".into(),
            from: "pod-a".into(),
            proto: None,
            port: Some(80),
        }
        .check(&t)
        .unwrap_err();
        assert_eq!(e.field, "port");
        assert!(parse_rate("1mbit").unwrap() == 1_000_000 && parse_rate("fast").is_err());
    }
}
