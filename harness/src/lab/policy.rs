//! NetworkPolicies compiled to nft, as a policy controller would program one node: `table inet
//! netfault-policy`, a chain per isolated pod and direction, a `return` per rule line that
//! allows, then a drop. Pure rendering (text for `nft -f`).

use std::fmt::Write;
use std::net::IpAddr;

use super::kube_proxy::ident;
use crate::topology::k8s::{K8s, Peer, Policy, PolicyPort, PolicyRule, PortRef};
use crate::topology::k8s_eval::named_port;
use crate::topology::model::PodSpec;
use crate::topology::{Family, Topology};

pub const POLICY_TABLE: &str = "netfault-policy";

/// NetworkPolicies for the pods of one node: `table inet netfault-policy` (empty when no policy
/// selects a pod of the node), replacing any table of that name.
pub fn policy_script(t: &Topology, k: &K8s, node: &str) -> String {
    let mut view = t.clone();
    view.k8s = k.clone();
    let mut s = String::new();
    let _ = writeln!(s, "table inet {POLICY_TABLE}");
    let _ = writeln!(s, "delete table inet {POLICY_TABLE}");
    let mut jumps = String::new();
    let mut chains = String::new();
    for (pod, p) in t.pods_of(node) {
        for egress in [true, false] {
            if let Some(chain) = pod_chain(&view, pod, p, egress, &mut jumps) {
                chains.push_str(&chain);
            }
        }
    }
    if jumps.is_empty() {
        return s;
    }
    let _ = writeln!(s, "table inet {POLICY_TABLE} {{");
    let _ = writeln!(s, "  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    ct state established,related accept\n{jumps}  }}");
    s.push_str(&chains);
    s.push_str("}\n");
    s
}

/// One pod's chain for one direction (None when no policy isolates it there), and its jumps.
fn pod_chain(
    view: &Topology,
    pod: &str,
    p: &PodSpec,
    egress: bool,
    jumps: &mut String,
) -> Option<String> {
    let pols = view.policies_for(pod, egress);
    if pols.is_empty() {
        return None;
    }
    let dir = if egress { "egress" } else { "ingress" };
    let (me, peer) = if egress {
        ("saddr", "daddr")
    } else {
        ("daddr", "saddr")
    };
    let c = format!("{dir}-{}", ident(pod));
    let mut body = String::new();
    // A dual-stack pod is isolated in both families: its IPv6 address jumps to the same
    // chain, whose rules match each family's addresses.
    let own = std::iter::once(IpAddr::V4(p.ip)).chain(p.ip6.map(IpAddr::V6));
    for ip in own {
        let fam = Family::of(ip).nft();
        let _ = writeln!(jumps, "    {fam} {me} {ip} jump {c}");
        let _ = writeln!(
            body,
            "    {fam} {peer} {ip} return comment \"{pod} itself\""
        );
    }
    // Ingress: a named port is the isolated pod's own; egress: each destination pod's.
    let receiver = (!egress).then_some(p);
    for pol in &pols {
        let rules = if egress { &pol.egress } else { &pol.ingress };
        for r in rules.iter().flatten() {
            for line in rule_lines(view, pol, r, peer, receiver) {
                let _ = writeln!(
                    body,
                    "    {line} return comment \"{}/{}\"",
                    pol.namespace, pol.name
                );
            }
        }
    }
    let names: Vec<String> = pols
        .iter()
        .map(|x| format!("{}/{}", x.namespace, x.name))
        .collect();
    let _ = writeln!(
        body,
        "    drop comment \"{pod} {dir} isolated by {}\"",
        names.join(", ")
    );
    Some(format!("  chain {c} {{\n{body}  }}\n"))
}

/// The nft matches of one policy rule: one line per (peer, port) combination. `receiver` is
/// the pod that receives the traffic when it is one pod (an ingress chain's own).
fn rule_lines(
    t: &Topology,
    pol: &Policy,
    r: &PolicyRule,
    dir: &str,
    receiver: Option<&PodSpec>,
) -> Vec<String> {
    let mut peers: Vec<String> = Vec::new();
    if r.peers.is_empty() {
        peers.push(String::new());
    }
    for peer in &r.peers {
        peers.extend(peer_matches(t, pol, peer, dir));
    }
    let mut ports: Vec<String> = Vec::new();
    if r.ports.is_empty() {
        ports.push(String::new());
    }
    for pp in &r.ports {
        ports.extend(port_matches(t, pp, receiver));
    }
    let mut out = Vec::new();
    for a in &peers {
        for b in &ports {
            out.push(format!("{a} {b}").trim().to_string());
        }
    }
    out
}

/// A peer's address matches: an ipBlock in its family, or the selected pods' addresses (a set
/// per family; none when it selects no pod).
fn peer_matches(t: &Topology, pol: &Policy, peer: &Peer, dir: &str) -> Vec<String> {
    match peer {
        Peer::Cidr { cidr, except } => {
            let fam = Family::of(cidr.addr()).nft();
            let mut m = format!("{fam} {dir} {cidr}");
            if !except.is_empty() {
                let ex: Vec<String> = except.iter().map(|e| e.to_string()).collect();
                let _ = write!(m, " {fam} {dir} != {{ {} }}", ex.join(", "));
            }
            vec![m]
        }
        Peer::Pods { .. } => {
            let v4 = t.pods().map(|(_, p)| Some(IpAddr::V4(p.ip)));
            let v6 = t.pods().map(|(_, p)| p.ip6.map(IpAddr::V6));
            let mut out = Vec::new();
            for family in [v4.collect::<Vec<_>>(), v6.collect()] {
                let ips: Vec<IpAddr> = family
                    .into_iter()
                    .flatten()
                    .filter(|ip| t.peer_selects(pol, peer, *ip))
                    .collect();
                if let Some(first) = ips.first() {
                    let fam = Family::of(*first).nft();
                    let list: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
                    out.push(format!("{fam} {dir} {{ {} }}", list.join(", ")));
                }
            }
            out
        }
    }
}

/// A policy port's matches: a number or range; a named port resolved against the receiving
/// pod, or (egress) one match per destination pod that gives the name a number — a named port
/// that resolves nowhere matches nothing (no line).
fn port_matches(t: &Topology, pp: &PolicyPort, receiver: Option<&PodSpec>) -> Vec<String> {
    let p = pp.protocol.l4_name();
    match &pp.port {
        None => vec![format!("meta l4proto {p}")],
        Some(PortRef::Number(n)) => match pp.end_port {
            Some(e) if e > *n => vec![format!("{p} dport {n}-{e}")],
            _ => vec![format!("{p} dport {n}")],
        },
        Some(PortRef::Name(name)) => match receiver {
            Some(pod) => named_port(pod, name, pp.protocol)
                .map(|n| format!("{p} dport {n}"))
                .into_iter()
                .collect(),
            None => t
                .pods()
                .filter_map(|(_, pod)| Some((pod, named_port(pod, name, pp.protocol)?)))
                .flat_map(|(pod, n)| {
                    let own = std::iter::once(IpAddr::V4(pod.ip)).chain(pod.ip6.map(IpAddr::V6));
                    own.map(move |ip| format!("{} daddr {ip} {p} dport {n}", Family::of(ip).nft()))
                })
                .collect(),
        },
    }
}
