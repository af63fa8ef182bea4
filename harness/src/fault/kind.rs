//! The fault catalog as data: one variant per kind of breakage with its parameters, the
//! catalog's lines, names as the case files spell them, and parameter errors.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::topology::Proto;

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
    /// The kernel feature beyond netfault's baseline (veth, bridge, nftables, tbf) that this
    /// kind needs, if any: its cases are `unsupported` exactly where the kernel lacks it.
    pub fn kernel_feature(&self) -> Option<&'static str> {
        match self {
            Fault::Delay { .. } => Some("netem qdisc"),
            _ => None,
        }
    }

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

pub(super) fn perr(
    field: &'static str,
    message: impl Into<String>,
    help: impl Into<String>,
) -> ParamError {
    ParamError {
        field,
        message: message.into(),
        help: help.into(),
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

/// The catalog as the Markdown page `docs/faults.md` (generated; a test keeps it current).
pub fn catalog_markdown() -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "# The fault catalog\n\n\
         Generated from the code (`netfault::fault::catalog_markdown`); `netfault faults` prints the \
         same. Use a kind in a case as `[[fault]] type = \"NAME\"` with its parameters, or on the \
         command line as `NAME:key=value,...`.\n\n\
         | kind | parameters | what it does | blamed as |\n|---|---|---|---|\n",
    );
    for k in CATALOG {
        let params: Vec<String> = k
            .params
            .iter()
            .map(|(p, what)| format!("`{p}` ({what})"))
            .collect();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | `{}` |",
            k.name,
            if params.is_empty() {
                "none".to_string()
            } else {
                params.join(", ")
            },
            k.description.replace('|', "\\|"),
            k.component
        );
    }
    s
}
