//! The plain-data model of a lab: hosts, their roles and addresses. No syscalls here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::expect::{ExpectRule, Outcome, Proto};
use super::k8s::Target;
use super::Family;

/// A validated topology, ready to be realised by `Lab::up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// The fixture's name: its file stem.
    pub name: String,
    pub description: String,
    /// Hosts in the order the fixture declares them: nodes, then pods, then external hosts.
    pub hosts: Vec<Host>,
    /// The uplink segment every node's uplink and every external host sits on.
    pub uplink: Option<Segment>,
    /// How nodes carry pod traffic between them.
    pub cluster: Cluster,
    /// Pods attached by real CNI plugins instead of netfault's own wiring.
    pub cni: Option<CniSpec>,
    pub probe: ProbeSettings,
    /// Whether the default healthy pairs apply (see `default_reason`).
    pub default_pairs: bool,
    /// What the healthy lab must show beyond (or instead of) the defaults; the most specific
    /// rule wins (see `expect`).
    pub expect: Vec<ExpectRule>,
    /// Services, NetworkPolicies and cluster DNS.
    #[serde(default)]
    pub k8s: super::k8s::K8s,
    /// What parsing accepted but warns about (`file:line:col: warning: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum Role {
    Node(NodeSpec),
    Pod(PodSpec),
    External(ExternalSpec),
}

/// A Kubernetes host: a bridge for its pods, a pod CIDR, an uplink, ip_forward on, masquerade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub pod_cidr: Ipv4Net,
    /// The bridge's address: the pods' default gateway.
    pub gateway: Ipv4Addr,
    pub bridge: String,
    pub uplink_ifname: String,
    /// Address and prefix on the uplink segment.
    pub uplink: Ipv4Net,
    /// Whether the node masquerades pod traffic leaving its uplink (a CNI's ipMasq).
    pub masquerade: bool,
    /// The node's IPv6 side in a dual-stack lab (a second `pod_cidr` and `uplink` entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<NodeV6>,
}

/// A dual-stack node's IPv6 pod CIDR, bridge gateway and uplink address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeV6 {
    pub pod_cidr: Ipv6Net,
    pub gateway: Ipv6Addr,
    pub uplink: Ipv6Net,
}

/// A pod, joined to its node's bridge by a veth pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSpec {
    pub node: String,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address in a dual-stack lab (a second `ip` entry, as `podIPs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    /// The pod side of the veth pair.
    pub ifname: String,
    /// The node side of the veth pair, enslaved to the node's bridge.
    pub host_veth: String,
    #[serde(default = "super::k8s::default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: super::k8s::Labels,
    /// The ports the pod declares (`containerPorts`), each probed as a column `POD:PORT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<super::k8s::ContainerPort>,
}

/// A host outside the cluster, on the uplink segment, with no route to any pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalSpec {
    pub ifname: String,
    pub addr: Ipv4Net,
    /// A second, IPv6 `uplink` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr6: Option<Ipv6Net>,
}

/// A layer-2 segment joining several hosts' interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub cidr: Ipv4Net,
    /// The segment's IPv6 network when its members have IPv6 uplink addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr6: Option<Ipv6Net>,
    /// (host, interface) of each member, in declaration order.
    pub members: Vec<(String, String)>,
}

/// Pods attached by a CNI conflist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniSpec {
    pub conflist_path: std::path::PathBuf,
    /// The conflist, with `{node}`, `{pod_cidr}`, `{gateway}` placeholders per node.
    pub template: String,
    /// Plugin search path from the fixture (NETFAULT_CNI_PATH overrides it).
    pub path: Vec<std::path::PathBuf>,
    /// The bridge the first plugin puts pods on; None for ptp.
    pub bridge: Option<String>,
    /// `runtimeConfig` offered to every plugin (each sees only its capabilities).
    pub runtime_config: serde_json::Value,
}

/// The cluster-wide pod network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub network: Network,
    /// The cluster CIDR: every pod CIDR is inside it; masquerade spares traffic to it.
    pub cidr: Ipv4Net,
    /// The IPv6 cluster CIDR of a dual-stack lab (`cidr = ["10.244.0.0/16", "fd00:10:244::/56"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr6: Option<Ipv6Net>,
    /// How hosts learn each other's MACs.
    #[serde(default, skip_serializing_if = "Neighbours::is_static")]
    pub neighbours: Neighbours,
}

/// How a lab's hosts learn each other's MACs (`[cluster] neighbours`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Neighbours {
    /// Permanent entries written at set-up: no probe ever waits for ARP, and big labs stay
    /// inside the machine's neighbour table. The default.
    #[default]
    Static,
    /// ARP, as pods attached by real CNI plugins and real nodes do: only the overlay's VTEP
    /// entries (which flannel programs) stay permanent.
    Dynamic,
}

impl Neighbours {
    pub fn is_static(&self) -> bool {
        *self == Neighbours::Static
    }
}

/// The pod-network designs netfault builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Network {
    /// Each node's pods on its bridge; nothing carries pod traffic between nodes.
    Bridge,
    /// Routes to each remote pod CIDR via the remote node's uplink address.
    HostGw,
    /// Flannel-style: a vxlan device per node, routes to remote pod CIDRs through it onlink,
    /// permanent neighbour and FDB entries for every remote VTEP.
    Vxlan(VxlanSpec),
    /// Calico-style: no bridge; a veth per pod with a /32 host route, proxy ARP on the host
    /// side, the pods' default gateway a link-local address; host-gw routes between nodes.
    Routed { gateway: Ipv4Addr },
    /// A tunnel kind netfault can only check for (ipip, geneve, wireguard): the lab reports it
    /// unsupported when this kernel lacks it.
    Tunnel { kind: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanSpec {
    pub device: String,
    pub vni: u32,
    pub port: u16,
    pub mtu: u32,
}

impl Network {
    pub fn name(&self) -> &str {
        match self {
            Network::Bridge => "bridge",
            Network::HostGw => "host-gw",
            Network::Vxlan(_) => "vxlan",
            Network::Routed { .. } => "routed",
            Network::Tunnel { kind } => kind,
        }
    }

    /// Whether pods on different nodes reach each other.
    pub fn connects_nodes(&self) -> bool {
        !matches!(self, Network::Bridge)
    }

    /// The MTU of pod interfaces (pods' eth0, host veths, bridges).
    pub fn pod_mtu(&self) -> Option<u32> {
        match self {
            Network::Vxlan(v) => Some(v.mtu),
            _ => None,
        }
    }
}

/// The name of the switch host built when a segment has more than two members.
pub const SWITCH_HOST: &str = "underlay";
/// The bridge inside the switch host.
pub const SWITCH_BRIDGE: &str = "br0";

/// `[probe] matrix`: which host pairs are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MatrixKind {
    /// All pairs up to `coverage::AUTO_ALL_PAIRS` ordered host pairs, bounded beyond.
    #[default]
    Auto,
    All,
    Bounded,
}

impl std::str::FromStr for MatrixKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(MatrixKind::Auto),
            "all" => Ok(MatrixKind::All),
            "bounded" => Ok(MatrixKind::Bounded),
            _ => Err(format!("unknown matrix \"{s}\"")),
        }
    }
}

/// Pods each pod probes in a bounded matrix besides the anchors, by default.
pub const DEFAULT_SAMPLE: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSettings {
    pub protocols: Vec<Proto>,
    pub tcp_port: u16,
    pub udp_port: u16,
    /// How long a probe waits for an answer before it calls the pair `timeout`.
    pub timeout_ms: u64,
    /// ICMP and UDP probes send one IP packet of this size with DF set (default: small).
    pub packet_size: Option<usize>,
    /// TCP probes echo this many bytes (default: a line).
    pub tcp_bytes: Option<usize>,
    /// Packets (ICMP, UDP) or connections (TCP) per probe: above 1, a probe measures loss.
    pub count: u32,
    /// With `count` above 1: the share lost (percent) a probe still calls reachable.
    pub loss_tolerance: u8,
    /// Which host pairs are probed (see `coverage`).
    #[serde(default)]
    pub matrix: MatrixKind,
    /// In a bounded matrix: how many other pods each pod probes besides the anchors.
    #[serde(default = "default_sample")]
    pub sample: usize,
}

fn default_sample() -> usize {
    DEFAULT_SAMPLE
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            protocols: vec![Proto::Icmp, Proto::Tcp, Proto::Udp],
            tcp_port: 80,
            udp_port: 7,
            timeout_ms: 1000,
            packet_size: None,
            tcp_bytes: None,
            count: 1,
            loss_tolerance: 0,
            matrix: Default::default(),
            sample: DEFAULT_SAMPLE,
        }
    }
}

impl ProbeSettings {
    /// The probe size for a protocol: TCP bytes to echo, or the ICMP/UDP packet size.
    pub fn size(&self, proto: Proto) -> Option<usize> {
        match proto.base() {
            Proto::Tcp => self.tcp_bytes,
            _ => self.packet_size,
        }
    }

    /// Whether a host pair's probes of `proto` are full-size: an ICMP echo, unless the fixture
    /// sets a size or counts packets, is as large as the sender's path allows (the MTU of its
    /// route, less once a router answers "fragmentation needed"), so a path that drops big
    /// packets shows without a case asking for big probes.
    pub fn full_size(&self, proto: Proto) -> bool {
        proto.base() == Proto::Icmp && self.size(proto).is_none() && self.count <= 1
    }

    pub fn port(&self, proto: Proto) -> Option<u16> {
        match proto.base() {
            // SCTP is probed only at the ports pods declare.
            Proto::Icmp | Proto::Icmp6 | Proto::Tcp6 | Proto::Udp6 | Proto::Sctp => None,
            Proto::Tcp => Some(self.tcp_port),
            Proto::Udp => Some(self.udp_port),
            Proto::Dns => Some(53),
        }
    }
}

impl Host {
    /// The address probes target: a node's uplink address, a pod's address, an external's address.
    pub fn address(&self) -> Ipv4Addr {
        match &self.role {
            Role::Node(n) => n.uplink.addr(),
            Role::Pod(p) => p.ip,
            Role::External(e) => e.addr.addr(),
        }
    }

    /// The IPv6 address probes target, on a dual-stack host.
    pub fn address6(&self) -> Option<Ipv6Addr> {
        match &self.role {
            Role::Node(n) => n.v6.map(|v| v.uplink.addr()),
            Role::Pod(p) => p.ip6,
            Role::External(e) => e.addr6.map(|a| a.addr()),
        }
    }

    /// The address a probe of `family` targets.
    pub fn address_of(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => Some(self.address().into()),
            Family::V6 => self.address6().map(IpAddr::from),
        }
    }

    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Node(_) => "node",
            Role::Pod(_) => "pod",
            Role::External(_) => "external",
        }
    }

    pub fn as_node(&self) -> Option<&NodeSpec> {
        match &self.role {
            Role::Node(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_pod(&self) -> Option<&PodSpec> {
        match &self.role {
            Role::Pod(p) => Some(p),
            _ => None,
        }
    }
}

impl Topology {
    /// Whether the probe of `from` → `to` over `proto` is a full-size ping (see
    /// `ProbeSettings::full_size`): for pairs whose path crosses a router — a pod with anything
    /// beyond its own node. Hosts on one segment (a node and its pods, pods of one node, nodes
    /// and external hosts on the uplink) ping small: a pod's own MTU problem shows on its pairs
    /// beyond the node, and the N² pairs of a big bridge sending full-size echoes at once
    /// overflow its queues and drop other probes (seen at 100 pods).
    pub fn full_size_ping(&self, from: &str, to: &str, proto: Proto) -> bool {
        let segment = |h: &str| match self.host(h).map(|h| &h.role) {
            Some(Role::Pod(p)) => Some(p.node.clone()),
            Some(Role::Node(_)) => Some(h.to_string()),
            _ => None, // an external host: on the uplink, as nodes are
        };
        let beyond = |pod: &str, other: &str| {
            self.host(pod).and_then(|h| h.as_pod()).is_some() && segment(pod) != segment(other)
        };
        self.probe.full_size(proto) && (beyond(from, to) || beyond(to, from))
    }

    /// Whether any host has an IPv6 address: the lab turns IPv6 on and probes both families.
    pub fn dual_stack(&self) -> bool {
        self.hosts.iter().any(|h| h.address6().is_some())
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn host_names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&str, &NodeSpec)> {
        self.hosts
            .iter()
            .filter_map(|h| h.as_node().map(|n| (h.name.as_str(), n)))
    }

    pub fn pods(&self) -> impl Iterator<Item = (&str, &PodSpec)> {
        self.hosts
            .iter()
            .filter_map(|h| h.as_pod().map(|p| (h.name.as_str(), p)))
    }

    pub fn pods_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = (&'a str, &'a PodSpec)> {
        self.pods().filter(move |(_, p)| p.node == node)
    }

    /// Whether the uplink segment needs a switch host (more than two members).
    pub fn needs_switch(&self) -> bool {
        self.uplink.as_ref().is_some_and(|s| s.members.len() != 2)
    }

    /// Names of every namespace the lab creates, hosts first, then the switch if any.
    pub fn namespace_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.hosts.iter().map(|h| h.name.clone()).collect();
        if self.needs_switch() {
            v.push(SWITCH_HOST.to_string());
        }
        v
    }

    /// The healthy outcome of a probe, if the fixture states one.
    pub fn healthy(&self, from: &str, to: &str, proto: Proto) -> Option<Outcome> {
        self.healthy_with_origin(from, to, proto).map(|(o, _)| o)
    }

    /// The healthy outcome and the rule that demands it (`file:line` or `default: why`).
    pub fn healthy_with_origin(
        &self,
        from: &str,
        to: &str,
        proto: Proto,
    ) -> Option<(Outcome, String)> {
        if let Some(r) = super::expect::resolve(&self.expect, from, to, proto) {
            return Some((r.outcome, r.origin.clone()));
        }
        if Target::parse(to).is_some() {
            return self.k8s_default(from, to, proto);
        }
        if self.default_pairs {
            if let Some(why) = default_reason(self, from, to) {
                if let Some(denied) = self.k8s_default(from, to, proto) {
                    return Some(denied);
                }
                return Some((Outcome::Reachable, format!("default: {why}")));
            }
        }
        None
    }

    /// Whether `ip` is one of `host`'s own addresses (a node also owns its bridge gateway).
    pub fn is_own_address(&self, host: &str, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.owner_of(a).is_some_and(|h| h.name == host),
            IpAddr::V6(a) => self.owner_of6(a).is_some_and(|h| h.name == host),
        }
    }

    /// Which host owns an IPv6 address (its probe address, a node's bridge gateway or vxlan
    /// device address).
    pub fn owner_of6(&self, ip: Ipv6Addr) -> Option<&Host> {
        self.hosts.iter().find(|h| {
            h.address6() == Some(ip)
                || h.as_node().and_then(|n| n.v6).is_some_and(|v| {
                    (self.has_bridge() && v.gateway == ip)
                        || (matches!(self.cluster.network, Network::Vxlan(_))
                            && v.pod_cidr.network() == ip)
                })
        })
    }

    /// Whether real CNI plugins wired `host` (its pods and nodes in a CNI-built lab): the lab's
    /// plan does not list what they made. External hosts netfault wires itself.
    pub fn plugin_wired(&self, host: &str) -> bool {
        self.cni.is_some()
            && self
                .host(host)
                .is_some_and(|h| !matches!(h.role, Role::External(_)))
    }

    /// Which host owns an address (a host's probe address, a node's bridge gateway or vxlan
    /// device address).
    pub fn owner_of(&self, ip: Ipv4Addr) -> Option<&Host> {
        self.hosts.iter().find(|h| {
            h.address() == ip
                || h.as_node().is_some_and(|n| {
                    ((self.has_bridge() || self.cni.is_some()) && n.gateway == ip)
                        || (matches!(self.cluster.network, Network::Vxlan(_))
                            && n.pod_cidr.network() == ip)
                })
        })
    }

    /// Which host owns an address of either family.
    pub fn owner_of_ip(&self, ip: IpAddr) -> Option<&Host> {
        match ip {
            IpAddr::V4(a) => self.owner_of(a),
            IpAddr::V6(a) => self.owner_of6(a),
        }
    }

    /// Whether nodes put their pods on a bridge (every design but routed, and CNI's ptp).
    pub fn has_bridge(&self) -> bool {
        match &self.cni {
            Some(c) => c.bridge.is_some(),
            None => !matches!(self.cluster.network, Network::Routed { .. }),
        }
    }

    /// The default gateway of a pod: its node's bridge address, or the routed gateway.
    pub fn pod_gateway(&self, pod: &PodSpec) -> Option<Ipv4Addr> {
        match &self.cluster.network {
            Network::Routed { gateway } => Some(*gateway),
            _ => self
                .host(&pod.node)
                .and_then(|h| h.as_node())
                .map(|n| n.gateway),
        }
    }
}

/// Why a pair must be reachable in a healthy lab unless `[probe] default_pairs = false`: pods on
/// one node reach each other, pods and their node reach each other, pods reach external hosts,
/// nodes and external hosts reach each other, nodes reach each other.
pub fn default_reason(topo: &Topology, from: &str, to: &str) -> Option<&'static str> {
    let (a, b) = (topo.host(from)?, topo.host(to)?);
    if a.name == b.name {
        return None;
    }
    let connected = topo.cluster.network.connects_nodes();
    Some(match (&a.role, &b.role) {
        (Role::Pod(p), Role::Pod(q)) if p.node == q.node => "pods on one node reach each other",
        (Role::Pod(_), Role::Pod(_)) if connected => "pods on different nodes reach each other",
        (Role::Pod(p), Role::Node(_)) if p.node == b.name => "a pod reaches its node",
        (Role::Node(_), Role::Pod(q)) if q.node == a.name => "a node reaches its pods",
        (Role::Pod(_), Role::Node(_)) if connected => "a pod reaches other nodes",
        (Role::Node(_), Role::Pod(_)) if connected => "a node reaches pods on other nodes",
        (Role::Pod(_), Role::External(_)) => "pods reach external hosts (masqueraded)",
        (Role::Node(_), Role::External(_)) | (Role::External(_), Role::Node(_)) => {
            "nodes and external hosts share the uplink"
        }
        (Role::Node(_), Role::Node(_)) => "nodes share the uplink",
        _ => return None,
    })
}
