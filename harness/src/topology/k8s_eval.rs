//! What a topology's Kubernetes objects mean: which policies let a flow through, which targets
//! (ClusterIPs, NodePorts, DNS names) the matrix probes and what each should answer.

use super::expect::{Outcome, Proto};
use super::k8s::*;
use super::model::{Role, Topology};
use super::Family;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

impl Topology {
    /// The pod owning `ip` (either family), with its namespace and labels.
    fn pod_at(&self, ip: IpAddr) -> Option<(&str, &super::model::PodSpec)> {
        self.pods().find(|(_, p)| match ip {
            IpAddr::V4(a) => p.ip == a,
            IpAddr::V6(a) => p.ip6 == Some(a),
        })
    }

    /// The policies selecting a pod, for ingress or egress.
    pub fn policies_for(&self, pod: &str, egress: bool) -> Vec<&Policy> {
        let Some(p) = self.host(pod).and_then(|h| h.as_pod()) else {
            return Vec::new();
        };
        self.k8s
            .policies
            .iter()
            .filter(|pol| {
                pol.namespace == p.namespace
                    && pol.pod_selector.selects(&p.labels)
                    && if egress {
                        pol.egress.is_some()
                    } else {
                        pol.ingress.is_some()
                    }
            })
            .collect()
    }

    pub fn peer_selects(&self, policy: &Policy, peer: &Peer, ip: IpAddr) -> bool {
        match peer {
            // IpNet::contains is false across families: a v4 block never holds a v6 address.
            Peer::Cidr { cidr, except } => {
                cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
            }
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                let Some((_, p)) = self.pod_at(ip) else {
                    return false;
                };
                let ns_ok = match namespace_selector {
                    None => p.namespace == policy.namespace,
                    Some(sel) => sel.selects(&self.k8s.namespace_labels(&p.namespace)),
                };
                ns_ok && pod_selector.as_ref().is_none_or(|s| s.selects(&p.labels))
            }
        }
    }

    fn rule_allows(&self, policy: &Policy, rule: &PolicyRule, peer_ip: IpAddr, f: &Flow) -> bool {
        let peer_ok = rule.peers.is_empty()
            || rule
                .peers
                .iter()
                .any(|p| self.peer_selects(policy, p, peer_ip));
        let port_ok = rule.ports.is_empty()
            || rule.ports.iter().any(|pp| {
                pp.protocol == f.proto
                    && (pp.port.is_none()
                        || f.port.is_some_and(|n| {
                            self.port_range(pp, f.dst).is_some_and(|r| r.contains(&n))
                        }))
            });
        peer_ok && port_ok
    }

    /// The ports a policy port stands for at `dst`: a number (to `end_port`), or the number
    /// the pod at `dst` gives the name for the protocol (None when `dst` is no pod or declares
    /// no such port: a named port matches only where it resolves).
    pub fn port_range(
        &self,
        pp: &PolicyPort,
        dst: IpAddr,
    ) -> Option<std::ops::RangeInclusive<u16>> {
        match &pp.port {
            None => Some(0..=u16::MAX),
            Some(PortRef::Number(n)) => Some(*n..=pp.end_port.unwrap_or(*n)),
            Some(PortRef::Name(name)) => {
                let n = named_port(self.pod_at(dst)?.1, name, pp.protocol)?;
                Some(n..=n)
            }
        }
    }

    /// Whether NetworkPolicies let this flow through: egress from the source pod (if any policy
    /// isolates it) and ingress to the destination pod. Traffic between a pod and its own node
    /// is always allowed (as Kubernetes requires, for health checks).
    pub fn policy_allows(&self, f: &Flow) -> bool {
        self.policy_verdict(f).is_none()
    }

    /// None when allowed; else the direction and the policies isolating the pod that denies.
    pub fn policy_verdict(&self, f: &Flow) -> Option<(String, bool, Vec<String>)> {
        let src_pod = self
            .host(f.from)
            .and_then(|h| h.as_pod().map(|p| (f.from, p)));
        let dst_pod = self.pod_at(f.dst);
        let node_of = |h: &str| -> Option<String> {
            match &self.host(h)?.role {
                Role::Pod(p) => Some(p.node.clone()),
                Role::Node(_) => Some(h.to_string()),
                Role::External(_) => None,
            }
        };
        // Egress of the source pod.
        if let Some((name, _)) = src_pod {
            let to_own_node = self
                .owner_of_ip(f.dst)
                .is_some_and(|h| Some(h.name.clone()) == node_of(name) && h.as_node().is_some());
            let pols = self.policies_for(name, true);
            if !pols.is_empty() && !to_own_node {
                let ok = pols.iter().any(|pol| {
                    pol.egress.as_ref().is_some_and(|rules| {
                        rules.iter().any(|r| self.rule_allows(pol, r, f.dst, f))
                    })
                });
                if !ok {
                    return Some((
                        name.to_string(),
                        true,
                        pols.iter()
                            .map(|p| format!("{}/{}", p.namespace, p.name))
                            .collect(),
                    ));
                }
            }
        }
        // Ingress of the destination pod.
        if let Some((name, p)) = dst_pod {
            let from_own_node = self
                .host(f.from)
                .is_some_and(|h| h.as_node().is_some() && h.name == p.node);
            let pols = self.policies_for(name, false);
            if !pols.is_empty() && !from_own_node {
                let ok = pols.iter().any(|pol| {
                    pol.ingress.as_ref().is_some_and(|rules| {
                        rules.iter().any(|r| self.rule_allows(pol, r, f.src, f))
                    })
                });
                if !ok {
                    return Some((
                        name.to_string(),
                        false,
                        pols.iter()
                            .map(|p| format!("{}/{}", p.namespace, p.name))
                            .collect(),
                    ));
                }
            }
        }
        None
    }

    /// The cluster domain's records: fully qualified name → address.
    pub fn dns_records(&self) -> DnsRecords {
        let mut out = BTreeMap::new();
        let Some(d) = &self.k8s.dns else {
            return out;
        };
        for s in &self.k8s.services {
            out.insert(
                format!("{}.{}.svc.{}.", s.name, s.namespace, d.domain),
                (s.cluster_ip, s.cluster_ip6),
            );
        }
        for (_, p) in self.pods() {
            let dashed = p.ip.to_string().replace('.', "-");
            out.insert(
                format!("{dashed}.{}.pod.{}.", p.namespace, d.domain),
                (p.ip, None),
            );
        }
        out
    }

    /// What a pod looks up to reach a Service: the short name in its own namespace, else
    /// `NAME.NAMESPACE` (the search path does the rest).
    pub fn dns_query_for(&self, pod: &str, svc: &Service) -> String {
        let ns = self
            .host(pod)
            .and_then(|h| h.as_pod())
            .map(|p| p.namespace.as_str())
            .unwrap_or(DEFAULT_NAMESPACE);
        if ns == svc.namespace {
            svc.name.clone()
        } else {
            format!("{}.{}", svc.name, svc.namespace)
        }
    }

    /// The resolv.conf a pod gets: the cluster DNS, Kubernetes' search path, ndots:5.
    pub fn resolv_conf(&self, pod: &str) -> Option<String> {
        let d = self.k8s.dns.as_ref()?;
        let p = self.host(pod)?.as_pod()?;
        Some(format!(
            "# netfault: {pod}'s resolver, as the kubelet writes it\nnameserver {}\nsearch {ns}.svc.{dom} svc.{dom} {dom}\noptions ndots:5\n",
            d.service_ip,
            ns = p.namespace,
            dom = d.domain
        ))
    }
}

/// The number a pod gives a named port of a protocol.
pub fn named_port(p: &super::model::PodSpec, name: &str, proto: Proto) -> Option<u16> {
    p.ports
        .iter()
        .find(|c| c.name.as_deref() == Some(name) && c.protocol == proto)
        .map(|c| c.port)
}

/// One probe of a Kubernetes target, as the topology defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProbe {
    pub proto: Proto,
    pub dst: IpAddr,
    pub port: Option<u16>,
    /// Echo listeners the probe needs: (pod, address, port) of every endpoint; the address is
    /// the family's unspecified one (an endpoint answers on whatever address its pod has now).
    pub listeners: Vec<(String, IpAddr, u16)>,
    /// For `dns/NAME`: the name the pod looks up, and the address it should get.
    pub query: Option<(String, Ipv4Addr)>,
}

impl Topology {
    /// Every Kubernetes target the matrix probes: each Service's ClusterIP (not the DNS
    /// Service: lookups probe that), each NodePort on each node, each Service's name.
    pub fn target_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for s in self.k8s.services.iter().filter(|s| !s.dns) {
            v.push(Target::Service(s.name.clone()).name());
        }
        for s in self.k8s.services.iter().filter(|s| s.node_port.is_some()) {
            for (n, _) in self.nodes() {
                v.push(
                    Target::NodePort {
                        service: s.name.clone(),
                        node: n.to_string(),
                    }
                    .name(),
                );
            }
        }
        if self.k8s.dns.is_some() {
            for s in self.k8s.services.iter().filter(|s| !s.dns) {
                v.push(Target::Dns(s.name.clone()).name());
            }
        }
        for s in self
            .k8s
            .services
            .iter()
            .filter(|s| s.load_balancer.is_some())
        {
            v.push(Target::LoadBalancer(s.name.clone()).name());
        }
        for s in &self.k8s.services {
            for ip in &s.external_ips {
                let service = s.name.clone();
                v.push(Target::ExternalIp { service, ip: *ip }.name());
            }
        }
        for (pod, p) in self.pods() {
            let mut numbers: Vec<u16> = p.ports.iter().map(|c| c.port).collect();
            numbers.dedup();
            for port in numbers {
                v.push(
                    Target::Port {
                        pod: pod.to_string(),
                        port,
                    }
                    .name(),
                );
            }
        }
        v
    }

    /// Every probe `from` makes of a target in one family: one, or for a pod's port one per
    /// protocol the pod serves at that number.
    pub fn target_probes_for(&self, from: &str, target: &str, family: Family) -> Vec<TargetProbe> {
        match Target::parse(target) {
            Some(Target::Port { pod, port }) => self.port_probes(from, &pod, port, family),
            _ => self
                .target_probe(from, target, family)
                .into_iter()
                .collect(),
        }
    }

    /// The probes of a port a pod declares: from pods and nodes (as ClusterIPs), each protocol
    /// the pod serves there, to the pod's address of the family, answered by an echo server at
    /// the port. SCTP has no IPv6 twin here: an IPv6 probe of it is not made.
    fn port_probes(&self, from: &str, pod: &str, port: u16, family: Family) -> Vec<TargetProbe> {
        let (Some(h), Some(p)) = (self.host(from), self.host(pod).and_then(|h| h.as_pod())) else {
            return Vec::new();
        };
        let (Some(_), Some(dst)) = (
            h.address_of(family),
            self.host(pod).and_then(|x| x.address_of(family)),
        ) else {
            return Vec::new();
        };
        if from == pod || matches!(h.role, Role::External(_)) {
            return Vec::new();
        }
        let any: IpAddr = match family {
            Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
            Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
        };
        p.ports
            .iter()
            .filter(|c| c.port == port)
            .filter_map(|c| {
                let proto = match family {
                    Family::V4 => c.protocol,
                    Family::V6 => c.protocol.v6()?,
                };
                Some(TargetProbe {
                    proto,
                    dst,
                    port: Some(port),
                    listeners: vec![(pod.to_string(), any, port)],
                    query: None,
                })
            })
            .collect()
    }

    /// Host names, then target names: what a rule's TO may name.
    pub fn probe_names(&self) -> Vec<String> {
        self.host_names()
            .into_iter()
            .map(String::from)
            .chain(self.target_names())
            .collect()
    }

    /// The probe `from` makes of a target in one family, if it probes that target at all:
    /// every host probes ClusterIPs (an external host must not reach them) and NodePorts,
    /// pods look names up (over IPv4: a pod's resolv.conf names the IPv4 DNS Service). IPv6
    /// probes reach a dual-stack Service's IPv6 ClusterIP and NodePorts at the nodes' IPv6
    /// addresses.
    pub fn target_probe(&self, from: &str, target: &str, family: Family) -> Option<TargetProbe> {
        let h = self.host(from)?;
        h.address_of(family)?;
        let any: IpAddr = match family {
            Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
            Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
        };
        let listeners = |s: &Service| {
            s.endpoints
                .iter()
                .filter_map(|e| {
                    self.host(&e.pod)?.as_pod()?;
                    Some((e.pod.clone(), any, e.port))
                })
                .collect::<Vec<_>>()
        };
        let proto = |s: &Service| match family {
            Family::V4 => Some(s.protocol),
            Family::V6 => s.protocol.v6(),
        };
        // A Service of the family: its ClusterIP there.
        let vip = |s: &Service| -> Option<IpAddr> {
            match family {
                Family::V4 => Some(s.cluster_ip.into()),
                Family::V6 => s.cluster_ip6.map(IpAddr::from),
            }
        };
        match Target::parse(target)? {
            Target::Service(name) => {
                let s = self.k8s.service(&name)?;
                if s.dns {
                    return None;
                }
                Some(TargetProbe {
                    proto: proto(s)?,
                    dst: vip(s)?,
                    port: Some(s.port),
                    listeners: listeners(s),
                    query: None,
                })
            }
            Target::NodePort { service, node } => {
                let s = self.k8s.service(&service)?;
                vip(s)?;
                let n = self.host(&node)?;
                n.as_node()?;
                Some(TargetProbe {
                    proto: proto(s)?,
                    dst: n.address_of(family)?,
                    port: s.node_port,
                    listeners: listeners(s),
                    query: None,
                })
            }
            Target::Dns(name) => {
                if family != Family::V4 {
                    return None;
                }
                let s = self.k8s.service(&name)?;
                let d = self.k8s.dns.as_ref()?;
                h.as_pod()?;
                Some(TargetProbe {
                    proto: Proto::Dns,
                    dst: d.service_ip.into(),
                    port: Some(53),
                    listeners: Vec::new(),
                    query: Some((self.dns_query_for(from, s), s.cluster_ip)),
                })
            }
            Target::LoadBalancer(_) | Target::ExternalIp { .. } => {
                let (s, ip, _) = self.front(target)?;
                if family != Family::V4 {
                    return None;
                }
                Some(TargetProbe {
                    proto: s.protocol,
                    dst: ip.into(),
                    port: Some(s.port),
                    listeners: listeners(s),
                    query: None,
                })
            }
            Target::Port { pod, port } => self
                .port_probes(from, &pod, port, family)
                .into_iter()
                .next(),
        }
    }

    /// The healthy outcome of a ClusterIP or NodePort probe.
    fn service_default(
        &self,
        from: &str,
        to: &str,
        proto: Proto,
        mut tp: TargetProbe,
    ) -> Option<(Outcome, String)> {
        let connected = self.cluster.network.connects_nodes();
        let node_of = |h: &str| match &self.host(h)?.role {
            Role::Pod(p) => Some(p.node.clone()),
            Role::Node(_) => Some(h.to_string()),
            Role::External(_) => None,
        };
        let client = self.host(from)?;
        let (service, np_node) = match Target::parse(to)? {
            Target::Service(s) => (s, None),
            Target::NodePort { service, node } => (service, Some(node)),
            // A load balancer's address is translated as a NodePort is: at the node external
            // hosts send it to, or at the client's own node.
            Target::LoadBalancer(_) | Target::ExternalIp { .. } => {
                let (svc, _, ranges) = self.front(to)?;
                if let Some(why) = self.outside_source_ranges(from, ranges) {
                    return Some((Outcome::Timeout, format!("default: {why}")));
                }
                let node = match client.role {
                    Role::External(_) => self.announcer(svc)?.to_string(),
                    _ => node_of(from)?,
                };
                (svc.name.clone(), Some(node))
            }
            _ => return None,
        };
        if np_node.is_none() && matches!(client.role, Role::External(_)) {
            return Some((
                Outcome::Unreachable,
                "default: a ClusterIP is no address outside the cluster (external hosts have no route to the service CIDR)".into(),
            ));
        }
        if tp.listeners.is_empty() {
            return Some((
                Outcome::Refused,
                "default: a Service without endpoints is rejected".into(),
            ));
        }
        let client_node = node_of(from);
        let svc = self.k8s.service(&service)?;
        let np_local_client = np_node
            .as_ref()
            .is_some_and(|np| client_node.as_ref() == Some(np));
        // A Local traffic policy: internal, a ClusterIP goes to the client's node's endpoints;
        // external, a NodePort or load balancer reached from outside its node (another node's
        // packets arrive masqueraded by it) to that node's. None there: kube-proxy drops it.
        let local_to = match (&np_node, &client_node) {
            (None, Some(n)) if svc.internal_local => Some((n, "internalTrafficPolicy")),
            (Some(np), _) if svc.external_local && !np_local_client => {
                Some((np, "externalTrafficPolicy"))
            }
            _ => None,
        };
        if let Some((n, policy)) = local_to {
            tp.listeners
                .retain(|(pod, _, _)| node_of(pod).as_ref() == Some(n));
            if tp.listeners.is_empty() {
                return Some((
                    Outcome::Timeout,
                    format!("default: {policy} Local, and no endpoint on {n}"),
                ));
            }
        }
        let as_cluster_ip = np_node.is_none() || svc.external_local && np_local_client;
        let mut verdicts = Vec::new();
        for (pod, _, port) in &tp.listeners {
            let ip = self.host(pod)?.address_of(proto.family())?;
            let ep_node = node_of(pod);
            let (Some(np), false) = (&np_node, as_cluster_ip) else {
                if !connected && client_node != ep_node {
                    return None;
                }
                verdicts.push(self.denied(from, ip, proto, Some(*port)));
                continue;
            };
            // A pod reaches another node only where the network connects nodes; the node
            // reaches the endpoint likewise.
            let pod_client = client.as_pod().is_some();
            if !connected
                && (Some(np) != ep_node.as_ref() || pod_client && client_node.as_ref() != Some(np))
            {
                return None;
            }
            // (A load balancer's clients other than external hosts are on `np`.)
            let node_port = svc.node_port.unwrap_or(svc.port);
            verdicts.push(self.nodeport_verdict(from, np, pod, ip, proto, (*port, node_port))?);
        }
        if verdicts.iter().all(|v| v.is_none()) {
            Some((
                Outcome::Reachable,
                "default: a Service answers from its endpoints".into(),
            ))
        } else if let (true, Some(why)) = (
            verdicts.iter().all(|v| v.is_some()),
            verdicts.first().cloned().flatten(),
        ) {
            Some((Outcome::Timeout, format!("default: {why}")))
        } else {
            None
        }
    }

    /// The node external hosts send a load balancer's address to, as MetalLB's layer-2 mode
    /// elects one: the first node (with externalTrafficPolicy Local, the first node holding
    /// an endpoint).
    pub fn announcer(&self, svc: &Service) -> Option<&str> {
        let mut nodes = self.nodes().map(|(n, _)| n);
        if !svc.external_local {
            return nodes.next();
        }
        nodes.find(|n| {
            svc.endpoints.iter().any(|e| {
                self.host(&e.pod)
                    .and_then(|h| h.as_pod())
                    .is_some_and(|p| p.node == *n)
            })
        })
    }

    /// A load balancer's or external IP's target: its Service, address and source ranges.
    fn front(&self, target: &str) -> Option<(&Service, std::net::Ipv4Addr, &[ipnet::Ipv4Net])> {
        let (name, ip) = match Target::parse(target)? {
            Target::LoadBalancer(name) => (name, None),
            Target::ExternalIp { service, ip } => (service, Some(ip)),
            _ => return None,
        };
        let s = self.k8s.service(&name)?;
        let (ip, ranges) = s
            .fronts()
            .into_iter()
            .find(|(a, _)| ip.is_none_or(|want| *a == want))?;
        Some((s, ip, ranges))
    }

    /// Why `from` may not reach a load balancer with source ranges: its address (as it leaves
    /// the client: a pod's own, a node's or an external host's uplink address) is in none.
    fn outside_source_ranges(&self, from: &str, ranges: &[ipnet::Ipv4Net]) -> Option<String> {
        let src = self.host(from)?.address();
        if ranges.is_empty() || ranges.iter().any(|r| r.contains(&src)) {
            return None;
        }
        Some(format!(
            "{from}'s address {src} is outside loadBalancerSourceRanges, which kube-proxy enforces"
        ))
    }

    /// What policies say of `from` reaching endpoint `pod` (at `ip:port`) through node `np`'s
    /// NodePort, where the lab can tell (None: the fixture must say). Policies judge packets
    /// after DNAT and before masquerade: a pod on `np` is judged as reaching the endpoint
    /// itself; a pod elsewhere for egress to `np`'s address (its node then masquerades it).
    /// Past `np` the endpoint sees a node's address, so an endpoint isolated for ingress that
    /// the client's own packets do not reach decides what the lab cannot.
    fn nodeport_verdict(
        &self,
        from: &str,
        np: &str,
        pod: &str,
        ip: IpAddr,
        proto: Proto,
        (port, node_port): (u16, u16),
    ) -> Option<Option<String>> {
        let client = self.host(from)?;
        let ep_node = self.host(pod)?.as_pod()?.node.clone();
        let on_np = client.as_pod().is_some_and(|p| p.node == np);
        if on_np && ep_node == np {
            return Some(self.denied(from, ip, proto, Some(port)));
        }
        if !self.policies_for(pod, false).is_empty() {
            return None;
        }
        if on_np {
            return Some(self.denied(from, ip, proto, Some(port)));
        }
        if client.as_pod().is_none() {
            return Some(None);
        }
        let np_ip = self.host(np)?.address_of(Family::of(ip))?;
        Some(self.denied(from, np_ip, proto, Some(node_port)))
    }

    /// The address a host's packets to `dst` carry as source when policies judge them: its
    /// address of `dst`'s family.
    fn source_address(&self, host: &str, dst: IpAddr) -> Option<IpAddr> {
        self.host(host)?.address_of(Family::of(dst))
    }

    /// Whether policies let `from` reach `dst:port`; None when allowed, else why not.
    fn denied(&self, from: &str, dst: IpAddr, proto: Proto, port: Option<u16>) -> Option<String> {
        let src = self.source_address(from, dst)?;
        // A pod reaching itself (through its own Service) is never isolated from itself.
        if self.pod_at(dst).is_some_and(|(n, _)| n == from) {
            return None;
        }
        let proto = match proto.base() {
            Proto::Dns => Proto::Udp,
            p => p,
        };
        let f = Flow {
            from,
            src,
            dst,
            proto,
            port,
        };
        self.policy_verdict(&f).map(|(pod, egress, pols)| {
            format!(
                "NetworkPolicy {} isolates {pod} for {} and allows nothing that matches",
                pols.join(", "),
                if egress { "egress" } else { "ingress" }
            )
        })
    }

    /// The healthy outcome of a probe that involves the Kubernetes layer: a target, or a host
    /// pair a NetworkPolicy denies. None: the layer has nothing to say.
    pub fn k8s_default(&self, from: &str, to: &str, proto: Proto) -> Option<(Outcome, String)> {
        if Target::parse(to).is_none() {
            let dst = self.host(to)?.address_of(proto.family())?;
            let port = self
                .probe
                .port(proto)
                .filter(|_| proto.base() != Proto::Icmp);
            return self
                .denied(from, dst, proto, port)
                .map(|why| (Outcome::Timeout, format!("default: {why}")));
        }
        let tp = self
            .target_probes_for(from, to, proto.family())
            .into_iter()
            .find(|tp| tp.proto == proto)?;
        let connected = self.cluster.network.connects_nodes();
        let node_of = |h: &str| match &self.host(h)?.role {
            Role::Pod(p) => Some(p.node.clone()),
            Role::Node(_) => Some(h.to_string()),
            Role::External(_) => None,
        };
        match Target::parse(to)? {
            Target::Service(_)
            | Target::NodePort { .. }
            | Target::LoadBalancer(_)
            | Target::ExternalIp { .. } => self.service_default(from, to, proto, tp),
            Target::Port { pod, port } => {
                let dst = self.host(&pod)?.address_of(proto.family())?;
                if !self.default_pairs {
                    return None;
                }
                let why = super::model::default_reason(self, from, &pod)?;
                Some(match self.denied(from, dst, proto, Some(port)) {
                    None => (Outcome::Reachable, format!("default: {why}")),
                    Some(why) => (Outcome::Timeout, format!("default: {why}")),
                })
            }
            Target::Dns(_) => {
                let d = self.k8s.dns.as_ref()?;
                let dns_ip = self.host(&d.pod)?.as_pod()?.ip;
                if !connected && node_of(from) != node_of(&d.pod) {
                    return None;
                }
                match self.denied(from, dns_ip.into(), Proto::Udp, Some(d.port)) {
                    None => Some((
                        Outcome::Reachable,
                        "default: cluster DNS resolves every Service's name".into(),
                    )),
                    Some(why) => Some((Outcome::Timeout, format!("default: {why}"))),
                }
            }
        }
    }
}
