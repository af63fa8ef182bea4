//! kube-proxy's nftables mode, rendered for one node and one family: ClusterIP and NodePort
//! rules jumping to a chain per Service that load-balances (`numgen random`) over a chain per
//! endpoint doing the DNAT; masquerade marks; rejects for Services without endpoints; Local
//! traffic policies; ClientIP session affinity; and `cluster-ips-check`.
//!
//! Rendering is pure (text for `nft -f`), so faults can render a changed spec and heal can render
//! the fixture's again — as kube-proxy re-syncs its whole table on every change.

use std::fmt::Write;
use std::net::IpAddr;

use crate::topology::k8s::{K8s, Service};
use crate::topology::{Family, Proto, Topology};

pub const KUBE_PROXY_TABLE: &str = "kube-proxy";
/// kube-proxy's set of the ClusterIPs it serves (nftables mode).
pub const CLUSTER_IPS_SET: &str = "cluster-ips";
/// kube-proxy's masquerade mark.
pub const MASQ_MARK: u32 = 0x4000;

/// A chain-name-safe form of `ns/name` (a pod's name too, in the policy chains).
pub(super) fn ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

pub fn service_chain(s: &Service) -> String {
    format!("service-{}-{}", ident(&s.namespace), ident(&s.name))
}

/// kube-proxy's tables for one node: `table ip kube-proxy`, and `table ip6 kube-proxy` where
/// a Service of the lab is dual-stack (kube-proxy keeps one table per family), each replacing
/// any table of that name.
pub fn kube_proxy_script(t: &Topology, k: &K8s, node: &str) -> String {
    let mut s = kube_proxy_table(t, k, Family::V4, node);
    let dual = |k: &K8s| k.services.iter().any(|s| s.cluster_ip6.is_some());
    if dual(k) || dual(&t.k8s) {
        s.push_str(&kube_proxy_table(t, k, Family::V6, node));
    }
    s
}

/// The address a node accepts NodePort traffic at, in one family: kube-proxy's
/// `--nodeport-addresses` default, the node's primary address (its uplink here), not every
/// local address (a pod reaching its node's bridge address at a NodePort gets no Service).
fn nodeport_address(t: &Topology, node: &str, family: Family) -> Option<IpAddr> {
    let h = t.host(node)?;
    h.as_node()?;
    h.address_of(family)
}

/// An endpoint as kube-proxy DNATs to it: (pod, address, port).
type ServiceEndpoint = (String, IpAddr, u16);

/// What a Service is in one family: its ClusterIP there, and its endpoints' addresses (pods
/// without an address of the family, and stale IPv4 endpoints in IPv6, drop out).
fn service_in(
    t: &Topology,
    svc: &Service,
    family: Family,
) -> Option<(IpAddr, Vec<ServiceEndpoint>)> {
    let vip = match family {
        Family::V4 => IpAddr::V4(svc.cluster_ip),
        Family::V6 => IpAddr::V6(svc.cluster_ip6?),
    };
    let mut eps: Vec<ServiceEndpoint> = svc
        .endpoints
        .iter()
        .filter_map(|e| {
            let h = t.host(&e.pod)?;
            h.as_pod()?;
            Some((e.pod.clone(), h.address_of(family)?, e.port))
        })
        .collect();
    if family == Family::V4 {
        eps.extend(
            svc.stale
                .iter()
                .map(|(ip, port)| ("stale".to_string(), IpAddr::V4(*ip), *port)),
        );
    }
    Some((vip, eps))
}

/// The node a pod runs on.
fn node_of<'a>(t: &'a Topology, pod: &str) -> Option<&'a str> {
    t.host(pod)?.as_pod().map(|p| p.node.as_str())
}

/// An address as nft's `dnat to` takes it with a port (`[addr]:port` in IPv6).
fn dnat_target(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// What rendering one family's table on one node knows.
struct Ctx<'a> {
    t: &'a Topology,
    node: &'a str,
    family: Family,
    fam: &'static str,
    /// No address of the family on the node: no NodePort rules in this table.
    node_ip: Option<IpAddr>,
    cluster_cidr: Option<String>,
}

/// The table as it is built: where each kind of rule goes.
#[derive(Default)]
struct Table {
    services: String,
    chains: String,
    /// Dropped or rejected ClusterIPs (no endpoints; no local endpoint).
    rejects: String,
    /// The same at the node's NodePort address (in the input hook).
    nodeport_rejects: String,
    sets: String,
    /// Load balancers' source ranges, checked before DNAT.
    firewall: String,
}

/// One Service as rendered: its protocol, chain name and comment.
struct Svc<'a> {
    svc: &'a Service,
    vip: IpAddr,
    p: &'static str,
    c: String,
    comment: String,
    /// kube-dns serves 53 over TCP as well (its Service has a dns-tcp port): resolvers retry
    /// a truncated answer over TCP, and `dig +tcp` asks so.
    also_tcp: bool,
}

/// kube-proxy's table of one family, on `node`.
fn kube_proxy_table(t: &Topology, k: &K8s, family: Family, node: &str) -> String {
    let ctx = Ctx {
        t,
        node,
        family,
        fam: family.nft(),
        node_ip: nodeport_address(t, node, family),
        cluster_cidr: match family {
            Family::V4 => Some(t.cluster.cidr.to_string()),
            Family::V6 => t.cluster.cidr6.map(|c| c.to_string()),
        },
    };
    let mut tb = Table::default();
    for svc in &k.services {
        if let Some((vip, eps)) = service_in(t, svc, family) {
            let s = Svc {
                svc,
                vip,
                p: svc.protocol.l4_name(),
                c: service_chain(svc),
                comment: format!("{}/{}", svc.namespace, svc.name),
                also_tcp: svc.dns && svc.protocol == Proto::Udp,
            };
            render_service(&ctx, &mut tb, &s, &eps);
        }
    }
    let fam = ctx.fam;
    let mut s = header(fam);
    s.push_str(&tb.sets);
    let _ = writeln!(s, "  chain services {{\n{}  }}", tb.services);
    s.push_str(&tb.chains);
    let _ = writeln!(s, "  chain filter-forward {{\n    type filter hook forward priority -110; policy accept;\n{}  }}", tb.rejects);
    let _ = writeln!(s, "  chain filter-output {{\n    type filter hook output priority -110; policy accept;\n{}  }}", tb.rejects);
    let _ = writeln!(
        s,
        "  chain filter-input {{\n    type filter hook input priority -110; policy accept;\n{}  }}",
        tb.nodeport_rejects
    );
    if !tb.firewall.is_empty() {
        // Before DNAT (dstnat is -100), as kube-proxy's firewall-check.
        for hook in ["prerouting", "output"] {
            let _ = writeln!(
                s,
                "  chain firewall-check-{hook} {{\n    type filter hook {hook} priority -110; policy accept;\n{}  }}",
                tb.firewall
            );
        }
    }
    s.push_str(&cluster_ips_check(t, k, family));
    s.push_str("}\n");
    s
}

/// The table's fixed part: it replaces any table of its name, and its masquerade and nat
/// chains.
fn header(fam: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "table {fam} {KUBE_PROXY_TABLE}");
    let _ = writeln!(s, "delete table {fam} {KUBE_PROXY_TABLE}");
    let _ = writeln!(s, "table {fam} {KUBE_PROXY_TABLE} {{");
    let _ = writeln!(
        s,
        "  chain mark-for-masquerade {{\n    meta mark set meta mark | {MASQ_MARK:#x}\n  }}"
    );
    let _ = writeln!(s, "  chain masquerading {{\n    meta mark & {MASQ_MARK:#x} == 0 return\n    meta mark set meta mark ^ {MASQ_MARK:#x}\n    masquerade\n  }}");
    let _ = writeln!(s, "  chain nat-prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }}");
    let _ = writeln!(s, "  chain nat-output {{\n    type nat hook output priority -100; policy accept;\n    jump services\n  }}");
    let _ = writeln!(s, "  chain nat-postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    jump masquerading\n  }}");
    s
}

/// One Service's rules: its ClusterIP, NodePort, endpoint and load-balancing chains.
fn render_service(ctx: &Ctx, tb: &mut Table, s: &Svc, eps: &[ServiceEndpoint]) {
    if eps.is_empty() {
        no_endpoints(ctx, tb, s);
        return;
    }
    // The endpoints on this node: all a Local traffic policy allows.
    let local: Vec<usize> = (0..eps.len())
        .filter(|&i| node_of(ctx.t, &eps[i].0) == Some(ctx.node))
        .collect();
    clusterip_rules(ctx, tb, s, &local);
    nodeport_rules(ctx, tb, s, &local);
    let ecs = endpoint_chains(ctx, tb, s, eps);
    lb_chains(ctx, tb, s, &ecs, &local);
}

/// A Service without endpoints is rejected, at its ClusterIP and its NodePort.
fn no_endpoints(ctx: &Ctx, tb: &mut Table, s: &Svc) {
    let (fam, p, vip, comment) = (ctx.fam, s.p, s.vip, &s.comment);
    let how = if s.svc.protocol == Proto::Tcp {
        "reject with tcp reset"
    } else {
        "reject"
    };
    let _ = writeln!(
        tb.rejects,
        "    {fam} daddr {vip} {p} dport {} {how} comment \"{comment} has no endpoints\"",
        s.svc.port
    );
    if let (Some(np), Some(node_ip)) = (s.svc.node_port, ctx.node_ip) {
        let _ = writeln!(
            tb.nodeport_rejects,
            "    {fam} daddr {node_ip} {p} dport {np} {how} comment \"{comment} has no endpoints\""
        );
    }
    for (ip, _) in fronts(ctx, s.svc) {
        let _ = writeln!(
            tb.rejects,
            "    {fam} daddr {ip} {p} dport {} {how} comment \"{comment} has no endpoints\"",
            s.svc.port
        );
    }
}

/// A Service's addresses outside the cluster (its load balancer's, its external IPs), with
/// their source ranges, in the IPv4 table (they are IPv4).
fn fronts<'a>(ctx: &Ctx, svc: &'a Service) -> Vec<(std::net::Ipv4Addr, &'a [ipnet::Ipv4Net])> {
    match ctx.family {
        Family::V4 => svc.fronts(),
        Family::V6 => Vec::new(),
    }
}
/// The ClusterIP's rule: to the Service's chain; with internalTrafficPolicy Local to this
/// node's endpoints only, and dropped where there are none (kube-proxy: "has no local
/// endpoints"), and kube-dns's dns-tcp port.
fn clusterip_rules(ctx: &Ctx, tb: &mut Table, s: &Svc, local: &[usize]) {
    let (fam, p, vip, c, comment, port) = (ctx.fam, s.p, s.vip, &s.c, &s.comment, s.svc.port);
    let internal = match (s.svc.internal_local, local.is_empty()) {
        (false, _) => Some(c.clone()),
        (true, true) => {
            let _ = writeln!(
                tb.rejects,
                "    {fam} daddr {vip} {p} dport {port} drop comment \"{comment} has no local endpoints\""
            );
            None
        }
        (true, false) => Some(format!("{c}-local")),
    };
    if let Some(to) = internal {
        let _ = writeln!(
            tb.services,
            "    {fam} daddr {vip} {p} dport {port} goto {to} comment \"{comment}\""
        );
    }
    if s.also_tcp {
        let _ = writeln!(
            tb.services,
            "    {fam} daddr {vip} tcp dport {port} goto {c} comment \"{comment} dns-tcp\""
        );
    }
}

/// The NodePort's rule, at the node's own address, a load balancer's at its address, and
/// their external chain: marked for masquerade, or with externalTrafficPolicy Local as
/// `external_local_chain` says. A load balancer's source ranges drop anyone else first.
fn nodeport_rules(ctx: &Ctx, tb: &mut Table, s: &Svc, local: &[usize]) {
    let (fam, p, c, comment) = (ctx.fam, s.p, &s.c, &s.comment);
    let nodeport = s.svc.node_port.zip(ctx.node_ip);
    if let Some((np, node_ip)) = nodeport {
        let _ = writeln!(
            tb.services,
            "    {fam} daddr {node_ip} {p} dport {np} goto external-{c} comment \"{comment} nodeport\""
        );
    }
    let fronts = fronts(ctx, s.svc);
    for (ip, ranges) in &fronts {
        let port = s.svc.port;
        let kind = match s.svc.load_balancer.as_ref().is_some_and(|lb| lb.ip == *ip) {
            true => "loadbalancer",
            false => "external-ip",
        };
        let _ = writeln!(
            tb.services,
            "    {fam} daddr {ip} {p} dport {port} goto external-{c} comment \"{comment} {kind}\""
        );
        if !ranges.is_empty() {
            let ranges: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
            let _ = writeln!(
                tb.firewall,
                "    {fam} daddr {ip} {p} dport {port} {fam} saddr != {{ {} }} drop comment \"{comment} loadBalancerSourceRanges\"",
                ranges.join(", ")
            );
        }
    }
    if nodeport.is_none() && fronts.is_empty() {
        return;
    }
    let external = if s.svc.external_local {
        external_local_chain(c, fam, ctx.cluster_cidr.as_deref(), !local.is_empty())
    } else {
        format!("    jump mark-for-masquerade\n    goto {c}\n")
    };
    let _ = writeln!(tb.chains, "  chain external-{c} {{\n{external}  }}");
    if let (true, true, Some((np, node_ip))) = (s.svc.external_local, local.is_empty(), nodeport) {
        // Nothing DNATs it: it reaches the node's input, where kube-proxy drops it.
        let _ = writeln!(
            tb.nodeport_rejects,
            "    {fam} daddr {node_ip} {p} dport {np} drop comment \"{comment} has no local endpoints\""
        );
    }
}

/// kube-proxy's external chain of an `externalTrafficPolicy: Local` Service: the cluster's
/// pods and the node itself get every endpoint (the node's own traffic masqueraded), anyone
/// else the node's own endpoints, unmasqueraded (nothing, where it has none).
fn external_local_chain(c: &str, fam: &str, cluster_cidr: Option<&str>, has_local: bool) -> String {
    let mut s = String::new();
    if let Some(cidr) = cluster_cidr {
        let _ = writeln!(s, "    {fam} saddr {cidr} goto {c}");
    }
    let _ = writeln!(s, "    fib saddr type local jump mark-for-masquerade");
    let _ = writeln!(s, "    fib saddr type local goto {c}");
    if has_local {
        let _ = writeln!(s, "    goto {c}-external-local");
    }
    s
}

/// A chain per endpoint: a hairpin mark (a pod reaching itself through its Service), the
/// ClientIP affinity record, the DNAT. Returns the chains' names.
fn endpoint_chains(ctx: &Ctx, tb: &mut Table, s: &Svc, eps: &[ServiceEndpoint]) -> Vec<String> {
    let (fam, p) = (ctx.fam, s.p);
    let mut names = Vec::new();
    for (i, (pod, ip, port)) in eps.iter().enumerate() {
        let ec = format!(
            "endpoint-{}-{}-{i}",
            ident(&s.svc.namespace),
            ident(&s.svc.name)
        );
        let to = dnat_target(*ip, *port);
        let tcp_too = match s.also_tcp {
            true => format!("\n    meta l4proto tcp dnat to {to}"),
            false => String::new(),
        };
        let affinity = match s.svc.affinity_timeout {
            Some(secs) => {
                let kind = match ctx.family {
                    Family::V4 => "ipv4_addr",
                    Family::V6 => "ipv6_addr",
                };
                let _ = writeln!(
                    tb.sets,
                    "  set affinity-{ec} {{ type {kind}; flags dynamic,timeout; timeout {secs}s; }}"
                );
                format!("    update @affinity-{ec} {{ {fam} saddr }}\n")
            }
            None => String::new(),
        };
        let _ = writeln!(
            tb.chains,
            "  chain {ec} {{\n    {fam} saddr {ip} jump mark-for-masquerade comment \"hairpin {pod}\"\n{affinity}    meta l4proto {p} dnat to {to}{tcp_too}\n  }}"
        );
        names.push(ec);
    }
    names
}

/// The Service's load-balancing chain over every endpoint, and where a Local traffic policy
/// needs one, over this node's: a client with a live ClientIP affinity goes back to its
/// endpoint, anyone else to one drawn at random.
fn lb_chains(ctx: &Ctx, tb: &mut Table, s: &Svc, ecs: &[String], local: &[usize]) {
    let (fam, c) = (ctx.fam, &s.c);
    // Traffic from outside the cluster's pods is masqueraded (kube-proxy's --cluster-cidr).
    let mark = match &ctx.cluster_cidr {
        Some(cidr) => format!("    {fam} saddr != {cidr} jump mark-for-masquerade\n"),
        None => "    jump mark-for-masquerade\n".to_string(),
    };
    let lb = |picked: &[usize]| {
        let mut out = String::new();
        if s.svc.affinity_timeout.is_some() {
            for &i in picked {
                let _ = writeln!(out, "    {fam} saddr @affinity-{0} goto {0}", ecs[i]);
            }
        }
        let vmap: Vec<String> = picked
            .iter()
            .enumerate()
            .map(|(j, &i)| format!("{j} : goto {}", ecs[i]))
            .collect();
        let _ = writeln!(
            out,
            "    numgen random mod {} vmap {{ {} }}",
            picked.len(),
            vmap.join(", ")
        );
        out
    };
    let all: Vec<usize> = (0..ecs.len()).collect();
    let _ = writeln!(tb.chains, "  chain {c} {{\n{mark}{}  }}", lb(&all));
    if s.svc.internal_local && !local.is_empty() {
        let _ = writeln!(tb.chains, "  chain {c}-local {{\n{mark}{}  }}", lb(local));
    }
    // The client's address is kept: no masquerade mark.
    let external = s.svc.node_port.is_some() || !s.svc.fronts().is_empty();
    if s.svc.external_local && !local.is_empty() && external {
        let _ = writeln!(
            tb.chains,
            "  chain {c}-external-local {{\n{}  }}",
            lb(local)
        );
    }
}

/// kube-proxy's `cluster-ips-check` (nftables mode), run on new flows after DNAT: a packet still
/// addressed to a ClusterIP found no Service port of that IP and protocol, and is rejected;
/// one to an unallocated address of the service CIDR is dropped.
fn cluster_ips_check(t: &Topology, k: &K8s, family: Family) -> String {
    let fam = family.nft();
    let cidr = match family {
        Family::V4 => Some(k.service_cidr.to_string()),
        Family::V6 => k.service_cidr6.map(|c| c.to_string()),
    };
    let ips: Vec<String> = k
        .services
        .iter()
        .filter_map(|svc| service_in(t, svc, family).map(|(vip, _)| vip.to_string()))
        .collect();
    // A named set, as kube-proxy keeps it: it adds a Service's ClusterIP when it programs the
    // Service, and a fault that makes it lose one removes the element.
    let kind = match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    };
    let elements = match ips.is_empty() {
        true => String::new(),
        false => format!(" elements = {{ {} }};", ips.join(", ")),
    };
    let mut out = format!("  set {CLUSTER_IPS_SET} {{ type {kind};{elements} }}\n");
    let mut body = format!("    {fam} daddr @{CLUSTER_IPS_SET} reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n");
    if let Some(c) = cidr {
        let _ = writeln!(
            body,
            "    {fam} daddr {c} drop comment \"Drop traffic to unallocated ClusterIPs\""
        );
    }
    // After the nat hooks (dstnat -100, output -100), as kube-proxy's filter chains run.
    let _ = writeln!(out, "  chain cluster-ips-check {{\n{body}  }}");
    for hook in ["forward", "output"] {
        let _ = writeln!(out, "  chain filter-{hook}-post-dnat {{\n    type filter hook {hook} priority 0; policy accept;\n    ct state new jump cluster-ips-check\n  }}");
    }
    out
}
