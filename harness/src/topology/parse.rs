//! Fixture files: TOML → validated [`Topology`], with errors that point at the offending line.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

use indexmap::IndexMap;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;

use super::expect::{self, ExpectRule, Outcome, PairPattern, Proto};
use super::model::*;
use super::source::{ConfigError, ConfigErrors, Key, Source};

/// Upper bounds that keep a typo from asking for an absurd lab.
pub const MAX_HOSTS: usize = 4096;
/// A Linux bridge takes at most 1023 ports.
pub const MAX_PODS_PER_NODE: usize = 1023;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The kernel's IFNAMSIZ minus the terminating NUL.
pub const MAX_IFNAME: usize = 15;
pub const MAX_HOST_NAME: usize = 32;

fn default_bridge() -> String {
    "cni0".into()
}
fn default_eth0() -> String {
    "eth0".into()
}
fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixture {
    #[serde(default)]
    description: String,
    #[serde(default)]
    node: IndexMap<String, RawNode>,
    #[serde(default)]
    pod: IndexMap<String, RawPod>,
    #[serde(default)]
    external: IndexMap<String, RawExternal>,
    #[serde(default)]
    cluster: Option<RawCluster>,
    #[serde(default)]
    cni: Option<RawCni>,
    #[serde(default)]
    probe: Option<RawProbe>,
    #[serde(default)]
    expect: IndexMap<String, String>,
    #[serde(default)]
    namespace: IndexMap<String, k8s::RawNamespace>,
    #[serde(default)]
    service: IndexMap<String, k8s::RawService>,
    #[serde(default)]
    policy: IndexMap<String, k8s::RawPolicy>,
    dns: Option<k8s::RawDns>,
}

mod dual;
mod k8s;
pub mod patch;
mod ports;
mod proxy_mode;
mod selector;
mod service6;
mod validator;

use dual::{OneOrTwo, Split};

use validator::Validator;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    network: Option<String>,
    cidr: Option<OneOrTwo>,
    vxlan_device: Option<String>,
    vxlan_vni: Option<u32>,
    vxlan_port: Option<u16>,
    vxlan_mtu: Option<u32>,
    routed_gateway: Option<String>,
    service_cidr: Option<dual::OneOrTwo>,
    neighbours: Option<String>,
    /// kube-proxy's mode: "nftables" (the default) or "iptables".
    proxy_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCni {
    conflist: String,
    path: Option<Vec<String>>,
    runtime_config: Option<String>,
}

/// The network modes a fixture may name.
pub const NETWORKS: [&str; 7] = [
    "bridge",
    "host-gw",
    "vxlan",
    "routed",
    "ipip",
    "geneve",
    "wireguard",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    pod_cidr: OneOrTwo,
    gateway: Option<String>,
    uplink: OneOrTwo,
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default = "default_eth0")]
    uplink_ifname: String,
    #[serde(default = "default_true")]
    masquerade: bool,
    /// Generated pods: pod-1, pod-2, ... numbered on across nodes, addresses from the pod CIDR.
    pods: Option<u64>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawPod {
    node: String,
    ip: Option<OneOrTwo>,
    #[serde(default = "default_eth0")]
    ifname: String,
    host_veth: Option<String>,
    #[serde(default = "super::k8s::default_namespace")]
    namespace: String,
    #[serde(default)]
    labels: super::k8s::Labels,
    /// `containerPorts`: `[{ name = "http", port = 8080, protocol = "tcp" }]`.
    #[serde(default)]
    ports: Vec<ports::RawContainerPort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExternal {
    uplink: OneOrTwo,
    #[serde(default = "default_eth0")]
    ifname: String,
}

/// `[probe]`, in a fixture or (for what a case may change) in a case.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    protocols: Option<Vec<String>>,
    tcp_port: Option<u16>,
    udp_port: Option<u16>,
    timeout_ms: Option<u64>,
    default_pairs: Option<bool>,
    packet_size: Option<usize>,
    tcp_bytes: Option<usize>,
    count: Option<u32>,
    loss_tolerance: Option<u8>,
    matrix: Option<String>,
    sample: Option<usize>,
}

pub const MAX_COUNT: u32 = 1000;
pub const MAX_TCP_BYTES: usize = 100 << 20;

/// Applies `[probe]` settings onto `s`, with located errors. A case may not change ports or the
/// default pairs (they belong to the fixture).
pub(crate) fn apply_probe(
    src: &Source,
    raw: &RawProbe,
    s: &mut ProbeSettings,
    for_case: bool,
    errors: &mut Vec<ConfigError>,
) {
    let mut err = |path: &[Key], msg: String, help: Option<String>| {
        errors.push(src.error_at_path(path, msg, help))
    };
    if for_case {
        fixture_only_keys(raw, &mut err);
    }
    if let Some(list) = &raw.protocols {
        s.protocols = probe_protocols(list, &mut err);
    }
    probe_ports_and_sizes(raw, s, &mut err);
    probe_counts_and_matrix(raw, s, &mut err);
}

/// What `[probe]` says wrong, at the key path it concerns.
type ProbeErr<'a> = dyn FnMut(&[Key], String, Option<String>) + 'a;

fn probe_key(k: &'static str) -> [Key<'static>; 2] {
    [Key::Field("probe"), Key::Field(k)]
}

/// A case's `[probe]` may not set what belongs to the fixture.
fn fixture_only_keys(raw: &RawProbe, err: &mut ProbeErr<'_>) {
    let at = probe_key;
    for (k, set) in [
        ("tcp_port", raw.tcp_port.is_some()),
        ("udp_port", raw.udp_port.is_some()),
        ("default_pairs", raw.default_pairs.is_some()),
    ] {
        if set {
            err(
                &at(k),
                format!("{k} belongs to the fixture, not to a case"),
                Some("set it in the fixture's [probe] table".into()),
            );
        }
    }
}

/// The protocols to probe: known, none twice, at least one; sorted.
fn probe_protocols(list: &[String], err: &mut ProbeErr<'_>) -> Vec<Proto> {
    let at = probe_key;
    let mut protos = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match p.parse::<Proto>() {
            Ok(p) if protos.contains(&p) => err(
                &[Key::Field("probe"), Key::Field("protocols"), Key::Index(i)],
                format!("protocol {p} is listed twice"),
                None,
            ),
            Ok(Proto::Sctp) => err(
                &[Key::Field("probe"), Key::Field("protocols"), Key::Index(i)],
                "sctp is not a protocol every pair is probed in".into(),
                Some("declare the port on the pod that serves it (ports = [{ port = 3868, protocol = \"sctp\" }]): it is probed as a column POD:PORT".into()),
            ),
            Ok(p) => protos.push(p),
            Err(msg) => err(
                &[Key::Field("probe"), Key::Field("protocols"), Key::Index(i)],
                msg,
                None,
            ),
        }
    }
    if list.is_empty() {
        err(
            &at("protocols"),
            "protocols is empty: nothing would be probed".into(),
            Some("list at least one of \"icmp\", \"tcp\", \"udp\"".into()),
        );
    }
    protos.sort();
    protos
}

/// Ports, timeout and sizes, each in its range.
fn probe_ports_and_sizes(raw: &RawProbe, s: &mut ProbeSettings, err: &mut ProbeErr<'_>) {
    let at = probe_key;
    for (k, port) in [("tcp_port", raw.tcp_port), ("udp_port", raw.udp_port)] {
        if port == Some(0) {
            err(
                &at(k),
                "port 0 cannot be probed".into(),
                Some("use 1..65535".into()),
            );
        }
    }
    s.tcp_port = raw.tcp_port.unwrap_or(s.tcp_port);
    s.udp_port = raw.udp_port.unwrap_or(s.udp_port);
    if let Some(t) = raw.timeout_ms {
        if t == 0 || t > MAX_TIMEOUT_MS {
            err(
                &at("timeout_ms"),
                format!("timeout_ms = {t} is out of range"),
                Some(format!(
                    "use 1..{MAX_TIMEOUT_MS} (milliseconds); 1000 suits most labs"
                )),
            );
        }
        s.timeout_ms = t;
    }
    if let Some(n) = raw.packet_size {
        if !(64..=9000).contains(&n) {
            err(
                &at("packet_size"),
                format!("packet_size = {n} is out of range"),
                Some("ICMP and UDP probes send one IP packet of 64..9000 bytes (DF set)".into()),
            );
        }
        s.packet_size = Some(n);
    }
    if let Some(n) = raw.tcp_bytes {
        if n == 0 || n > MAX_TCP_BYTES {
            err(
                &at("tcp_bytes"),
                format!("tcp_bytes = {n} is out of range"),
                Some(format!("a TCP probe echoes 1..{MAX_TCP_BYTES} bytes")),
            );
        }
        s.tcp_bytes = Some(n);
    }
}

/// Counts, loss tolerance and the matrix's kind and sample, each in its range.
fn probe_counts_and_matrix(raw: &RawProbe, s: &mut ProbeSettings, err: &mut ProbeErr<'_>) {
    let at = probe_key;
    if let Some(n) = raw.count {
        if n == 0 || n > MAX_COUNT {
            err(
                &at("count"),
                format!("count = {n} is out of range"),
                Some(format!(
                    "use 1..{MAX_COUNT} packets (or connections) per probe"
                )),
            );
        }
        s.count = n;
    }
    if let Some(n) = raw.loss_tolerance {
        if n > 100 {
            err(
                &at("loss_tolerance"),
                format!("loss_tolerance = {n} is over 100"),
                Some("a percentage, 0..100".into()),
            );
        }
        s.loss_tolerance = n;
    }
    if let Some(m) = &raw.matrix {
        match m.parse() {
            Ok(k) => s.matrix = k,
            Err(msg) => err(
                &at("matrix"),
                msg,
                Some(
                    "use \"all\" (every host pair), \"bounded\" (anchors and a sample, for big \
                     labs) or \"auto\" (all up to 16384 pairs, the default)"
                        .into(),
                ),
            ),
        }
    }
    if let Some(n) = raw.sample {
        if n == 0 || n > MAX_SAMPLE {
            err(
                &at("sample"),
                format!("sample = {n} is out of range"),
                Some(format!(
                    "each pod probes 1..{MAX_SAMPLE} other pods in a bounded matrix"
                )),
            );
        }
        s.sample = n;
    }
}

pub const MAX_SAMPLE: usize = 256;

/// Reads and validates a fixture file.
pub fn load_fixture(path: &Path) -> Result<Topology, ConfigErrors> {
    let src = Source::read(path)?;
    parse_fixture(&src)
}

/// Validates fixture text; `src.path` names it in errors and gives the fixture its name.
pub fn parse_fixture(src: &Source) -> Result<Topology, ConfigErrors> {
    // A case given where a fixture belongs (`netfault up CASE`): say which is which.
    if let Ok(t) = toml::from_str::<toml::Table>(&src.text) {
        if t.contains_key("fixture") && !t.contains_key("node") {
            return Err(src
                .error_at_path(
                    &[Key::Field("fixture")],
                    "this is a case file (it names a fixture and faults), not a fixture",
                    Some(format!(
                        "netfault run {} runs the case; netfault up takes the fixture it names",
                        src.path.display()
                    )),
                )
                .into());
        }
    }
    let raw: RawFixture = toml::from_str(&src.text).map_err(|e| src.toml_error(&e))?;
    let mut v = Validator {
        src,
        errors: Vec::new(),
        suppressed: 0,
        warnings: Vec::new(),
    };
    let mut topo = v.fixture(raw);
    topo.warnings = v.warnings.iter().map(ConfigError::as_warning).collect();
    v.finish(topo)
}

pub use validator::MAX_ERRORS;

/// What the hosts of a fixture claim as they are validated: the hosts so far, every address
/// and who holds it, the uplink segment (and who set it), every node's pod CIDR.
#[derive(Default)]
struct Claims {
    hosts: Vec<Host>,
    addrs: BTreeMap<Ipv4Addr, String>,
    uplink: Option<(Ipv4Net, String)>,
    pod_cidrs: Vec<(Ipv4Net, String)>,
    /// The same for IPv6, in a dual-stack fixture.
    v6: dual::Claims6,
}

impl Validator<'_> {
    fn fixture(&mut self, raw: RawFixture) -> Topology {
        let name = self
            .src
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "fixture".into());
        let total = raw.node.len() + raw.pod.len() + raw.external.len();
        if total == 0 {
            self.err(
                &[],
                "the fixture declares no hosts",
                Some("add at least one [node.NAME], [pod.NAME] or [external.NAME] table".into()),
            );
        }
        if total > MAX_HOSTS {
            self.err(
                &[],
                format!("the fixture declares {total} hosts, over the limit of {MAX_HOSTS}"),
                Some(
                    "a lab is built in this machine's memory; split it into smaller fixtures"
                        .into(),
                ),
            );
            return empty_topology(name, raw.description);
        }

        self.host_names(&raw);
        let mut acc = Claims::default();
        for (name, n) in &raw.node {
            self.node(name, n, &mut acc);
        }
        let cni = self.cni(raw.cni.as_ref(), &raw.node);
        let all_pods = self.generated_pods(&raw, &acc.hosts, cni.is_some());
        let mut per_node = HashMap::new();
        for (name, p) in &all_pods {
            self.pod(name, p, &raw, cni.is_some(), &mut per_node, &mut acc);
        }
        self.distinct_veths(&acc.hosts);
        for (name, e) in &raw.external {
            self.external(name, e, &mut acc);
        }
        self.segment_and_reserved(&acc);
        let Claims {
            hosts,
            uplink,
            pod_cidrs,
            v6,
            ..
        } = acc;
        let dual::Claims6 {
            uplink: uplink6,
            pod_cidrs: pod_cidrs6,
            ..
        } = v6;

        let cluster = self.cluster(raw.cluster.as_ref(), &pod_cidrs, &pod_cidrs6);
        let probe = self.probe(raw.probe.as_ref());
        let default_pairs = raw
            .probe
            .as_ref()
            .and_then(|p| p.default_pairs)
            .unwrap_or(true);
        let segment = uplink.map(|(cidr, _)| Segment {
            cidr,
            cidr6: uplink6.map(|(c, _)| c),
            members: hosts
                .iter()
                .filter_map(|h| match &h.role {
                    Role::Node(n) => Some((h.name.clone(), n.uplink_ifname.clone())),
                    Role::External(e) => Some((h.name.clone(), e.ifname.clone())),
                    Role::Pod(_) => None,
                })
                .collect(),
        });
        let mut topo = Topology {
            name,
            description: raw.description.clone(),
            hosts,
            uplink: segment,
            cluster,
            cni,
            probe,
            default_pairs,
            expect: Vec::new(),
            k8s: Default::default(),
            warnings: Vec::new(),
        };
        topo.k8s = self.k8s(
            k8s::RawK8s {
                namespace: &raw.namespace,
                service: &raw.service,
                policy: &raw.policy,
                dns: raw.dns.as_ref(),
                service_cidr: raw.cluster.as_ref().and_then(|c| c.service_cidr.as_ref()),
                proxy_mode: raw.cluster.as_ref().and_then(|c| c.proxy_mode.as_ref()),
            },
            &topo,
        );
        for (name, p) in &raw.pod {
            self.dns_name(
                &[Key::Field("pod"), Key::Field(name), Key::Field("namespace")],
                &p.namespace,
                "namespace",
            );
        }
        self.dual_stack_scope(&mut topo);
        topo.expect = self.expect_rules(&raw.expect, &topo, "expect");
        self.check_conflicts(&topo.expect, &topo, "expect");
        topo
    }

    /// Host names: valid, unique across roles.
    fn host_names(&mut self, raw: &RawFixture) {
        let mut seen: HashMap<String, &'static str> = HashMap::new();
        for (role, names) in [
            ("node", raw.node.keys().collect::<Vec<_>>()),
            ("pod", raw.pod.keys().collect()),
            ("external", raw.external.keys().collect()),
        ] {
            for n in names {
                if let Err(msg) = check_host_name(n) {
                    self.err(&[Key::Field(role), Key::Name(n)], msg, host_name_help());
                }
                if let Some(prev) = seen.insert(n.clone(), role) {
                    self.err(
                        &[Key::Field(role), Key::Name(n)],
                        format!("duplicate host name \"{n}\": already declared as [{prev}.{n}]"),
                        Some(
                            "every host needs its own name, across nodes, pods and external hosts"
                                .into(),
                        ),
                    );
                }
            }
        }
    }

    /// One `[node.NAME]`: its pod CIDR, gateway, uplink and interface names.
    fn node(&mut self, name: &str, n: &RawNode, acc: &mut Claims) {
        let at = |k: &'static str| [Key::Field("node"), Key::Field(name), Key::Field(k)];
        let (Some(pc), Some(upl)) = (
            self.split_families(&at("pod_cidr"), &n.pod_cidr, "pod_cidr"),
            self.split_families(&at("uplink"), &n.uplink, "uplink"),
        ) else {
            return;
        };
        let pod_cidr = self.net(&at("pod_cidr"), pc.v4, "pod_cidr");
        let uplink_net = self.iface_addr(&at("uplink"), upl.v4, "uplink");
        let v6 = self.node6(name, &pc, &upl, &mut acc.v6);
        for (k, v) in [("bridge", &n.bridge), ("uplink_ifname", &n.uplink_ifname)] {
            if let Err(msg) = check_ifname(v) {
                self.err(&at(k), msg, ifname_help());
            }
        }
        if n.bridge == n.uplink_ifname {
            self.err(
                &at("uplink_ifname"),
                format!(
                    "uplink_ifname \"{}\" is also the bridge's name",
                    n.uplink_ifname
                ),
                Some("give the bridge and the uplink different names".into()),
            );
        }
        let (Some(pod_cidr), Some(up)) = (pod_cidr, uplink_net) else {
            return;
        };
        if pod_cidr.prefix_len() > 30 {
            self.err(
                &at("pod_cidr"),
                format!("pod_cidr {pod_cidr} leaves no room for a gateway and pods"),
                Some("use a /30 or larger network, e.g. 10.244.1.0/24".into()),
            );
            return;
        }
        let gateway = match &n.gateway {
            Some(g) => self.addr(&at("gateway"), g, "gateway"),
            None => pod_cidr.hosts().next(),
        };
        let Some(gateway) = gateway else { return };
        if n.gateway.is_some() && !usable_in(pod_cidr, gateway) {
            self.err(
                &at("gateway"),
                format!("gateway {gateway} is not a usable address of pod_cidr {pod_cidr}"),
                Some(format!(
                    "pick an address inside {pod_cidr} other than its network and broadcast address"
                )),
            );
        }
        self.claim(
            &mut acc.addrs,
            gateway,
            name,
            &at(if n.gateway.is_some() {
                "gateway"
            } else {
                "pod_cidr"
            }),
        );
        self.claim(&mut acc.addrs, up.addr(), name, &at("uplink"));
        for (cidr, owner) in &acc.pod_cidrs {
            if overlaps(*cidr, pod_cidr) {
                self.err(
                    &at("pod_cidr"),
                    format!("pod_cidr {pod_cidr} overlaps {owner}'s pod_cidr {cidr}"),
                    Some(
                        "give every node its own pod CIDR, e.g. 10.244.1.0/24, 10.244.2.0/24"
                            .into(),
                    ),
                );
            }
        }
        acc.pod_cidrs.push((pod_cidr, name.to_string()));
        self.same_segment(&mut acc.uplink, up, name, &at("uplink"));
        acc.hosts.push(Host {
            name: name.to_string(),
            role: Role::Node(NodeSpec {
                pod_cidr,
                gateway,
                bridge: n.bridge.clone(),
                uplink_ifname: n.uplink_ifname.clone(),
                uplink: up,
                masquerade: n.masquerade,
                v6,
            }),
        });
    }

    /// One pod (declared or generated): its node, address and interface names.
    fn pod(
        &mut self,
        name: &str,
        p: &RawPod,
        raw: &RawFixture,
        cni: bool,
        per_node: &mut HashMap<String, usize>,
        acc: &mut Claims,
    ) {
        let at = |k: &'static str| [Key::Field("pod"), Key::Field(name), Key::Field(k)];
        let Some(node) = self.pod_node(name, p, raw, acc) else {
            return;
        };
        let count = per_node.entry(p.node.clone()).or_default();
        *count += 1;
        if *count == MAX_PODS_PER_NODE + 1 {
            self.err(
                &at("node"),
                format!("node {} has more than {MAX_PODS_PER_NODE} pods", p.node),
                Some("a Linux bridge takes at most 1023 ports; spread pods over more nodes".into()),
            );
        }
        let Some((ip, ip6)) = self.pod_ip(name, p, cni, &node) else {
            return;
        };
        let ip6 = ip6.and_then(|(s, i)| self.pod_ip6(name, &p.node, s, i, &node, &mut acc.v6));
        if cni {
            if p.host_veth.is_some() {
                self.err(
                    &at("host_veth"),
                    "with [cni], the plugin names the host veth",
                    Some("remove host_veth".into()),
                );
            }
            acc.hosts.push(Host {
                name: name.to_string(),
                role: Role::Pod(PodSpec {
                    node: p.node.clone(),
                    ip,
                    ip6,
                    ifname: p.ifname.clone(),
                    host_veth: String::new(),
                    namespace: p.namespace.clone(),
                    labels: p.labels.clone(),
                    ports: self.container_ports(name, &p.ports),
                }),
            });
            return;
        }
        if !usable_in(node.pod_cidr, ip) {
            self.err(
                &at("ip"),
                format!(
                    "pod {name}: {ip} is outside node {}'s pod_cidr {}",
                    p.node, node.pod_cidr
                ),
                Some(format!(
                    "pick a free address inside {} (not its network or broadcast address)",
                    node.pod_cidr
                )),
            );
        }
        self.claim(&mut acc.addrs, ip, name, &at("ip"));
        let host_veth = self.pod_host_veth(name, p, &node);
        acc.hosts.push(Host {
            name: name.to_string(),
            role: Role::Pod(PodSpec {
                node: p.node.clone(),
                ip,
                ip6,
                ifname: p.ifname.clone(),
                host_veth,
                namespace: p.namespace.clone(),
                labels: p.labels.clone(),
                ports: self.container_ports(name, &p.ports),
            }),
        });
    }
    /// The node a pod names, or an error saying why there is none.
    fn pod_node(
        &mut self,
        name: &str,
        p: &RawPod,
        raw: &RawFixture,
        acc: &Claims,
    ) -> Option<NodeSpec> {
        let at = |k: &'static str| [Key::Field("pod"), Key::Field(name), Key::Field(k)];
        let node = acc
            .hosts
            .iter()
            .find(|h| h.name == p.node)
            .and_then(|h| h.as_node())
            .cloned();
        let Some(node) = node else {
            if raw.node.contains_key(&p.node) {
                // The node is declared but invalid: its own error says why.
                return None;
            }
            let known: Vec<&str> = raw.node.keys().map(String::as_str).collect();
            let help = if known.is_empty() {
                "declare the node as a [node.NAME] table".to_string()
            } else {
                format!("nodes in this fixture: {}", known.join(", "))
            };
            let what = if raw.pod.contains_key(&p.node) || raw.external.contains_key(&p.node) {
                format!("pod {name}: \"{}\" is not a node", p.node)
            } else {
                format!("pod {name}: unknown host \"{}\"", p.node)
            };
            self.err(&at("node"), what, Some(help));
            return None;
        };
        Some(node)
    }

    /// A pod's address: from the fixture, or (with [cni]) left to the plugin's IPAM.
    fn pod_ip<'p>(
        &mut self,
        name: &str,
        p: &'p RawPod,
        cni: bool,
        node: &NodeSpec,
    ) -> Option<(Ipv4Addr, Option<(&'p str, usize)>)> {
        let at = |k: &'static str| [Key::Field("pod"), Key::Field(name), Key::Field(k)];
        match (cni, &p.ip) {
            (true, Some(_)) => {
                self.err(
                    &at("ip"),
                    format!("pod {name}: with [cni], the plugin's IPAM assigns pod addresses"),
                    Some("remove ip; netfault reads the address from the plugin's result".into()),
                );
                None
            }
            (true, None) => Some((Ipv4Addr::UNSPECIFIED, None)),
            (false, None) => {
                self.err(
                    &[Key::Field("pod"), Key::Name(name)],
                    format!("pod {name} has no ip"),
                    Some(format!(
                        "add ip = \"ADDRESS\" with an address inside {}",
                        node.pod_cidr
                    )),
                );
                None
            }
            (false, Some(v)) => {
                let Split { v4, v6 } = self.split_families(&at("ip"), v, "ip")?;
                Some((self.addr(&at("ip"), v4, "ip")?, v6))
            }
        }
    }

    /// The node-side veth name of a pod, checked against the kernel's limits and the node's
    /// own interfaces.
    fn pod_host_veth(&mut self, name: &str, p: &RawPod, node: &NodeSpec) -> String {
        let at = |k: &'static str| [Key::Field("pod"), Key::Field(name), Key::Field(k)];
        let host_veth = p
            .host_veth
            .clone()
            .unwrap_or_else(|| format!("veth-{name}"));
        if let Err(msg) = check_ifname(&p.ifname) {
            self.err(&at("ifname"), msg, ifname_help());
        }
        if let Err(msg) = check_ifname(&host_veth) {
            if p.host_veth.is_some() {
                self.err(&at("host_veth"), msg, ifname_help());
            } else if host_veth.len() > MAX_IFNAME {
                self.err(
                    &[Key::Field("pod"), Key::Name(name)],
                    format!(
                        "pod name \"{name}\" makes the node-side interface \"{host_veth}\" ({} bytes), \
                         over the kernel's {MAX_IFNAME}-byte limit",
                        host_veth.len()
                    ),
                    Some("shorten the pod name to 10 bytes, or set host_veth = \"NAME\" (15 bytes at most)".into()),
                );
            }
        } else if host_veth == node.bridge || host_veth == node.uplink_ifname {
            self.err(
                &at("host_veth"),
                format!(
                    "host_veth \"{host_veth}\" clashes with an interface of node {}",
                    p.node
                ),
                Some("pick another name".into()),
            );
        }
        host_veth
    }

    /// Two pods of one node may not share a node-side interface name.
    fn distinct_veths(&mut self, hosts: &[Host]) {
        let mut veths: HashMap<(String, String), String> = HashMap::new();
        for h in hosts {
            if let Role::Pod(p) = &h.role {
                if p.host_veth.is_empty() {
                    continue;
                }
                if let Some(other) =
                    veths.insert((p.node.clone(), p.host_veth.clone()), h.name.clone())
                {
                    self.err(
                        &[Key::Field("pod"), Key::Name(&h.name)],
                        format!(
                            "pods {other} and {} both use \"{}\" on node {}",
                            h.name, p.host_veth, p.node
                        ),
                        Some("set host_veth to distinct names".into()),
                    );
                }
            }
        }
    }

    /// One `[external.NAME]`: its interface and uplink address.
    fn external(&mut self, name: &str, e: &RawExternal, acc: &mut Claims) {
        let at = |k: &'static str| [Key::Field("external"), Key::Field(name), Key::Field(k)];
        if let Err(msg) = check_ifname(&e.ifname) {
            self.err(&at("ifname"), msg, ifname_help());
        }
        let Some(upl) = self.split_families(&at("uplink"), &e.uplink, "uplink") else {
            return;
        };
        let Some(addr) = self.iface_addr(&at("uplink"), upl.v4, "uplink") else {
            return;
        };
        let addr6 = upl.v6.and_then(|(s, i)| {
            self.uplink6(
                name,
                s,
                &dual::at_index(&at("uplink"), Some(i)),
                &mut acc.v6,
            )
        });
        self.claim(&mut acc.addrs, addr.addr(), name, &at("uplink"));
        self.same_segment(&mut acc.uplink, addr, name, &at("uplink"));
        acc.hosts.push(Host {
            name: name.to_string(),
            role: Role::External(ExternalSpec {
                ifname: e.ifname.clone(),
                addr,
                addr6,
            }),
        });
    }

    /// The uplink segment against the pod CIDRs, and the name netfault keeps for its switch.
    fn segment_and_reserved(&mut self, acc: &Claims) {
        if let Some((seg, owner)) = &acc.uplink {
            for (cidr, node) in &acc.pod_cidrs {
                if overlaps(*cidr, *seg) {
                    self.err(
                        &[Key::Field("node"), Key::Field(node), Key::Field("pod_cidr")],
                        format!(
                            "pod_cidr {cidr} overlaps the uplink segment {seg} (set by {owner})"
                        ),
                        Some("pod CIDRs and the uplink segment must not overlap".into()),
                    );
                }
            }
        }
        if acc.hosts.iter().any(|h| h.name == SWITCH_HOST) {
            let role = acc
                .hosts
                .iter()
                .find(|h| h.name == SWITCH_HOST)
                .unwrap()
                .role_name();
            self.err(
                &[Key::Field(role), Key::Name(SWITCH_HOST)],
                format!("\"{SWITCH_HOST}\" is reserved for the uplink switch netfault builds"),
                Some("rename the host".into()),
            );
        }
    }

    /// The fixture's pods plus those `pods = N` asks for: named pod-1, pod-2, ... in node order
    /// (skipping names the fixture uses), each at the next free address of its node's pod CIDR.
    fn generated_pods(
        &mut self,
        raw: &RawFixture,
        hosts: &[Host],
        cni: bool,
    ) -> IndexMap<String, RawPod> {
        let mut all = raw.pod.clone();
        let mut next = 1usize;
        for (node, rn) in &raw.node {
            let Some(n) = rn.pods else { continue };
            let at = [Key::Field("node"), Key::Field(node), Key::Field("pods")];
            let Some(spec) = hosts
                .iter()
                .find(|h| &h.name == node)
                .and_then(|h| h.as_node())
            else {
                continue;
            };
            let declared = raw.pod.values().filter(|p| &p.node == node).count() as u64;
            if n + declared > MAX_PODS_PER_NODE as u64 {
                self.err(
                    &at,
                    format!(
                        "pods = {n}: node {node} would have {} pods, more than {MAX_PODS_PER_NODE}",
                        n + declared
                    ),
                    Some(
                        "a Linux bridge takes at most 1023 ports; spread pods over more nodes"
                            .into(),
                    ),
                );
                continue;
            }
            let taken: Vec<Ipv4Addr> = raw
                .pod
                .values()
                .filter_map(|p| match &p.ip {
                    Some(OneOrTwo::One(s)) => s.parse().ok(),
                    Some(OneOrTwo::Two(l)) => l.iter().find_map(|s| s.parse().ok()),
                    None => None,
                })
                .collect();
            let mut free = spec
                .pod_cidr
                .hosts()
                .filter(|ip| *ip != spec.gateway && !taken.contains(ip));
            for _ in 0..n {
                while all.contains_key(&format!("pod-{next}")) {
                    next += 1;
                }
                let ip = if cni {
                    None
                } else {
                    match free.next() {
                        Some(ip) => Some(match spec.v6 {
                            None => OneOrTwo::one(ip.to_string()),
                            Some(v6) => OneOrTwo::Two(vec![
                                ip.to_string(),
                                dual::twin_address(spec.pod_cidr, ip, v6.pod_cidr).to_string(),
                            ]),
                        }),
                        None => {
                            self.err(
                                &at,
                                format!(
                                    "pods = {n}: node {node}'s pod_cidr {} has no address left",
                                    spec.pod_cidr
                                ),
                                Some("use a larger pod_cidr or fewer pods".into()),
                            );
                            break;
                        }
                    }
                };
                all.insert(
                    format!("pod-{next}"),
                    RawPod {
                        node: node.clone(),
                        ip,
                        ifname: default_eth0(),
                        host_veth: None,
                        namespace: super::k8s::default_namespace(),
                        labels: Default::default(),
                        ports: Vec::new(),
                    },
                );
                next += 1;
            }
        }
        all
    }

    fn cluster(
        &mut self,
        raw: Option<&RawCluster>,
        pod_cidrs: &[(Ipv4Net, String)],
        pod_cidrs6: &[(Ipv6Net, String)],
    ) -> Cluster {
        let at = |k: &'static str| [Key::Field("cluster"), Key::Field(k)];
        let smallest = smallest_supernet(pod_cidrs.iter().map(|(c, _)| *c));
        let mut c = Cluster {
            network: Network::Bridge,
            cidr: smallest.unwrap_or_else(|| "10.244.0.0/16".parse().expect("cidr")),
            cidr6: dual::smallest_supernet6(
                &pod_cidrs6.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            ),
            neighbours: Neighbours::Static,
        };
        let Some(raw) = raw else { return c };
        c.neighbours = match raw.neighbours.as_deref() {
            None | Some("static") => Neighbours::Static,
            Some("dynamic") => Neighbours::Dynamic,
            Some(other) => {
                self.err(
                    &at("neighbours"),
                    format!("unknown neighbours \"{other}\""),
                    Some(
                        "use \"static\" (permanent entries, the default) or \"dynamic\" (ARP)"
                            .into(),
                    ),
                );
                Neighbours::Static
            }
        };
        let split = raw
            .cidr
            .as_ref()
            .and_then(|v| self.split_families(&at("cidr"), v, "cidr"));
        if let Some((s6, i)) = split.as_ref().and_then(|s| s.v6) {
            c.cidr6 = self.cluster_cidr6(&dual::at_index(&at("cidr"), Some(i)), s6, pod_cidrs6);
        }
        if let Some(s) = split.map(|s| s.v4) {
            if let Some(net) = self.net(&at("cidr"), s, "cidr") {
                for (pc, node) in pod_cidrs {
                    if !net.contains(pc) {
                        self.err(
                            &at("cidr"),
                            format!("cluster cidr {net} does not hold {node}'s pod_cidr {pc}"),
                            Some("the cluster CIDR must hold every node's pod CIDR, e.g. 10.244.0.0/16".into()),
                        );
                    }
                }
                c.cidr = net;
            }
        }
        let name = raw.network.as_deref().unwrap_or("bridge");
        c.network = match name {
            "bridge" => Network::Bridge,
            "host-gw" => Network::HostGw,
            "vxlan" => {
                let device = raw
                    .vxlan_device
                    .clone()
                    .unwrap_or_else(|| "flannel.1".into());
                if let Err(msg) = check_ifname(&device) {
                    self.err(&at("vxlan_device"), msg, ifname_help());
                }
                let vni = raw.vxlan_vni.unwrap_or(1);
                if vni == 0 || vni > 0xff_ffff {
                    self.err(
                        &at("vxlan_vni"),
                        format!("vxlan_vni {vni} is out of range"),
                        Some("a VNI is 1..16777215".into()),
                    );
                }
                let port = raw.vxlan_port.unwrap_or(8472);
                if port == 0 {
                    self.err(
                        &at("vxlan_port"),
                        "vxlan_port 0 is not a port",
                        Some("flannel uses 8472, the IANA port is 4789".into()),
                    );
                }
                let mtu = raw.vxlan_mtu.unwrap_or(1450);
                if !(576..=9000).contains(&mtu) {
                    self.err(
                        &at("vxlan_mtu"),
                        format!("vxlan_mtu {mtu} is out of range"),
                        Some("use 576..9000; flannel uses 1450".into()),
                    );
                }
                Network::Vxlan(VxlanSpec {
                    device,
                    vni,
                    port,
                    mtu,
                })
            }
            "routed" => {
                let gw = raw.routed_gateway.as_deref().unwrap_or("169.254.1.1");
                let gateway = self
                    .addr(&at("routed_gateway"), gw, "routed_gateway")
                    .unwrap_or(Ipv4Addr::new(169, 254, 1, 1));
                Network::Routed { gateway }
            }
            "ipip" | "geneve" | "wireguard" => Network::Tunnel {
                kind: name.to_string(),
            },
            other => {
                self.err(
                    &at("network"),
                    format!("unknown network \"{other}\""),
                    Some(format!("use one of: {}", NETWORKS.join(", "))),
                );
                Network::Bridge
            }
        };
        let stray = |k: &str, set: bool| set.then(|| k.to_string());
        let vx = [
            stray("vxlan_device", raw.vxlan_device.is_some()),
            stray("vxlan_vni", raw.vxlan_vni.is_some()),
            stray("vxlan_port", raw.vxlan_port.is_some()),
            stray("vxlan_mtu", raw.vxlan_mtu.is_some()),
        ];
        if name != "vxlan" {
            for k in vx.into_iter().flatten() {
                let key: &'static str = match k.as_str() {
                    "vxlan_device" => "vxlan_device",
                    "vxlan_vni" => "vxlan_vni",
                    "vxlan_port" => "vxlan_port",
                    _ => "vxlan_mtu",
                };
                self.err(
                    &at(key),
                    format!("{k} applies to network = \"vxlan\" only"),
                    Some("remove it, or set network = \"vxlan\"".into()),
                );
            }
        }
        if name != "routed" && raw.routed_gateway.is_some() {
            self.err(
                &at("routed_gateway"),
                "routed_gateway applies to network = \"routed\" only",
                None,
            );
        }
        c
    }

    /// `[cni]`: the conflist that attaches pods, read and checked (placeholders filled in for the
    /// first node).
    fn cni(&mut self, raw: Option<&RawCni>, nodes: &IndexMap<String, RawNode>) -> Option<CniSpec> {
        let raw = raw?;
        let at = |k: &'static str| [Key::Field("cni"), Key::Field(k)];
        let path = self
            .src
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&raw.conflist);
        let text = match Source::read(&path) {
            Ok(s) => s.text,
            Err(e) => {
                self.err(
                    &at("conflist"),
                    format!("conflist \"{}\": {}", raw.conflist, e.message),
                    Some("the path is relative to the fixture's directory".into()),
                );
                return None;
            }
        };
        let (first, node) = nodes.iter().next().map(|(n, x)| (n.clone(), x))?;
        let cidr = node.pod_cidr.first_v4()?.parse::<Ipv4Net>().ok()?;
        let cidr6 = node
            .pod_cidr
            .v6_entry()
            .and_then(|s| s.parse::<ipnet::Ipv6Net>().ok());
        if let (None, Some(p)) = (
            cidr6,
            CONFLIST_V6_PLACEHOLDERS.iter().find(|p| text.contains(**p)),
        ) {
            self.err(
                &at("conflist"),
                format!("conflist \"{}\" uses {p}, but node {first} has no IPv6 pod_cidr", raw.conflist),
                Some("give the nodes a second, IPv6 entry in pod_cidr and uplink, or drop the IPv6 range".into()),
            );
            return None;
        }
        let v6 = cidr6.map(|c| (c, std::net::Ipv6Addr::from(u128::from(c.network()) + 1)));
        let filled = fill_conflist(&text, &first, cidr, cidr.hosts().next()?, v6);
        let list = match super::conflist::ConfList::parse(&Source::new(&path, filled)) {
            Ok(l) => l,
            Err(e) => {
                self.errors.push(e);
                return None;
            }
        };
        let first_type = list.plugin_types().into_iter().next().unwrap_or_default();
        let bridge = match first_type.as_str() {
            "bridge" => Some(
                list.plugins[0]
                    .get("bridge")
                    .and_then(|b| b.as_str())
                    .unwrap_or("cni0")
                    .to_string(),
            ),
            "ptp" => None,
            other => {
                self.err(
                    &at("conflist"),
                    format!("the conflist's first plugin is \"{other}\": netfault attaches pods with bridge or ptp"),
                    Some("put a bridge or ptp plugin first; chained plugins (portmap, firewall, tuning, ...) may follow".into()),
                );
                return None;
            }
        };
        let runtime_config = match &raw.runtime_config {
            None => serde_json::Value::Object(Default::default()),
            Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(v) if v.is_object() => v,
                _ => {
                    self.err(
                        &at("runtime_config"),
                        "runtime_config must be a JSON object",
                        Some("for example '{\"portMappings\": []}'".into()),
                    );
                    serde_json::Value::Object(Default::default())
                }
            },
        };
        Some(CniSpec {
            conflist_path: path,
            template: text,
            path: raw
                .path
                .iter()
                .flatten()
                .map(std::path::PathBuf::from)
                .collect(),
            bridge,
            runtime_config,
        })
    }

    fn probe(&mut self, raw: Option<&RawProbe>) -> ProbeSettings {
        let mut s = ProbeSettings::default();
        if let Some(raw) = raw {
            apply_probe(self.src, raw, &mut s, false, &mut self.errors);
        }
        s
    }

    /// `table` is the name of the TOML table holding the rules (`expect`).
    fn expect_rules(
        &mut self,
        raw: &IndexMap<String, String>,
        topo: &Topology,
        table: &str,
    ) -> Vec<ExpectRule> {
        parse_expect_rules(self.src, raw, topo, &[Key::Field(table)], &mut self.errors)
    }

    fn check_conflicts(&mut self, rules: &[ExpectRule], topo: &Topology, table: &str) {
        check_expect_conflicts(
            self.src,
            rules,
            topo,
            &[Key::Field(table)],
            &mut self.errors,
        );
    }

    fn same_segment(
        &mut self,
        seg: &mut Option<(Ipv4Net, String)>,
        addr: Ipv4Net,
        host: &str,
        at: &[Key],
    ) {
        match seg {
            None => *seg = Some((addr.trunc(), host.to_string())),
            Some((net, owner)) if *net != addr.trunc() => {
                let msg = format!(
                    "{host}'s uplink {addr} is not on the uplink segment {net} (set by {owner})"
                );
                self.err(
                    at,
                    msg,
                    Some(format!("every node and external host shares one uplink segment: use an address in {net}")),
                );
            }
            Some(_) => {}
        }
    }
}

fn empty_topology(name: String, description: String) -> Topology {
    Topology {
        name,
        description,
        hosts: Vec::new(),
        uplink: None,
        cni: None,
        cluster: Cluster {
            network: Network::Bridge,
            cidr: "10.244.0.0/16".parse().expect("cidr"),
            cidr6: None,
            neighbours: Neighbours::Static,
        },
        probe: ProbeSettings::default(),
        default_pairs: false,
        expect: Vec::new(),
        k8s: Default::default(),
        warnings: Vec::new(),
    }
}

/// The key path `table` and then `key`.
fn under<'a>(table: &[Key<'a>], key: Key<'a>) -> Vec<Key<'a>> {
    let mut v = table.to_vec();
    v.push(key);
    v
}

/// Parses `[expect]`-style rules against a topology's hosts (shared by fixtures and cases).
pub(crate) fn parse_expect_rules(
    src: &Source,
    raw: &IndexMap<String, String>,
    topo: &Topology,
    table: &[Key],
    errors: &mut Vec<ConfigError>,
) -> Vec<ExpectRule> {
    let owned = topo.probe_names();
    let names: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut rules = Vec::new();
    for (key, value) in raw {
        let key_at = under(table, Key::Name(key));
        let pattern = match PairPattern::from_str(key) {
            Ok(p) => p,
            Err(msg) => {
                errors.push(src.error_at_path(
                    &key_at,
                    msg,
                    Some("keys look like \"pod-a -> ext\" or \"pod-* -> ext tcp\"".into()),
                ));
                continue;
            }
        };
        let mut ok = true;
        for g in [&pattern.from, &pattern.to] {
            if !names.iter().any(|n| g.matches(n)) {
                let what = if g.is_exact() {
                    "unknown host"
                } else {
                    "glob matches no host:"
                };
                let targets = topo.target_names();
                let help = if targets.is_empty() {
                    format!("hosts in {}: {}", topo.name, topo.host_names().join(", "))
                } else {
                    format!(
                        "hosts in {}: {}; targets: {}",
                        topo.name,
                        topo.host_names().join(", "),
                        targets.join(", ")
                    )
                };
                errors.push(src.error_at_path(
                    &key_at,
                    format!("{what} \"{}\" in \"{key}\"", g.0),
                    Some(help),
                ));
                ok = false;
            }
        }
        let outcome = match Outcome::from_str(value) {
            Ok(Outcome::Unsupported) => {
                errors.push(src.error_at_path(
                    &under(table, Key::Field(key)),
                    "\"unsupported\" cannot be expected: it means nothing was decided",
                    Some("expect reachable, refused, unreachable or timeout".into()),
                ));
                continue;
            }
            Ok(o) => o,
            Err(msg) => {
                errors.push(src.error_at_path(&under(table, Key::Field(key)), msg, None));
                continue;
            }
        };
        if ok {
            let span = src.locate(&key_at);
            let (line, _) = src.line_col(span.start);
            rules.push(ExpectRule {
                pattern,
                outcome,
                origin: format!("{}:{line}", src.path.display()),
            });
        }
    }
    rules
}

pub(crate) fn check_expect_conflicts(
    src: &Source,
    rules: &[ExpectRule],
    topo: &Topology,
    table: &[Key],
    errors: &mut Vec<ConfigError>,
) {
    let owned = topo.probe_names();
    let names: Vec<&str> = owned.iter().map(String::as_str).collect();
    for (a, b, probe) in expect::conflicts(rules, &names) {
        errors.push(src.error_at_path(
            &under(table, Key::Name(&b.pattern.to_string())),
            format!(
                "\"{}\" = \"{}\" conflicts with \"{}\" = \"{}\" ({}) for {probe}",
                b.pattern, b.outcome, a.pattern, a.outcome, a.origin
            ),
            Some("the two rules are equally specific; make one name the host or protocol exactly".into()),
        ));
    }
}

/// A conflist template for one node: `{node}`, `{pod_cidr}` and `{gateway}` filled in.
/// A conflist template for one node: `{node}`, `{pod_cidr}`, `{gateway}` and, on a dual-stack
/// node, `{pod_cidr6}` and `{gateway6}` (for host-local's second range).
pub fn fill_conflist(
    template: &str,
    node: &str,
    pod_cidr: Ipv4Net,
    gateway: Ipv4Addr,
    v6: Option<(ipnet::Ipv6Net, std::net::Ipv6Addr)>,
) -> String {
    let mut text = template
        .replace("{node}", node)
        .replace("{pod_cidr}", &pod_cidr.to_string())
        .replace("{gateway}", &gateway.to_string());
    if let Some((cidr, gw)) = v6 {
        text = text
            .replace("{pod_cidr6}", &cidr.to_string())
            .replace("{gateway6}", &gw.to_string());
    }
    text
}

/// The IPv6 placeholders a conflist template may use.
pub const CONFLIST_V6_PLACEHOLDERS: [&str; 2] = ["{pod_cidr6}", "{gateway6}"];

/// The smallest network holding every given one.
fn smallest_supernet(nets: impl Iterator<Item = Ipv4Net>) -> Option<Ipv4Net> {
    let nets: Vec<Ipv4Net> = nets.collect();
    let first = *nets.first()?;
    let mut len = first.prefix_len();
    loop {
        let cand = Ipv4Net::new(first.network(), len).ok()?.trunc();
        if nets.iter().all(|n| cand.contains(n)) {
            return Some(cand);
        }
        len = len.checked_sub(1)?;
    }
}

fn usable_in(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

pub(crate) fn check_host_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("a host name is empty".into());
    }
    if n.len() > MAX_HOST_NAME {
        return Err(format!(
            "host name \"{n}\" is {} bytes, over the limit of {MAX_HOST_NAME}",
            n.len()
        ));
    }
    let ok_chars = n
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || n.starts_with('-') || n.ends_with('-') {
        return Err(format!(
            "host name \"{}\" is not a valid name",
            n.escape_debug()
        ));
    }
    Ok(())
}

fn host_name_help() -> Option<String> {
    Some("host names use lowercase letters, digits and '-', like Kubernetes names (e.g. pod-a, node1)".into())
}

pub(crate) fn check_ifname(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("interface name is empty".into());
    }
    if n.len() > MAX_IFNAME {
        return Err(format!(
            "interface name \"{n}\" is {} bytes, over the kernel's {MAX_IFNAME}-byte limit",
            n.len()
        ));
    }
    if n == "."
        || n == ".."
        || n == "lo"
        || n.contains(['/', ':'])
        || n.contains(char::is_whitespace)
        || !n.is_ascii()
    {
        return Err(format!(
            "\"{}\" cannot be an interface name",
            n.escape_debug()
        ));
    }
    Ok(())
}

fn ifname_help() -> Option<String> {
    Some("interface names are 1 to 15 ASCII bytes, without '/', ':' or spaces".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SINGLE: &str = include_str!("../../../fixtures/single-node.toml");

    fn parse(text: &str) -> Result<Topology, ConfigErrors> {
        parse_fixture(&Source::new("t.toml", text))
    }

    fn first_error(text: &str) -> ConfigError {
        parse(text).expect_err("should fail").0.remove(0)
    }

    #[test]
    fn single_node_fixture_parses() {
        let t = parse_fixture(&Source::new("fixtures/single-node.toml", SINGLE)).unwrap();
        assert_eq!(t.name, "single-node");
        assert_eq!(t.host_names(), ["node1", "pod-a", "pod-b", "ext"]);
        let n = t.host("node1").unwrap().as_node().unwrap();
        assert_eq!(n.gateway, "10.244.1.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(n.uplink.to_string(), "203.0.113.1/24");
        assert_eq!(n.bridge, "cni0");
        assert_eq!(t.host("pod-a").unwrap().address().to_string(), "10.244.1.2");
        assert_eq!(
            t.host("pod-a").unwrap().as_pod().unwrap().host_veth,
            "veth-pod-a"
        );
        assert_eq!(t.host("ext").unwrap().address().to_string(), "203.0.113.10");
        assert!(!t.needs_switch());
        // Healthy pairs: the defaults, and ext -> pods unreachable as the fixture says.
        assert_eq!(
            t.healthy("pod-a", "pod-b", Proto::Tcp),
            Some(Outcome::Reachable)
        );
        assert_eq!(
            t.healthy("pod-a", "node1", Proto::Icmp),
            Some(Outcome::Reachable)
        );
        assert_eq!(
            t.healthy("node1", "pod-b", Proto::Udp),
            Some(Outcome::Reachable)
        );
        assert_eq!(
            t.healthy("pod-b", "ext", Proto::Udp),
            Some(Outcome::Reachable)
        );
        assert_eq!(
            t.healthy("ext", "node1", Proto::Udp),
            Some(Outcome::Reachable)
        );
        assert_eq!(
            t.healthy("ext", "pod-a", Proto::Tcp),
            Some(Outcome::Unreachable)
        );
    }

    const BASE: &str = r#"
[node.node1]
pod_cidr = "10.244.1.0/24"
uplink = "203.0.113.1/24"

[pod.pod-a]
node = "node1"
ip = "10.244.1.2"

[external.ext]
uplink = "203.0.113.10/24"
"#;

    #[test]
    fn base_is_valid() {
        parse(BASE).unwrap();
    }

    #[test]
    fn the_kubernetes_layer_is_validated_with_located_errors() {
        let svc = |body: &str| format!("{BASE}\n[service.web]\n{body}\n");
        let ok = parse(&svc(
            "cluster_ip = \"10.96.0.20\"\nport = 80\nendpoints = [\"pod-a:8080\"]",
        ))
        .unwrap();
        assert_eq!(ok.k8s.services[0].endpoints[0].port, 8080);
        assert_eq!(ok.target_names(), ["svc/web"]);

        let e = first_error(&svc("cluster_ip = \"10.244.1.9\"\nport = 80"));
        assert!(e.message.contains("10.244.1.9"), "{}", e.message);
        assert_eq!(e.line, 14);
        assert!(e.help.as_deref().unwrap_or("").contains("service_cidr"));

        let e = first_error(&svc(
            "cluster_ip = \"10.96.0.20\"\nport = 80\nendpoints = [\"pod-z:80\"]",
        ));
        assert_eq!(e.message, "endpoint \"pod-z:80\": no pod \"pod-z\"");
        assert_eq!(e.line, 16);

        let e = first_error(&svc(
            "cluster_ip = \"10.96.0.20\"\nport = 80\nnode_port = 80",
        ));
        assert!(e.message.contains("outside 30000..32767"), "{}", e.message);

        let e = first_error(&svc(
            "cluster_ip = \"10.96.0.20\"\nport = 80\nprotocol = \"icmp\"",
        ));
        assert!(
            e.message.contains("is not tcp, udp or sctp"),
            "{}",
            e.message
        );
        // Service types and traffic policies, as ValidateService: each field, what it says.
        let refused = [
            ("internal_traffic_policy = \"local\"", "internal_traffic_policy \"local\" is not Cluster or Local"),
            ("external_traffic_policy = \"Local\"", "external_traffic_policy applies to a Service with a node_port or a load_balancer_ip"),
            ("session_affinity = \"ClientIp\"", "session_affinity \"ClientIp\" is not None or ClientIP"),
            ("session_affinity = \"ClientIP\"\nsession_affinity_timeout = 0", "session_affinity_timeout 0 is not 1..86400 seconds"),
            ("load_balancer_ip = \"198.51.100.7\"", "load_balancer_ip 198.51.100.7 is not a free address of the uplink segment"),
            ("load_balancer_ip = \"203.0.113.10\"", "load_balancer_ip 203.0.113.10 is not a free address of the uplink segment"),
            ("load_balancer_source_ranges = [\"10.0.0.0/8\"]", "load_balancer_source_ranges without a load_balancer_ip"),
            ("external_ips = [\"203.0.113.1\"]", "external_ips 203.0.113.1 is not a free address of the uplink segment"),
        ];
        for (field, message) in refused {
            let e = first_error(&svc(&format!(
                "cluster_ip = \"10.96.0.20\"\nport = 80\n{field}"
            )));
            assert_eq!(e.message, message, "{field}");
        }

        let e = first_error(&format!("{BASE}\n[dns]\npod = \"pod-q\"\n"));
        assert_eq!(e.message, "[dns] pod: no pod \"pod-q\"");

        // As the API server: rules of a direction policy_types leaves out are accepted and
        // ignored; `egress = []` without policy_types does not isolate for egress
        // (SetDefaults_NetworkPolicy); an empty peer and an except outside its cidr are refused.
        let policy = |text: &str| {
            let t = parse(&format!("{BASE}\n{text}")).unwrap();
            t.k8s.policies[0].clone()
        };
        let p = policy("[policy.p]\npolicy_types = [\"Ingress\"]\negress = [{ to = [{ cidr = \"10.0.0.0/8\" }] }]\n");
        assert_eq!((p.ingress, p.egress), (Some(vec![]), None));
        let p = policy("[policy.p]\negress = []\n");
        assert_eq!((p.ingress, p.egress), (Some(vec![]), None));
        let p = policy("[policy.p]\negress = [{}]\n");
        assert!(p.egress.is_some(), "a non-empty egress list covers egress");
        let e = first_error(&format!(
            "{BASE}\n[policy.p]\ningress = [{{ from = [{{}}] }}]\n"
        ));
        assert!(e.message.contains("must specify a peer"), "{}", e.message);
        let e = first_error(&format!(
            "{BASE}\n[policy.p]\negress = [{{ to = [{{ cidr = \"10.0.0.0/8\", except = [\"10.0.0.0/8\"] }}] }}]\n"
        ));
        assert_eq!(
            e.message,
            "except \"10.0.0.0/8\" is not a strict subset of cidr \"10.0.0.0/8\""
        );
        // A policy name per namespace: the key may name the namespace.
        let t = parse(&format!(
            "{BASE}\n[policy.\"dev/allow-dns\"]\ningress = []\n[policy.\"prod/allow-dns\"]\ningress = []\n"
        ))
        .unwrap();
        let names: Vec<String> = t
            .k8s
            .policies
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        assert_eq!(names, ["dev/allow-dns", "prod/allow-dns"]);
        let e = first_error(&format!(
            "{BASE}\n[policy.a]\nnamespace = \"dev\"\ningress = []\n[policy.\"dev/a\"]\ningress = []\n"
        ));
        assert_eq!(e.message, "policy dev/a is declared twice");

        let e = first_error(&format!("{BASE}\n[policy.p]\ningress = [{{ to = [] }}]\n"));
        assert_eq!(e.message, "\"to\" in an ingress rule");
        assert_eq!(
            e.help.as_deref(),
            Some("an ingress rule names its peers with \"from\"")
        );

        // An ipBlock takes either family; its exceptions are of its own.
        let e = first_error(&format!(
            "{BASE}\n[policy.p]\negress = [{{ to = [{{ cidr = \"fd00::/8\", except = [\"10.0.0.0/8\"] }}] }}]\n"
        ));
        assert_eq!(
            e.message,
            "except \"10.0.0.0/8\" is not of cidr \"fd00::/8\"'s family"
        );
        // Host bits in an ipBlock: accepted, cleared, warned about (as the API server).
        let t = parse(&format!(
            "{BASE}\n[policy.p]\negress = [{{ to = [{{ cidr = \"fd00::1/8\" }}] }}]\n"
        ))
        .unwrap();
        assert!(
            t.warnings[0].contains("cidr \"fd00::1/8\" has host bits set: it means \"fd00::/8\""),
            "{:?}",
            t.warnings
        );

        // A rule may name a target as TO, and an unknown one is located with the targets listed.
        let t = format!(
            "{}\n[expect]\n\"pod-a -> svc/nope\" = \"timeout\"\n",
            svc("cluster_ip = \"10.96.0.20\"\nport = 80")
        );
        let e = first_error(&t);
        assert!(e.message.contains("svc/nope"), "{}", e.message);
        assert!(
            e.help.as_deref().unwrap_or("").contains("targets: svc/web"),
            "{:?}",
            e.help
        );
    }

    #[test]
    fn neighbours_are_static_unless_a_fixture_asks_for_arp() {
        assert_eq!(parse(BASE).unwrap().cluster.neighbours, Neighbours::Static);
        let t = parse(&format!("{BASE}\n[cluster]\nneighbours = \"dynamic\"\n")).unwrap();
        assert_eq!(t.cluster.neighbours, Neighbours::Dynamic);
        let e = first_error(&format!("{BASE}\n[cluster]\nneighbours = \"arp\"\n"));
        assert_eq!(
            (e.line, e.message.as_str()),
            (14, "unknown neighbours \"arp\"")
        );
        assert!(e
            .help
            .as_deref()
            .unwrap_or("")
            .contains("\"dynamic\" (ARP)"));
    }

    #[test]
    fn unknown_key_is_located() {
        let e = first_error(&BASE.replace("ip = \"10.244.1.2\"", "ip = \"10.244.1.2\"\nipp = 1"));
        assert_eq!((e.line, e.column), (9, 1));
        assert!(e.message.contains("unknown field `ipp`"), "{}", e.message);
    }

    #[test]
    fn unknown_host_is_located_and_named() {
        let e = first_error(&BASE.replace("node = \"node1\"", "node = \"node7\""));
        assert_eq!((e.line, e.column), (7, 8));
        assert!(
            e.message.contains("unknown host \"node7\""),
            "{}",
            e.message
        );
        assert_eq!(e.help.as_deref(), Some("nodes in this fixture: node1"));
    }

    #[test]
    fn duplicate_names_and_addresses() {
        let e = first_error(&format!(
            "{BASE}\n[external.pod-a]\nuplink = \"203.0.113.11/24\"\n"
        ));
        assert!(
            e.message.contains("duplicate host name \"pod-a\""),
            "{}",
            e.message
        );
        assert_eq!(e.line, 13);
        let e = first_error(&format!(
            "{BASE}\n[pod.pod-b]\nnode = \"node1\"\nip = \"10.244.1.2\"\n"
        ));
        assert!(
            e.message
                .contains("duplicate address 10.244.1.2: pod-a already uses it"),
            "{}",
            e.message
        );
        assert_eq!(e.line, 15);
        let e = first_error(&BASE.replace("10.244.1.2", "10.244.1.1"));
        assert!(
            e.message.contains("duplicate address 10.244.1.1: node1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn address_outside_cidr() {
        let e = first_error(&BASE.replace("10.244.1.2", "10.244.2.2"));
        assert!(
            e.message
                .contains("10.244.2.2 is outside node node1's pod_cidr 10.244.1.0/24"),
            "{}",
            e.message
        );
        let e = first_error(&BASE.replace("10.244.1.2", "10.244.1.255"));
        assert!(e.message.contains("outside"), "{}", e.message);
    }

    #[test]
    fn interface_name_over_15_bytes() {
        let e = first_error(&BASE.replace("[pod.pod-a]", "[pod.pod-abcdefghij]"));
        assert!(
            e.message.contains("\"veth-pod-abcdefghij\" (19 bytes)"),
            "{}",
            e.message
        );
        assert!(e.help.unwrap().contains("host_veth"));
        let e = first_error(&BASE.replace(
            "uplink = \"203.0.113.1/24\"",
            "uplink = \"203.0.113.1/24\"\nbridge = \"a-very-long-bridge\"",
        ));
        assert!(
            e.message.contains("over the kernel's 15-byte limit"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bad_cidrs() {
        let e = first_error(&BASE.replace("10.244.1.0/24", "10.244.1.0/33"));
        assert!(e.message.contains("/33"), "{}", e.message);
        assert_eq!((e.line, e.column), (3, 12));
        let e = first_error(&BASE.replace("10.244.1.0/24", "10.244.1.7/24"));
        assert!(e.message.contains("host bits"), "{}", e.message);
        assert_eq!(e.help.as_deref(), Some("did you mean \"10.244.1.0/24\"?"));
        let e = first_error(&BASE.replace("10.244.1.0/24", "banana"));
        assert!(e.message.contains("no prefix length"), "{}", e.message);
        let e = first_error(&BASE.replace("203.0.113.10/24", "203.0.113.10"));
        assert!(e.message.contains("no prefix length"), "{}", e.message);
        let e = first_error(&BASE.replace("203.0.113.10/24", "198.51.100.10/24"));
        assert!(
            e.message
                .contains("not on the uplink segment 203.0.113.0/24"),
            "{}",
            e.message
        );
    }

    #[test]
    fn expect_rules_are_checked() {
        let e = first_error(&format!(
            "{BASE}\n[expect]\n\"ext -> pod-z\" = \"unreachable\"\n"
        ));
        assert!(
            e.message.contains("unknown host \"pod-z\""),
            "{}",
            e.message
        );
        let e = first_error(&format!("{BASE}\n[expect]\n\"ext -> pod-a\" = \"gone\"\n"));
        assert!(
            e.message.contains("unknown outcome \"gone\""),
            "{}",
            e.message
        );
        let e = first_error(&format!(
            "{BASE}\n[expect]\n\"ext -> pod-*\" = \"unreachable\"\n\"* -> pod-a\" = \"timeout\"\n"
        ));
        assert!(e.message.contains("conflicts with"), "{}", e.message);
    }

    #[test]
    fn wrong_types_and_garbage() {
        let e = first_error(&BASE.replace("ip = \"10.244.1.2\"", "ip = 10"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = first_error("this is not toml");
        assert_eq!(e.line, 1, "{e}");
        let e = first_error("description = \"x\"\n\nthis is not toml\n");
        assert_eq!(e.line, 3, "{e}");
        let e = first_error("");
        assert!(e.message.contains("no hosts"), "{}", e.message);
    }

    #[test]
    fn absurd_sizes_are_refused_before_anything_is_built() {
        let mut text = BASE.replace("10.244.1.0/24", "10.244.0.0/16");
        for i in 0..1100 {
            text.push_str(&format!(
                "[pod.p{i}]\nnode = \"node1\"\nip = \"10.{}.{}.{}\"\n",
                244,
                2 + i / 250,
                2 + i % 250
            ));
        }
        let errs = parse(&text).unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert!(
            errs.0[0]
                .message
                .contains("node node1 has more than 1023 pods"),
            "{errs}"
        );
    }
}
