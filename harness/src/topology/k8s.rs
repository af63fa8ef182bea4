//! The Kubernetes layer of a fixture: namespaces and labels, Services, NetworkPolicies and
//! cluster DNS, as plain data, and their semantics (selectors, what a policy allows, which
//! names DNS answers). No syscalls here: the lab compiles this into nft rules and a DNS server.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::expect::Proto;
pub use super::selector::{Labels, Operator, Requirement, Selector};

/// The label every namespace carries (as Kubernetes sets it).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
pub const DEFAULT_NAMESPACE: &str = "default";
/// Where the cluster DNS Service lives, and its name.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE: &str = "kube-dns";

pub fn default_namespace() -> String {
    DEFAULT_NAMESPACE.into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct K8s {
    /// Every namespace a pod, Service or policy names, with its labels.
    pub namespaces: BTreeMap<String, Labels>,
    pub services: Vec<Service>,
    pub policies: Vec<Policy>,
    pub dns: Option<DnsSpec>,
    /// Where ClusterIPs come from; nodes route it like a default route would.
    pub service_cidr: Ipv4Net,
    /// Where IPv6 ClusterIPs come from, in a dual-stack lab (`service_cidr`'s second entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr6: Option<Ipv6Net>,
    /// How kube-proxy renders the Services (`[cluster] proxy_mode`).
    #[serde(default)]
    pub proxy_mode: ProxyMode,
}

/// kube-proxy's mode: its nftables tables (the default) or its iptables chains, loaded with
/// iptables-nft-restore as the real kube-proxy loads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    #[default]
    Nftables,
    Iptables,
}

impl Default for K8s {
    fn default() -> Self {
        K8s {
            namespaces: BTreeMap::new(),
            services: Vec::new(),
            policies: Vec::new(),
            dns: None,
            service_cidr: "10.96.0.0/12".parse().expect("cidr"),
            service_cidr6: None,
            proxy_mode: ProxyMode::Nftables,
        }
    }
}

/// A Service: a virtual IP and port DNATed to endpoints by kube-proxy on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub cluster_ip: Ipv4Addr,
    /// A dual-stack Service's IPv6 ClusterIP (`cluster_ip`'s second entry, as `clusterIPs`):
    /// kube-proxy's ip6 table DNATs it to the endpoints' IPv6 addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip6: Option<Ipv6Addr>,
    pub port: u16,
    pub protocol: Proto,
    /// Reachable on every node's uplink address at this port.
    pub node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
    /// The cluster DNS Service: probed by name lookups, not by echo.
    pub dns: bool,
    /// Endpoints kube-proxy still has though no pod holds their address (a fault's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<(Ipv4Addr, u16)>,
    /// `internalTrafficPolicy: Local`: a ClusterIP reached from a node (or its pods) goes to
    /// that node's endpoints only, and is dropped where it has none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: a NodePort reached from outside the node (and its
    /// pods) goes to the node's own endpoints only, its client's address kept (no
    /// masquerade), and is dropped on a node without one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external_local: bool,
    /// `sessionAffinity: ClientIP`: how long (seconds) a client keeps going to the endpoint
    /// it got first (`sessionAffinityConfig.clientIP.timeoutSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_timeout: Option<u32>,
    /// `type: LoadBalancer`: its address, as MetalLB's layer-2 mode announces it (external
    /// hosts route it to one node), and `loadBalancerSourceRanges`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// `externalIPs`: addresses kube-proxy translates on every node; the cluster's admin routes
    /// them to a node (here, external hosts route each to the node a load balancer would use).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<Ipv4Addr>,
}

impl Service {
    /// The addresses outside the cluster kube-proxy translates for this Service, with the
    /// source ranges that may reach each: its load balancer's, then its external IPs.
    pub fn fronts(&self) -> Vec<(Ipv4Addr, &[Ipv4Net])> {
        let lb = self
            .load_balancer
            .iter()
            .map(|lb| (lb.ip, lb.source_ranges.as_slice()));
        lb.chain(self.external_ips.iter().map(|ip| (*ip, &[][..])))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub ip: Ipv4Addr,
    /// Only these sources may reach it (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub pod: String,
    pub port: u16,
}

/// A NetworkPolicy. `ingress`/`egress` None: the policy does not cover that direction;
/// Some(empty): it isolates the selected pods in that direction and allows nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub namespace: String,
    pub pod_selector: Selector,
    pub ingress: Option<Vec<PolicyRule>>,
    pub egress: Option<Vec<PolicyRule>>,
}

/// One ingress or egress rule: from/to any of `peers` (all when empty), on any of `ports` (all
/// when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PolicyPort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Peer {
    /// Pods matching `pod_selector` (all when None) in namespaces matching `namespace_selector`
    /// (the policy's own namespace when None).
    Pods {
        namespace_selector: Option<Selector>,
        pod_selector: Option<Selector>,
    },
    /// An address block, minus exceptions: IPv4 or IPv6 (an ipBlock matches its own family
    /// only, so a v4 block allows nothing of a pod's IPv6 traffic).
    Cidr { cidr: IpNet, except: Vec<IpNet> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPort {
    pub protocol: Proto,
    /// None: every port of the protocol.
    pub port: Option<PortRef>,
    /// With a numeric `port`: the last port of the range `port..=end_port` (`endPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

impl PolicyPort {
    /// A rule's single numbered port.
    pub fn number(protocol: Proto, port: u16) -> PolicyPort {
        PolicyPort {
            protocol,
            port: Some(PortRef::Number(port)),
            end_port: None,
        }
    }
}

/// A policy port by number, or by the name a pod gives one of its container ports (resolved
/// against the pod that receives the traffic, so one name may mean a different number per pod).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// A port a pod declares (`containerPorts`): probed as its own matrix column `POD:PORT`, and
/// what a policy's named port resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Proto,
}

/// Cluster DNS: a server in `pod` on `port`, behind the kube-dns Service `service_ip`:53.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSpec {
    pub pod: String,
    pub service_ip: Ipv4Addr,
    pub port: u16,
    pub domain: String,
}

/// What cluster DNS answers: a fully qualified name's A record and, for a dual-stack Service,
/// its AAAA record.
pub type DnsRecords = BTreeMap<String, (Ipv4Addr, Option<Ipv6Addr>)>;

/// A connection a policy decides on: who, to which address, protocol and (post-DNAT) port.
#[derive(Debug, Clone)]
pub struct Flow<'a> {
    pub from: &'a str,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport (tcp or udp, whatever the family): what a policy's ports name.
    pub proto: Proto,
    pub port: Option<u16>,
}

impl K8s {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.policies.is_empty() && self.dns.is_none()
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn dns_service(&self) -> Option<&Service> {
        self.services.iter().find(|s| s.dns)
    }

    pub fn namespace_labels(&self, ns: &str) -> Labels {
        self.namespaces.get(ns).cloned().unwrap_or_else(|| {
            [(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())]
                .into_iter()
                .collect()
        })
    }
}

/// A target of probes beyond hosts: `svc/NAME`, `nodeport/NAME@NODE`, `dns/NAME`,
/// `lb/NAME` (a LoadBalancer's address), and a port a pod declares, `POD:PORT` (its tcp, udp
/// or sctp cells are the ports of that number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Service(String),
    NodePort {
        service: String,
        node: String,
    },
    Dns(String),
    LoadBalancer(String),
    /// `externalip/NAME@IP`: one of a Service's external IPs.
    ExternalIp {
        service: String,
        ip: Ipv4Addr,
    },
    Port {
        pod: String,
        port: u16,
    },
}

impl Target {
    pub fn parse(name: &str) -> Option<Target> {
        if let Some(s) = name.strip_prefix("svc/") {
            return Some(Target::Service(s.to_string()));
        }
        if let Some(rest) = name.strip_prefix("nodeport/") {
            let (svc, node) = rest.split_once('@')?;
            return Some(Target::NodePort {
                service: svc.to_string(),
                node: node.to_string(),
            });
        }
        if let Some(s) = name.strip_prefix("dns/") {
            return Some(Target::Dns(s.to_string()));
        }
        if let Some(s) = name.strip_prefix("lb/") {
            return Some(Target::LoadBalancer(s.to_string()));
        }
        if let Some(rest) = name.strip_prefix("externalip/") {
            let (svc, ip) = rest.split_once('@')?;
            return Some(Target::ExternalIp {
                service: svc.to_string(),
                ip: ip.parse().ok()?,
            });
        }
        let (pod, port) = name.rsplit_once(':')?;
        Some(Target::Port {
            pod: pod.to_string(),
            port: port.parse().ok()?,
        })
    }

    pub fn name(&self) -> String {
        match self {
            Target::Service(s) => format!("svc/{s}"),
            Target::NodePort { service, node } => format!("nodeport/{service}@{node}"),
            Target::Dns(s) => format!("dns/{s}"),
            Target::LoadBalancer(s) => format!("lb/{s}"),
            Target::ExternalIp { service, ip } => format!("externalip/{service}@{ip}"),
            Target::Port { pod, port } => format!("{pod}:{port}"),
        }
    }
}

/// Parsed resolver settings (the part of resolv.conf a stub resolver uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    pub nameservers: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub ndots: usize,
}

impl Resolver {
    pub fn parse(text: &str) -> Resolver {
        let mut r = Resolver {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
        };
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match w.next() {
                Some("nameserver") => {
                    if let Some(ip) = w.next().and_then(|x| x.parse().ok()) {
                        r.nameservers.push(ip);
                    }
                }
                Some("search") => r.search = w.map(String::from).collect(),
                Some("domain") => {
                    if let Some(d) = w.next() {
                        r.search = vec![d.to_string()];
                    }
                }
                Some("options") => {
                    for o in w {
                        if let Some(n) = o.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                            r.ndots = n;
                        }
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// The names a stub resolver tries, in order (glibc's rule: with fewer dots than ndots,
    /// the search list first, then the name as is).
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(abs) = name.strip_suffix('.') {
            return vec![format!("{abs}.")];
        }
        let dots = name.matches('.').count();
        let searched: Vec<String> = self.search.iter().map(|s| format!("{name}.{s}.")).collect();
        if dots >= self.ndots {
            std::iter::once(format!("{name}."))
                .chain(searched)
                .collect()
        } else {
            searched.into_iter().chain([format!("{name}.")]).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_and_search_order_follow_the_stub_resolver() {
        let r = Resolver::parse(
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
        );
        assert_eq!(r.nameservers, [Ipv4Addr::new(10, 96, 0, 10)]);
        assert_eq!(r.ndots, 5);
        assert_eq!(
            r.candidates("web"),
            [
                "web.default.svc.cluster.local.",
                "web.svc.cluster.local.",
                "web.cluster.local.",
                "web."
            ]
        );
        assert_eq!(r.candidates("example.org.")[0], "example.org.");
        let one = Resolver::parse("nameserver 1.1.1.1\noptions ndots:1\nsearch a.b\n");
        assert_eq!(one.candidates("x.y"), ["x.y.", "x.y.a.b."]);
    }

    #[test]
    fn targets_round_trip() {
        for t in [
            "svc/web",
            "nodeport/web@node2",
            "dns/web",
            "lb/web",
            "externalip/web@203.0.113.101",
            "db:5432",
        ] {
            assert_eq!(Target::parse(t).unwrap().name(), t);
        }
        assert_eq!(Target::parse("pod-a"), None);
    }
}
