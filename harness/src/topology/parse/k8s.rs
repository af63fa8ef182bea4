//! `[namespace.*]`, `[service.*]`, `[policy.*]` and `[dns]` of a fixture: raw TOML and its
//! validation, with errors located like the rest of the file.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::Deserialize;

use super::super::expect::Proto;
use super::super::k8s::*;
use super::super::model::Topology;
use super::super::source::Key;
use super::validator::Validator;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamespace {
    #[serde(default)]
    labels: Labels,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    #[serde(default = "default_namespace")]
    pub(super) namespace: String,
    /// One ClusterIP, or one per family (Kubernetes' `clusterIPs`).
    pub(super) cluster_ip: super::dual::OneOrTwo,
    /// Kubernetes' `ipFamilies`: when given, the families `cluster_ip` lists, in its order.
    pub(super) ip_families: Option<Vec<String>>,
    port: u16,
    #[serde(default = "tcp")]
    protocol: String,
    node_port: Option<u16>,
    #[serde(default)]
    endpoints: Vec<String>,
    /// `internalTrafficPolicy`: "Cluster" (the default) or "Local".
    internal_traffic_policy: Option<String>,
    /// `externalTrafficPolicy`: "Cluster" (the default) or "Local"; a NodePort's only.
    external_traffic_policy: Option<String>,
    /// `sessionAffinity`: "None" (the default) or "ClientIP".
    session_affinity: Option<String>,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800).
    session_affinity_timeout: Option<u32>,
    /// `type: LoadBalancer`: the address (`status.loadBalancer.ingress[0].ip`, as MetalLB
    /// assigns it): on the uplink segment, announced by one node.
    load_balancer_ip: Option<String>,
    /// `loadBalancerSourceRanges`.
    #[serde(default)]
    load_balancer_source_ranges: Vec<String>,
    /// `externalIPs`: free addresses of the uplink segment.
    #[serde(default)]
    external_ips: Vec<String>,
}

fn tcp() -> String {
    "tcp".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pod: String,
    #[serde(default = "dns_ip")]
    service_ip: String,
    #[serde(default = "dns_port")]
    port: u16,
    #[serde(default = "dns_domain")]
    domain: String,
}

fn dns_ip() -> String {
    "10.96.0.10".into()
}
fn dns_port() -> u16 {
    53
}
fn dns_domain() -> String {
    "cluster.local".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    /// None: the namespace the table's key names (`[policy."dev/allow-dns"]`), else default.
    namespace: Option<String>,
    #[serde(default)]
    pod_selector: toml::Table,
    policy_types: Option<Vec<String>>,
    ingress: Option<Vec<RawRule>>,
    egress: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    from: Option<Vec<RawPeer>>,
    to: Option<Vec<RawPeer>>,
    #[serde(default)]
    ports: Vec<super::ports::RawPolicyPort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    pod_selector: Option<toml::Table>,
    namespace_selector: Option<toml::Table>,
    cidr: Option<String>,
    #[serde(default)]
    except: Vec<String>,
}

/// Everything of the Kubernetes layer a fixture can say.
pub(super) struct RawK8s<'a> {
    pub namespace: &'a IndexMap<String, RawNamespace>,
    pub service: &'a IndexMap<String, RawService>,
    pub policy: &'a IndexMap<String, RawPolicy>,
    pub dns: Option<&'a RawDns>,
    pub service_cidr: Option<&'a super::dual::OneOrTwo>,
    pub proxy_mode: Option<&'a String>,
}

const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// What the Kubernetes part of a fixture is checked against: its hosts, and the addresses and
/// NodePorts its Services and DNS claimed so far.
pub(super) struct K8sCtx<'t> {
    pub(super) topo: &'t Topology,
    ips: BTreeMap<Ipv4Addr, String>,
    pub(super) ips6: BTreeMap<std::net::Ipv6Addr, String>,
    node_ports: BTreeMap<(u16, Proto), String>,
    dns_declared: bool,
}

impl K8sCtx<'_> {
    fn pod_help(&self) -> Option<String> {
        let pods: Vec<&str> = self.topo.pods().map(|(n, _)| n).collect();
        Some(format!("pods in this fixture: {}", pods.join(", ")))
    }

    /// Whether an address is a lab host's, or inside a pod CIDR or the uplink segment.
    fn in_lab(&self, ip: Ipv4Addr) -> bool {
        let topo = self.topo;
        topo.hosts.iter().any(|h| h.address() == ip)
            || topo.nodes().any(|(_, n)| n.pod_cidr.contains(&ip))
            || topo.uplink.as_ref().is_some_and(|u| u.cidr.contains(&ip))
    }
}

/// A namespace pods or policies name without declaring it: labelled with its name only.
fn implicit(k: &mut K8s, ns: &str) {
    k.namespaces.entry(ns.to_string()).or_insert_with(|| {
        [(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())]
            .into_iter()
            .collect()
    });
}

impl Validator<'_> {
    pub(super) fn dns_name(&mut self, at: &[Key], s: &str, what: &str) {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if !ok {
            self.err(
                at,
                format!("{what} \"{s}\" is not a DNS label"),
                Some("use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'".into()),
            );
        }
    }

    /// Validates the Kubernetes layer against the hosts already parsed (pods get their
    /// namespace and labels there).
    pub(super) fn k8s(&mut self, raw: RawK8s, topo: &Topology) -> K8s {
        let mut k = K8s::default();
        self.service_cidrs(raw.service_cidr, topo, &mut k);
        for (name, ns) in raw.namespace {
            self.dns_name(
                &[Key::Field("namespace"), Key::Name(name)],
                name,
                "namespace",
            );
            let mut labels = ns.labels.clone();
            labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
            k.namespaces.insert(name.clone(), labels);
        }
        for (_, p) in topo.pods() {
            implicit(&mut k, &p.namespace);
        }
        let mut ctx = K8sCtx {
            topo,
            ips: BTreeMap::new(),
            ips6: BTreeMap::new(),
            node_ports: BTreeMap::new(),
            dns_declared: raw.dns.is_some(),
        };
        for (name, s) in raw.service {
            self.service(name, s, &mut ctx, &mut k);
        }
        if let Some(d) = raw.dns {
            self.dns(d, &mut ctx, &mut k);
        }
        for (name, p) in raw.policy {
            self.policy(name, p, &mut k);
        }
        let keys: Vec<&String> = raw.service.keys().collect();
        self.proxy_mode(raw.proxy_mode, &keys, &mut k);
        k
    }

    /// One `[service.NAME]`: its ClusterIP, ports, NodePort and endpoints.
    fn service(&mut self, name: &str, s: &RawService, ctx: &mut K8sCtx, k: &mut K8s) {
        let at = |f: &'static str| [Key::Field("service"), Key::Field(name), Key::Field(f)];
        self.dns_name(
            &[Key::Field("service"), Key::Name(name)],
            name,
            "Service name",
        );
        if name == DNS_SERVICE && ctx.dns_declared {
            self.err(
                &[Key::Field("service"), Key::Name(name)],
                format!("\"{DNS_SERVICE}\" is the cluster DNS Service [dns] makes"),
                Some("rename the Service".into()),
            );
        }
        implicit(k, &s.namespace);
        let Some(ips) = self.split_families(&at("cluster_ip"), &s.cluster_ip, "cluster_ip") else {
            return;
        };
        let Some(ip) = self.addr(&at("cluster_ip"), ips.v4, "cluster_ip") else {
            return;
        };
        if !k.service_cidr.contains(&ip) || ctx.in_lab(ip) {
            self.err(
                &at("cluster_ip"),
                format!(
                    "cluster_ip {ip} is not a free address of the service CIDR {}",
                    k.service_cidr
                ),
                Some("pick a ClusterIP inside [cluster] service_cidr (default 10.96.0.0/12), away from pods and nodes".into()),
            );
        }
        if let Some(prev) = ctx.ips.insert(ip, name.to_string()) {
            self.err(
                &at("cluster_ip"),
                format!("cluster_ip {ip} is already Service {prev}'s"),
                Some("every Service needs its own ClusterIP".into()),
            );
        }
        if s.port == 0 {
            self.err(
                &at("port"),
                "port 0 is not a port",
                Some("use 1..65535".into()),
            );
        }
        let Some(protocol) = self.proto_l4(&at("protocol"), &s.protocol) else {
            return;
        };
        if let Some(np) = s.node_port {
            if !NODE_PORTS.contains(&np) {
                self.err(
                    &at("node_port"),
                    format!("node_port {np} is outside 30000..32767"),
                    Some("Kubernetes allocates NodePorts from 30000..32767".into()),
                );
            }
            if let Some(prev) = ctx.node_ports.insert((np, protocol), name.to_string()) {
                self.err(
                    &at("node_port"),
                    format!("node_port {np}/{protocol} is already Service {prev}'s"),
                    None,
                );
            }
        }
        let mut endpoints = Vec::new();
        for (i, e) in s.endpoints.iter().enumerate() {
            let at_e = [
                Key::Field("service"),
                Key::Field(name),
                Key::Field("endpoints"),
                Key::Index(i),
            ];
            let Some((pod, port)) = e.split_once(':') else {
                self.err(
                    &at_e,
                    format!("endpoint \"{e}\" is not POD:PORT"),
                    Some("write the serving pod and its port, such as \"pod-b:8080\"".into()),
                );
                continue;
            };
            if ctx.topo.host(pod).and_then(|h| h.as_pod()).is_none() {
                self.err(
                    &at_e,
                    format!("endpoint \"{e}\": no pod \"{pod}\""),
                    ctx.pod_help(),
                );
                continue;
            }
            let Ok(port) = port.parse::<u16>() else {
                self.err(
                    &at_e,
                    format!("endpoint \"{e}\": \"{port}\" is not a port"),
                    Some("use 1..65535".into()),
                );
                continue;
            };
            if port == 0 {
                self.err(
                    &at_e,
                    format!("endpoint \"{e}\": port 0"),
                    Some("use 1..65535".into()),
                );
                continue;
            }
            endpoints.push(Endpoint {
                pod: pod.to_string(),
                port,
            });
        }
        let cluster_ip6 = self.service_ip6(name, s, ips.v6, &endpoints, ctx, k);
        let internal_local = self.traffic_policy(
            &at("internal_traffic_policy"),
            s.internal_traffic_policy.as_deref(),
            "internal_traffic_policy",
        );
        let external_local = self.traffic_policy(
            &at("external_traffic_policy"),
            s.external_traffic_policy.as_deref(),
            "external_traffic_policy",
        );
        // ValidateService: externalTrafficPolicy is for Services reachable from outside
        // (NodePort and LoadBalancer).
        if external_local && s.node_port.is_none() && s.load_balancer_ip.is_none() {
            self.err(
                &at("external_traffic_policy"),
                "external_traffic_policy applies to a Service with a node_port or a load_balancer_ip",
                Some("give the Service a node_port, or drop external_traffic_policy".into()),
            );
        }
        k.services.push(Service {
            name: name.to_string(),
            namespace: s.namespace.clone(),
            cluster_ip: ip,
            cluster_ip6,
            port: s.port,
            protocol,
            node_port: s.node_port,
            endpoints,
            dns: false,
            stale: Vec::new(),
            internal_local,
            external_local,
            affinity_timeout: self.affinity(name, s),
            load_balancer: self.load_balancer(name, s, ctx),
            external_ips: s
                .external_ips
                .iter()
                .filter_map(|ip| self.uplink_address(name, "external_ips", ip, ctx))
                .collect(),
        });
    }

    /// An address a Service takes on the uplink segment (a load balancer's, an external IP):
    /// free there, as external hosts route it to a node on that segment.
    fn uplink_address(
        &mut self,
        name: &str,
        field: &'static str,
        raw: &str,
        ctx: &mut K8sCtx,
    ) -> Option<Ipv4Addr> {
        let at = [Key::Field("service"), Key::Field(name), Key::Field(field)];
        let ip = self.addr(&at, raw, field)?;
        let topo = ctx.topo;
        let uplink = topo.uplink.as_ref().map(|u| u.cidr);
        let on_uplink = uplink.is_some_and(|u| u.contains(&ip));
        let held = topo.hosts.iter().any(|h| h.address() == ip)
            || ctx.ips.contains_key(&ip)
            || uplink.is_some_and(|u| ip == u.network() || ip == u.broadcast());
        if !on_uplink || held {
            self.err(
                &at,
                format!("{field} {ip} is not a free address of the uplink segment"),
                Some(format!(
                    "pick an unused address of {} (external hosts reach it through a node there)",
                    uplink
                        .map(|u| u.to_string())
                        .unwrap_or_else(|| "the uplink".into())
                )),
            );
            return None;
        }
        ctx.ips.insert(ip, name.to_string());
        Some(ip)
    }

    /// A LoadBalancer's address: a free address of the uplink segment (external hosts route
    /// it to the announcing node there), and its source ranges.
    fn load_balancer(
        &mut self,
        name: &str,
        s: &RawService,
        ctx: &mut K8sCtx,
    ) -> Option<LoadBalancer> {
        let at = |f: &'static str| [Key::Field("service"), Key::Field(name), Key::Field(f)];
        let Some(raw) = &s.load_balancer_ip else {
            if !s.load_balancer_source_ranges.is_empty() {
                self.err(
                    &at("load_balancer_source_ranges"),
                    "load_balancer_source_ranges without a load_balancer_ip",
                    Some("give the Service a load_balancer_ip on the uplink segment".into()),
                );
            }
            return None;
        };
        let ip = self.uplink_address(name, "load_balancer_ip", raw, ctx)?;
        let source_ranges = s
            .load_balancer_source_ranges
            .iter()
            .filter_map(|r| self.net(&at("load_balancer_source_ranges"), r, "source range"))
            .collect();
        Some(LoadBalancer { ip, source_ranges })
    }

    /// `sessionAffinity` and its timeout, as ValidateService: ClientIP or None, and a timeout
    /// (only with ClientIP) of 1 to 86400 seconds.
    fn affinity(&mut self, name: &str, s: &RawService) -> Option<u32> {
        let at = |f: &'static str| [Key::Field("service"), Key::Field(name), Key::Field(f)];
        let on = match s.session_affinity.as_deref() {
            None | Some("None") => false,
            Some("ClientIP") => true,
            Some(other) => {
                self.err(
                    &at("session_affinity"),
                    format!("session_affinity \"{other}\" is not None or ClientIP"),
                    Some("ClientIP sends each client back to the endpoint it got first".into()),
                );
                return None;
            }
        };
        match (on, s.session_affinity_timeout) {
            (false, Some(_)) => {
                self.err(
                    &at("session_affinity_timeout"),
                    "session_affinity_timeout without session_affinity = \"ClientIP\"",
                    Some("set session_affinity = \"ClientIP\", or drop the timeout".into()),
                );
                None
            }
            (true, Some(t)) if !(1..=86400).contains(&t) => {
                self.err(
                    &at("session_affinity_timeout"),
                    format!("session_affinity_timeout {t} is not 1..86400 seconds"),
                    None,
                );
                None
            }
            (true, t) => Some(t.unwrap_or(10800)),
            (false, None) => None,
        }
    }

    /// A traffic policy: "Cluster" (the default, false) or "Local" (true).
    fn traffic_policy(&mut self, at: &[Key], v: Option<&str>, field: &str) -> bool {
        match v {
            None | Some("Cluster") => false,
            Some("Local") => true,
            Some(other) => {
                self.err(
                    at,
                    format!("{field} \"{other}\" is not Cluster or Local"),
                    Some("Cluster (the default) spreads over every endpoint; Local keeps a node's traffic on its own".into()),
                );
                false
            }
        }
    }

    /// `[dns]`: the DNS pod, the Service address and the domain.
    fn dns(&mut self, d: &RawDns, ctx: &mut K8sCtx, k: &mut K8s) {
        let at = |f: &'static str| [Key::Field("dns"), Key::Field(f)];
        let pod = ctx.topo.host(&d.pod).and_then(|h| h.as_pod());
        if pod.is_none() {
            self.err(
                &at("pod"),
                format!("[dns] pod: no pod \"{}\"", d.pod),
                ctx.pod_help(),
            );
        }
        let ip = self.addr(&at("service_ip"), &d.service_ip, "service_ip");
        if let Some(ip) = ip {
            if !k.service_cidr.contains(&ip) || ctx.in_lab(ip) {
                self.err(
                    &at("service_ip"),
                    format!(
                        "service_ip {ip} is not a free address of the service CIDR {}",
                        k.service_cidr
                    ),
                    Some("Kubernetes' default is 10.96.0.10".into()),
                );
            }
            if let Some(prev) = ctx.ips.get(&ip) {
                self.err(
                    &at("service_ip"),
                    format!("service_ip {ip} is already Service {prev}'s"),
                    None,
                );
            }
        }
        if d.port == 0 {
            self.err(
                &at("port"),
                "port 0 is not a port",
                Some("use 1..65535".into()),
            );
        }
        let labels_ok = !d.domain.is_empty()
            && d.domain.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !labels_ok {
            self.err(
                &at("domain"),
                format!("domain \"{}\" is not a DNS domain", d.domain),
                Some("Kubernetes uses cluster.local".into()),
            );
        }
        if let (Some(p), Some(ip)) = (pod, ip) {
            implicit(k, DNS_NAMESPACE);
            let _ = p;
            k.services.push(Service {
                name: DNS_SERVICE.into(),
                namespace: DNS_NAMESPACE.into(),
                cluster_ip: ip,
                cluster_ip6: None,
                port: 53,
                protocol: Proto::Udp,
                node_port: None,
                endpoints: vec![Endpoint {
                    pod: d.pod.clone(),
                    port: d.port,
                }],
                dns: true,
                stale: Vec::new(),
                internal_local: false,
                external_local: false,
                affinity_timeout: None,
                load_balancer: None,
                external_ips: Vec::new(),
            });
            k.dns = Some(DnsSpec {
                pod: d.pod.clone(),
                service_ip: ip,
                port: d.port,
                domain: d.domain.trim_end_matches('.').to_string(),
            });
        }
    }

    /// One `[policy.NAME]`: its selector, types and rules.
    fn policy(&mut self, key: &str, p: &RawPolicy, k: &mut K8s) {
        let at_p = |f: &'static str| [Key::Field("policy"), Key::Field(key), Key::Field(f)];
        let Some((namespace, name)) = self.policy_name(key, p, k) else {
            return;
        };
        implicit(k, &namespace);
        // SetDefaults_NetworkPolicy: no policyTypes means Ingress, and Egress too when the
        // egress list is non-empty (`egress = []` alone does not isolate for egress).
        let types: Vec<String> = match &p.policy_types {
            Some(t) if !t.is_empty() => t.iter().map(|x| x.to_ascii_lowercase()).collect(),
            _ => {
                let mut t = vec!["ingress".to_string()];
                if p.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                    t.push("egress".into());
                }
                t
            }
        };
        for t in &types {
            if t != "ingress" && t != "egress" {
                self.err(
                    &at_p("policy_types"),
                    format!("policy type \"{t}\" is not ingress or egress"),
                    None,
                );
            }
        }
        let direction = |v: &mut Self, rules: &Option<Vec<RawRule>>, dir: &'static str| {
            // Rules of a direction policy_types leaves out are accepted and ignored, as the
            // API server does (the policy does not cover that direction).
            if !types.iter().any(|t| t == dir) {
                return None;
            }
            let mut out = Vec::new();
            for (i, r) in rules.iter().flatten().enumerate() {
                let at_r = |f: &'static str| {
                    [
                        Key::Field("policy"),
                        Key::Field(key),
                        Key::Field(dir),
                        Key::Index(i),
                        Key::Field(f),
                    ]
                };
                let (key, wrong) = if dir == "ingress" {
                    ("from", &r.to)
                } else {
                    ("to", &r.from)
                };
                if wrong.is_some() {
                    let bad = if dir == "ingress" { "to" } else { "from" };
                    v.err(
                        &at_r(bad),
                        format!("\"{bad}\" in an {dir} rule"),
                        Some(format!("an {dir} rule names its peers with \"{key}\"")),
                    );
                }
                let raw_peers = if dir == "ingress" { &r.from } else { &r.to };
                let mut peers = Vec::new();
                for peer in raw_peers.iter().flatten() {
                    match (&peer.cidr, &peer.pod_selector, &peer.namespace_selector) {
                        (Some(c), None, None) => {
                            let Some(cidr) = v.block_net(&at_r(key), c, "cidr") else {
                                continue;
                            };
                            let except: Vec<IpNet> = peer
                                .except
                                .iter()
                                .filter_map(|e| v.block_net(&at_r(key), e, "except"))
                                .collect();
                            for e in except.iter().filter(|e| !same_family(e, &cidr)) {
                                v.err(
                                    &at_r(key),
                                    format!("except \"{e}\" is not of cidr \"{cidr}\"'s family"),
                                    Some("an ipBlock's exceptions are inside its cidr: give the other family its own peer".into()),
                                );
                            }
                            // ValidateIPBlock: each except "must be a strict subset of `cidr`".
                            let outside = |e: &&IpNet| {
                                same_family(e, &cidr)
                                    && !(cidr.contains(*e) && e.prefix_len() > cidr.prefix_len())
                            };
                            for e in except.iter().filter(outside) {
                                v.err(
                                    &at_r(key),
                                    format!("except \"{e}\" is not a strict subset of cidr \"{cidr}\""),
                                    Some("an exception is a smaller block inside the cidr; drop it, or widen the cidr".into()),
                                );
                            }
                            peers.push(Peer::Cidr { cidr, except });
                        }
                        // ValidateNetworkPolicyPeer: an empty peer is refused.
                        (None, None, None) => v.err(
                            &at_r(key),
                            "a peer must specify a peer: pod_selector, namespace_selector or cidr",
                            Some("`{}` names nothing; every pod of the policy's namespace is { pod_selector = {} }".into()),
                        ),
                        (None, ps, ns) => {
                            let at = at_r(key);
                            peers.push(Peer::Pods {
                                namespace_selector: ns.as_ref().map(|s| v.selector(&at, s)),
                                pod_selector: ps.as_ref().map(|s| v.selector(&at, s)),
                            })
                        }
                        (Some(_), _, _) => v.err(
                            &at_r(key),
                            "a peer is a cidr or selectors, not both",
                            Some("split it into two peers".into()),
                        ),
                    }
                }
                let mut ports = Vec::new();
                for pp in &r.ports {
                    ports.extend(v.policy_port(&at_r("ports"), pp));
                }
                out.push(PolicyRule { peers, ports });
            }
            Some(out)
        };
        let pod_selector = self.selector(&at_p("pod_selector"), &p.pod_selector);
        let ingress = direction(self, &p.ingress, "ingress");
        let egress = direction(self, &p.egress, "egress");
        k.policies.push(Policy {
            name,
            namespace,
            pod_selector,
            ingress,
            egress,
        });
    }
}

impl Validator<'_> {
    /// A policy's namespace and name: `[policy.NAME]` (namespace from `namespace`, else
    /// default) or `[policy."NAMESPACE/NAME"]`, so two namespaces may each have a policy of one
    /// name, as in Kubernetes; a name declared twice in one namespace is an error.
    fn policy_name(&mut self, key: &str, p: &RawPolicy, k: &K8s) -> Option<(String, String)> {
        let at = [Key::Field("policy"), Key::Name(key)];
        let (from_key, name) = match key.split_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, key),
        };
        let namespace = match (from_key, p.namespace.as_deref()) {
            (Some(a), Some(b)) if a != b => {
                self.err(
                    &at,
                    format!(
                        "policy \"{key}\" names namespace {a}, but its namespace field says {b}"
                    ),
                    Some("keep one: the key's NAMESPACE/ or the namespace field".into()),
                );
                return None;
            }
            (Some(a), _) => a.to_string(),
            (None, b) => b.unwrap_or(DEFAULT_NAMESPACE).to_string(),
        };
        self.dns_name(&at, name, "policy name");
        if k.policies
            .iter()
            .any(|x| x.namespace == namespace && x.name == name)
        {
            self.err(
                &at,
                format!("policy {namespace}/{name} is declared twice"),
                Some("a name is unique within its namespace".into()),
            );
            return None;
        }
        Some((namespace, name.to_string()))
    }
}

/// Whether two networks are of one address family.
fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!(
        (a, b),
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
    )
}
