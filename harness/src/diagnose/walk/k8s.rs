//! Explaining a broken Kubernetes target (`svc/`, `nodeport/`, `dns/`): the resolver settings,
//! the DNS server, kube-proxy's live rules for the Service and its endpoints, hairpin and
//! br_netfilter — then, when all of that is intact, the ordinary walk to the endpoint pod.

use std::net::Ipv4Addr;

use super::*;
use crate::diagnose::kube_proxy_rules::{live_translation, Translation};
use crate::topology::k8s::{Resolver, Service, Target};
use crate::topology::Role;

/// UDP conntrack entries in `host` to `dst:dport` from source port `sport`: (original
/// source, the reply's source — where DNAT sent the flow).
fn udp_conntrack(
    lab: &Lab,
    host: &str,
    dst: Ipv4Addr,
    dport: u16,
    sport: u16,
) -> Result<Vec<(Ipv4Addr, Ipv4Addr)>> {
    let h = lab.host(host)?;
    let text =
        h.ns.run(|| std::fs::read_to_string("/proc/thread-self/net/nf_conntrack"))
            .and_then(|r| r)
            .unwrap_or_default();
    let mut out = Vec::new();
    for l in text.lines().filter(|l| l.contains(" udp ")) {
        let kv: Vec<(&str, &str)> = l
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let get =
            |k: &str, nth: usize| kv.iter().filter(|(x, _)| *x == k).nth(nth).map(|(_, v)| *v);
        let (Some(osrc), Some(odst), Some(osport), Some(odport), Some(rsrc)) = (
            get("src", 0),
            get("dst", 0),
            get("sport", 0),
            get("dport", 0),
            get("src", 1),
        ) else {
            continue;
        };
        if odst.parse() == Ok(dst) && odport.parse() == Ok(dport) && osport.parse() == Ok(sport) {
            if let (Ok(a), Ok(b)) = (osrc.parse(), rsrc.parse()) {
                out.push((a, b));
            }
        }
    }
    Ok(out)
}

/// The pod the fixture gives `ip` to.
fn planned_pod(t: &crate::topology::Topology, ip: Ipv4Addr) -> Option<String> {
    t.owner_of(ip)
        .filter(|h| h.as_pod().is_some())
        .map(|h| h.name.clone())
}

/// Whether a UDP socket is bound to `port` in `host` (what `ss -uln` shows).
fn udp_listening(lab: &Lab, host: &str, port: u16) -> Result<bool> {
    lab.host(host)?
        .ns
        .udp_bound(port)
        .map_err(|e| crate::Error::io(format!("{host}: reading its UDP sockets"), e))
}

impl Walker<'_> {
    /// Explains a broken probe of a Kubernetes target: the resolver and DNS server (for `dns/`),
    /// kube-proxy's translation, the endpoints, a UDP flow's conntrack entry, same-node hairpin
    /// and br_netfilter; then the walk to the endpoint.
    pub(super) async fn explain_target(
        &mut self,
        from: &str,
        to: &str,
        proto: Proto,
        outcome: Outcome,
    ) -> Result<Diagnosis> {
        let t = self.lab.topology().clone();
        let mut hops = Vec::new();
        let target = Target::parse(to).expect("a target");
        let done = |hops: Vec<Hop>, c: Culprit| Diagnosis {
            from: from.to_string(),
            to: to.to_string(),
            protocols: vec![proto],
            outcome,
            size: None,
            forward: hops,
            reply: Vec::new(),
            culprit: c,
            evidence: Vec::new(),
            notes: Vec::new(),
        };
        if matches!(target, Target::Service(_))
            && matches!(t.host(from).map(|h| &h.role), Some(Role::External(_)))
        {
            let why = format!("{from} is outside the cluster: no ClusterIP is for it to reach");
            return Ok(done(hops, culprit(from, Component::Unexplained, why)));
        }
        let c = match SvcCtx::new(&t, from, to, &target) {
            Ok(c) => c,
            Err(cul) => return Ok(done(hops, cul)),
        };
        let mut dport = None;
        if let Target::Dns(name) = &target {
            match self.dns_stage(&c, name, &mut hops).await? {
                Ok(port) => dport = Some(port),
                Err(cul) => return Ok(done(hops, cul)),
            }
        }
        if let Err(cul) = self.client_route_stage(&c, proto, &mut hops).await? {
            return Ok(done(hops, cul));
        }
        let eps = match self.translation_stage(&c, &mut hops).await? {
            Ok(eps) => eps,
            Err(cul) => return Ok(done(hops, cul)),
        };
        let holders = match self.endpoints_stage(&c, &eps, &mut hops).await? {
            Ok(h) => h,
            Err(cul) => return Ok(done(hops, cul)),
        };
        if let Err(cul) = self.udp_flow_stage(&c, &eps, &mut hops).await? {
            return Ok(done(hops, cul));
        }
        let holder = |ip: Ipv4Addr| {
            holders
                .iter()
                .find(|(a, _)| *a == ip)
                .map(|(_, p)| p.clone())
        };
        let live: Vec<String> = eps.iter().filter_map(|(ip, _)| holder(*ip)).collect();
        let missing: Vec<String> = c
            .declared
            .iter()
            .filter(|(p, _, _)| !live.contains(p))
            .map(|(p, _, port)| format!("{p}:{port}"))
            .collect();
        let Some(first) = live.first().cloned() else {
            let why = format!("Service {} translates to no pod", c.svc_name);
            return Ok(done(hops, culprit(&c.node, Component::Service, why)));
        };
        // Not guessed: the walk past a NodePort starts at the node's uplink, as an external
        // host's packet arrives, or (the node's own, or its pods') where a ClusterIP's would;
        // another node's or its pods' packets take another way in.
        if c.nodeport && !c.arrives_on_uplink(&t) && !c.local_client(&t) {
            let why = format!(
                "{} translates {} to {first} as it should; the walk follows a NodePort from external hosts only (see the evidence)",
                c.node, c.addr
            );
            return Ok(done(hops, culprit(from, Component::Unexplained, why)));
        }
        if let Err(cul) = self.same_node_stage(&c, &first, &mut hops).await? {
            return Ok(done(hops, cul));
        }
        self.walk_to_endpoint(&c, first, dport, missing, proto, outcome, hops)
            .await
    }

    /// DNS: the pod's resolver must name the cluster DNS Service, and its server must listen.
    /// Returns the server's port.
    async fn dns_stage(
        &mut self,
        c: &SvcCtx<'_>,
        name: &str,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<u16, Culprit>> {
        let (t, from, svc_name) = (self.lab.topology().clone(), c.from, &c.svc_name);
        let d = t.k8s.dns.clone().expect("a dns target needs [dns]");
        let text = self.lab.resolv_conf(from).unwrap_or_default();
        let r = Resolver::parse(&text);
        match r.nameservers.first() {
            Some(ns) if *ns == d.service_ip => hops.push(hop(
                HopStatus::Ok,
                from,
                format!(
                    "resolv.conf: nameserver {ns}, search {}",
                    r.search.join(" ")
                ),
            )),
            other => {
                let named = other
                    .map(|n| format!("nameserver {n}"))
                    .unwrap_or_else(|| "no nameserver".into());
                hops.push(hop(HopStatus::Fail, from, format!("resolv.conf: {named}")));
                return Ok(Err(culprit(
                    from,
                    Component::Dns,
                    format!(
                        "{from}'s resolv.conf names {named}, not the cluster DNS Service {svc_name} at {}: looking up {name} goes nowhere",
                        d.service_ip
                    ),
                )));
            }
        }
        if !udp_listening(self.lab, &d.pod, d.port)? {
            hops.push(hop(
                HopStatus::Fail,
                &d.pod,
                format!("nothing listens on udp port {}", d.port),
            ));
            return Ok(Err(culprit(
                &d.pod,
                Component::Dns,
                format!(
                    "the cluster DNS server is down: nothing listens on {}:{}/udp in {}, so queries for {name} to {svc_name} are refused",
                    d.pod, d.port, d.pod
                ),
            )));
        }
        hops.push(hop(
            HopStatus::Ok,
            &d.pod,
            format!("the DNS server listens on udp port {}", d.port),
        ));
        Ok(Ok(d.port))
    }

    /// The client must have a route to the address it sends to (the ClusterIP, the node, the
    /// load balancer) before anything translates it: a pod without its default route cannot
    /// send to a Service at all, however reachable the endpoint's own address is from it.
    async fn client_route_stage(
        &mut self,
        c: &SvcCtx<'_>,
        proto: Proto,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<(), Culprit>> {
        let t = self.lab.topology().clone();
        let (dst, port) = c.front.unwrap_or((c.svc.cluster_ip, c.svc.port));
        let src = t.host(c.from).map(|h| h.address());
        let Some(src) = src else { return Ok(Ok(())) };
        let h = self.lab.host(c.from)?.handle().clone();
        let Err(e) = netlink::route_get(&h, dst, None, None).await else {
            return Ok(Ok(()));
        };
        let pkt = Pkt::new(src, dst, proto, Some(port));
        // Its address gone, its routes went with it: as the walk from a sender asks first.
        if !self.has_address(c.from, src).await? {
            return Ok(Err(self.source_missing(c.from, &pkt, "", hops).await?));
        }
        let cul = self
            .unroutable(c.from, &pkt, None, None, &e, "", hops)
            .await?;
        Ok(Err(cul))
    }

    /// kube-proxy's live table on the node that translates: the endpoints it DNATs to.
    async fn translation_stage(
        &mut self,
        c: &SvcCtx<'_>,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<Vec<(Ipv4Addr, u16)>, Culprit>> {
        let (node, svc_name, addr, declared) = (&c.node, &c.svc_name, &c.addr, &c.declared);
        let outside = !c.local_client(self.lab.topology());
        let key = c.front.unwrap_or((c.svc.cluster_ip, c.svc.port));
        let tr = live_translation(
            self.lab,
            node,
            "ip",
            &c.svc,
            key,
            c.front.is_some(),
            outside,
        )
        .await?;
        // (The hop's word and the summary's, as the nftables mode always said them.)
        let (seen, rules) = match self.lab.topology().k8s.proxy_mode {
            crate::topology::k8s::ProxyMode::Nftables => ("table", "nft table"),
            crate::topology::k8s::ProxyMode::Iptables => {
                ("chains", "iptables chains (KUBE-SERVICES)")
            }
        };
        Ok(Ok(match tr {
            Translation::NoTable | Translation::Flushed => {
                let what = if matches!(tr, Translation::NoTable) {
                    "is missing"
                } else {
                    "is empty (flushed)"
                };
                hops.push(hop(
                    HopStatus::Fail,
                    node,
                    format!("kube-proxy's {seen} {what}"),
                ));
                return Ok(Err(culprit(
                    node,
                    Component::Service,
                    format!(
                        "kube-proxy's {rules} on {node} {what}: {addr} of Service {svc_name} is not translated there"
                    ),
                )));
            }
            Translation::NoRule => {
                hops.push(hop(
                    HopStatus::Fail,
                    node,
                    format!("no kube-proxy rule for {addr}"),
                ));
                return Ok(Err(culprit(
                    node,
                    Component::Service,
                    format!(
                        "kube-proxy on {node} has no rule for Service {svc_name} ({addr}): packets to it are not DNATed to any endpoint"
                    ),
                )));
            }
            Translation::Rejected => {
                // A running UDP flow keeps the translation it began with: the reject
                // meets new flows only, and every endpoint that flow goes to is gone.
                if let Err(cul) = self.udp_flow_stage(c, &[], hops).await? {
                    return Ok(Err(cul));
                }
                let want: Vec<String> = declared
                    .iter()
                    .map(|(p, _, port)| format!("{p}:{port}"))
                    .collect();
                hops.push(hop(
                    HopStatus::Fail,
                    node,
                    format!("kube-proxy rejects {addr}: no endpoints"),
                ));
                let fixture = if want.is_empty() {
                    String::new()
                } else {
                    format!(" (the fixture declares {})", want.join(", "))
                };
                return Ok(Err(culprit(
                    node,
                    Component::Service,
                    format!("Service {svc_name} has no endpoints{fixture}: kube-proxy on {node} rejects {addr}"),
                )));
            }
            Translation::NoLocal => {
                hops.push(hop(
                    HopStatus::Fail,
                    node,
                    format!("kube-proxy drops {addr}: no local endpoint"),
                ));
                let policy = if c.nodeport {
                    "externalTrafficPolicy"
                } else {
                    "internalTrafficPolicy"
                };
                return Ok(Err(culprit(
                    node,
                    Component::Service,
                    format!("Service {svc_name} has {policy} Local and no endpoint on {node}: kube-proxy there drops {addr}"),
                )));
            }
            Translation::Endpoints(eps) => eps,
        }))
    }

    /// Who holds each endpoint's address now (a pod may have moved): every endpoint must be a
    /// pod's, on the port that pod serves. Returns the holders.
    async fn endpoints_stage(
        &mut self,
        c: &SvcCtx<'_>,
        eps: &[(Ipv4Addr, u16)],
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<Vec<(Ipv4Addr, String)>, Culprit>> {
        let t = self.lab.topology().clone();
        let (node, svc_name, addr, declared) = (&c.node, &c.svc_name, &c.addr, &c.declared);
        // Who holds each endpoint's address now (a pod may have moved).
        let mut holders: Vec<(Ipv4Addr, String)> = Vec::new();
        for (pod, _) in t.pods() {
            for a in self.addrs(pod).await?.clone() {
                holders.push((a.net.addr(), pod.to_string()));
            }
        }
        let holder = |ip: Ipv4Addr| {
            holders
                .iter()
                .find(|(a, _)| *a == ip)
                .map(|(_, p)| p.clone())
        };
        let mut lost = Vec::new();
        for (ip, port) in eps {
            // An endpoint no pod holds now but the fixture gives to one: that pod lost it (its
            // address or its link); the walk on to it finds which.
            let live = holder(*ip);
            let owner = live.clone().or_else(|| planned_pod(&t, *ip));
            if let Some(pod) = owner.as_ref().filter(|_| live.is_none()) {
                lost.push((*ip, pod.clone()));
            }
            let Some(pod) = owner else {
                hops.push(hop(
                    HopStatus::Fail,
                    node,
                    format!("kube-proxy sends {addr} to {ip}:{port}, no pod's address"),
                ));
                return Ok(Err(culprit(
                    node,
                    Component::Service,
                    format!(
                        "Service {svc_name} has a stale endpoint {ip}:{port}: no pod holds {ip} (a deleted pod's address), yet kube-proxy on {node} sends {addr} there"
                    ),
                )));
            };
            if let Some((_, _, want)) = declared.iter().find(|(p, _, _)| *p == pod) {
                if want != port {
                    hops.push(hop(
                        HopStatus::Fail,
                        node,
                        format!("kube-proxy sends {addr} to {pod} port {port}"),
                    ));
                    return Ok(Err(culprit(
                        node,
                        Component::Service,
                        format!(
                            "Service {svc_name} sends {addr} to {pod}:{port}, but {pod} serves on {want}: the endpoint's port is wrong"
                        ),
                    )));
                }
            }
            hops.push(hop(
                HopStatus::Ok,
                node,
                format!("kube-proxy sends {addr} to {ip}:{port} ({pod})"),
            ));
        }
        holders.append(&mut lost);
        Ok(Ok(holders))
    }

    /// A UDP client's running flow keeps the DNAT conntrack chose when it began: stale if that
    /// is no endpoint now.
    async fn udp_flow_stage(
        &mut self,
        c: &SvcCtx<'_>,
        eps: &[(Ipv4Addr, u16)],
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<(), Culprit>> {
        let t = self.lab.topology().clone();
        let (from, to, node, svc, svc_name, addr) =
            (c.from, c.to, &c.node, &c.svc, &c.svc_name, &c.addr);
        if svc.protocol == Proto::Udp && !c.nodeport {
            if let Some(i) = t.target_names().iter().position(|x| x == to) {
                let sport = crate::probe::UDP_SERVICE_SPORT + i as u16;
                let mine: Vec<Ipv4Addr> = self
                    .addrs(from)
                    .await?
                    .iter()
                    .map(|a| a.net.addr())
                    .collect();
                for (src, went) in udp_conntrack(self.lab, node, svc.cluster_ip, svc.port, sport)? {
                    if mine.contains(&src) && !eps.iter().any(|(ip, _)| *ip == went) {
                        hops.push(hop(
                            HopStatus::Fail,
                            node,
                            format!("conntrack: {src}:{sport} → {addr} is DNATed to {went}, no endpoint now"),
                        ));
                        let was = t
                            .pods()
                            .find(|(_, p)| p.ip == went)
                            .map(|(n, _)| format!(" ({n}'s old address)"))
                            .unwrap_or_default();
                        return Ok(Err(culprit(
                            node,
                            Component::Service,
                            format!(
                                "a stale UDP conntrack entry on {node}: {from}'s flow {src}:{sport} → {addr} still goes to {went}{was}, which is no endpoint of Service {svc_name} any more; kube-proxy flushes such entries when an endpoint changes"
                            ),
                        )));
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Same-node endpoints: hairpin for a pod reaching itself, br_netfilter for replies.
    async fn same_node_stage(
        &mut self,
        c: &SvcCtx<'_>,
        first: &str,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<(), Culprit>> {
        let t = self.lab.topology().clone();
        let (from, node, svc_name, addr) = (c.from, &c.node, &c.svc_name, &c.addr);
        if let Some(p) = t.host(first).and_then(|h| h.as_pod()).cloned() {
            // A NodePort from the node's own pod is translated there as a ClusterIP is, but
            // masqueraded: its replies are routed back through the node, never bridged.
            let masqueraded = c.nodeport;
            let same_node = p.node == *node && (!c.nodeport || c.local_client(&t));
            if same_node && t.has_bridge() && !p.host_veth.is_empty() {
                if let Some(cul) = self.routed_back(c, first, &p, hops).await? {
                    return Ok(Err(cul));
                }
                if from == first {
                    let hairpin = self
                        .link(&p.node, &p.host_veth)
                        .await?
                        .is_some_and(|l| l.details.iter().any(|d| d == "hairpin on"));
                    if !hairpin {
                        hops.push(hop(
                            HopStatus::Fail,
                            &p.node,
                            format!("{} has hairpin off", p.host_veth),
                        ));
                        return Ok(Err(culprit(
                            &p.node,
                            Component::Bridge,
                            format!(
                                "hairpin is off on {} {}: {first}'s packets to its own Service {svc_name}, DNATed back to {first}, cannot leave by the bridge port they came in",
                                p.node, p.host_veth
                            ),
                        )));
                    }
                } else if !masqueraded
                    && t.host(from)
                        .and_then(|h| h.as_pod())
                        .is_some_and(|q| q.node == p.node)
                    && self
                        .sysctl(&p.node, "net.bridge.bridge-nf-call-iptables")
                        .await
                        .as_deref()
                        == Some("0")
                {
                    hops.push(hop(
                        HopStatus::Fail,
                        &p.node,
                        "bridge-nf-call-iptables = 0".into(),
                    ));
                    return Ok(Err(culprit(
                        &p.node,
                        Component::Service,
                        format!(
                            "net.bridge.bridge-nf-call-iptables = 0 on {}: {first}'s replies to {from} are bridged past conntrack, so they come from {} instead of Service {svc_name}'s {addr}, and {from} drops them",
                            p.node, p.ip
                        ),
                    )));
                }
            }
        }
        Ok(Ok(()))
    }

    /// A pod's packets to a ClusterIP go to its gateway, the node's bridge: DNATed to a pod on
    /// the same bridge, the node routes them back out of it, which takes forwarding on the
    /// bridge (a plain bridged walk to the endpoint never asks for it).
    async fn routed_back(
        &mut self,
        c: &SvcCtx<'_>,
        first: &str,
        endpoint: &crate::topology::PodSpec,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<Culprit>> {
        let t = self.lab.topology().clone();
        let client_here = t
            .host(c.from)
            .and_then(|h| h.as_pod())
            .is_some_and(|q| q.node == endpoint.node);
        let bridge = self
            .lab
            .plan()
            .host(&endpoint.node)
            .and_then(|hp| hp.iface(&endpoint.host_veth))
            .and_then(|i| i.master.clone());
        let (true, Some(bridge)) = (client_here, bridge) else {
            return Ok(None);
        };
        let node = &endpoint.node;
        let per_if = self
            .sysctl(node, &format!("net/ipv4/conf/{bridge}/forwarding"))
            .await;
        if per_if.as_deref() != Some("0") {
            return Ok(None);
        }
        let all = self.sysctl(node, "net.ipv4.ip_forward").await;
        let why = if all.as_deref() == Some("0") {
            "net.ipv4.ip_forward = 0".to_string()
        } else {
            format!("net.ipv4.conf.{bridge}.forwarding = 0")
        };
        hops.push(hop(
            HopStatus::Fail,
            node,
            format!(
                "forward {bridge} → {} ({first}): not forwarded ({why})",
                endpoint.ip
            ),
        ));
        Ok(Some(culprit(
            node,
            Component::Forwarding,
            format!(
                "{node} does not forward packets arriving on {bridge} ({why}): {}'s packets to Service {}, DNATed to {first} on the same bridge, must be routed back out of it",
                c.from, c.svc_name
            ),
        )))
    }

    /// The Service is translated as it should be: the ordinary walk to the endpoint itself,
    /// after the hops that got there.
    #[allow(clippy::too_many_arguments)]
    async fn walk_to_endpoint(
        &mut self,
        c: &SvcCtx<'_>,
        first: String,
        dport: Option<u16>,
        missing: Vec<String>,
        proto: Proto,
        outcome: Outcome,
        hops: Vec<Hop>,
    ) -> Result<Diagnosis> {
        let t = self.lab.topology().clone();
        let (from, to, node, nodeport, declared) = (c.from, c.to, &c.node, c.nodeport, &c.declared);
        let eproto = if proto == Proto::Dns {
            Proto::Udp
        } else {
            proto
        };
        let eport = dport.or_else(|| {
            declared
                .iter()
                .find(|(p, _, _)| *p == first)
                .map(|(_, _, port)| *port)
        });
        // An external host's NodePort packets start at the node that translates them (the
        // node's own and its pods' are translated on their way, as a ClusterIP's); a pod
        // reaching itself through its Service goes to its node and back.
        let nodeport = nodeport && c.arrives_on_uplink(&t);
        let walk_from = if nodeport {
            node.clone()
        } else {
            from.to_string()
        };
        let walk_to = if walk_from == first {
            t.host(&first)
                .and_then(|h| h.as_pod())
                .map(|p| p.node.clone())
                .unwrap_or_else(|| first.clone())
        } else {
            first.clone()
        };
        self.dport = if walk_to == first { eport } else { None };
        if nodeport {
            // Translated on arrival at the node's uplink (masqueraded on the way out).
            if let Some(n) = t.host(node).and_then(|h| h.as_node()).cloned() {
                let ext = t
                    .host(from)
                    .map(|h| h.address())
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                self.entry = Some((node.clone(), n.uplink_ifname.clone(), ext));
                // kube-proxy's external chain marked it for masquerade (not with
                // externalTrafficPolicy Local: the client's address is kept).
                self.entry_mark = if c.svc.external_local {
                    0
                } else {
                    crate::lab::kube_proxy::MASQ_MARK
                };
            }
        }
        let mut d = self
            .explain(&walk_from, &walk_to, eproto, outcome, None)
            .await;
        self.dport = None;
        let mut d = match d.as_mut() {
            Ok(d) => d.clone(),
            Err(_) => d?,
        };
        let mut all = hops;
        all.append(&mut d.forward);
        d.forward = all;
        d.from = from.to_string();
        d.to = to.to_string();
        d.protocols = vec![proto];
        if !missing.is_empty() {
            d.notes.push(format!(
                "kube-proxy on {node} lacks endpoint(s) the fixture declares: {}",
                missing.join(", ")
            ));
        }
        Ok(d)
    }
}

/// A Kubernetes target's Service as a diagnosis sees it: the probe's ends, the node that
/// translates, the address probed, and the endpoints the fixture declares.
struct SvcCtx<'a> {
    from: &'a str,
    to: &'a str,
    node: String,
    svc: Service,
    svc_name: String,
    addr: String,
    /// Translated by an external chain (a NodePort or a load balancer's address).
    nodeport: bool,
    /// The address and port its rule matches.
    front: Option<(Ipv4Addr, u16)>,
    declared: Vec<(String, Ipv4Addr, u16)>,
}

impl<'a> SvcCtx<'a> {
    /// A NodePort probe from an external host: it arrives on the node's uplink.
    fn arrives_on_uplink(&self, t: &crate::topology::Topology) -> bool {
        matches!(t.host(self.from).map(|h| &h.role), Some(Role::External(_)))
    }

    /// A NodePort probe from its node or one of the node's pods: translated on the way out of
    /// the client (output hook) or into the node (prerouting), as a ClusterIP is.
    fn local_client(&self, t: &crate::topology::Topology) -> bool {
        self.from == self.node
            || matches!(t.host(self.from).map(|h| &h.role), Some(Role::Pod(p)) if p.node == self.node)
    }

    fn new(
        t: &crate::topology::Topology,
        from: &'a str,
        to: &'a str,
        target: &Target,
    ) -> std::result::Result<SvcCtx<'a>, Culprit> {
        let (svc, node) = match target {
            Target::Service(name) | Target::Dns(name) => {
                let node = match &t.host(from).map(|h| &h.role) {
                    Some(crate::topology::Role::Pod(p)) => p.node.clone(),
                    _ => from.to_string(),
                };
                let svc = if matches!(target, Target::Dns(_)) {
                    t.k8s.dns_service().cloned()
                } else {
                    t.k8s.service(name).cloned()
                };
                (svc, node)
            }
            Target::NodePort { service, node } => (t.k8s.service(service).cloned(), node.clone()),
            // A load balancer's address is translated where external hosts send it (the
            // announcing node), or on the client's own node.
            Target::LoadBalancer(name) | Target::ExternalIp { service: name, .. } => {
                let svc = t.k8s.service(name).cloned();
                let node = match &t.host(from).map(|h| &h.role) {
                    Some(crate::topology::Role::Pod(p)) => Some(p.node.clone()),
                    Some(crate::topology::Role::Node(_)) => Some(from.to_string()),
                    _ => svc.as_ref().and_then(|s| t.announcer(s)).map(String::from),
                };
                (svc, node.unwrap_or_default())
            }
            // A pod's port is walked as its host pair (`walk::explain_pairs`), not here.
            Target::Port { .. } => (None, String::new()),
        };
        let Some(svc) = svc else {
            return Err(culprit(
                from,
                Component::Unexplained,
                format!("{to} names no Service of the fixture"),
            ));
        };
        let front = match target {
            Target::NodePort { .. } => t
                .host(&node)
                .map(|h| (h.address(), svc.node_port.unwrap_or(0))),
            Target::LoadBalancer(_) => svc.load_balancer.as_ref().map(|lb| (lb.ip, svc.port)),
            Target::ExternalIp { ip, .. } => Some((*ip, svc.port)),
            _ => None,
        };
        let nodeport = front.is_some();
        let addr = match (target, front) {
            (Target::NodePort { .. }, Some((_, port))) => format!("{node}:{port}"),
            (_, Some((ip, port))) => format!("{ip}:{port}"),
            _ => format!("{}:{}", svc.cluster_ip, svc.port),
        };
        Ok(SvcCtx {
            from,
            to,
            svc_name: format!("{}/{}", svc.namespace, svc.name),
            declared: svc
                .endpoints
                .iter()
                .filter_map(|e| Some((e.pod.clone(), t.host(&e.pod)?.as_pod()?.ip, e.port)))
                .collect(),
            node,
            svc,
            addr,
            nodeport,
            front,
        })
    }
}
