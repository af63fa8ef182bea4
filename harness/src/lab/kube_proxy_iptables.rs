//! kube-proxy's iptables mode, rendered for one node (IPv4) as iptables-restore input, laid out
//! as the real proxier lays it out: `KUBE-SERVICES` (hooked from PREROUTING and OUTPUT) jumps
//! per ClusterIP to `KUBE-SVC-*`, which marks traffic from outside the cluster CIDR with
//! `KUBE-MARK-MASQ` and picks an endpoint chain `KUBE-SEP-*` with `statistic --mode random
//! --probability`; each `KUBE-SEP-*` marks hairpin traffic and DNATs. NodePorts go through
//! `KUBE-NODEPORTS` (at the node's address, kube-proxy's `--nodeport-addresses` default) and
//! `KUBE-EXT-*`; `KUBE-POSTROUTING` masquerades what was marked. A Service without endpoints
//! is rejected in the filter table's `KUBE-SERVICES` (and `KUBE-EXTERNAL-SERVICES` for its
//! NodePort), hooked on new connections.
//!
//! kube-proxy loads it with `iptables-restore --noflush`, keeping every other rule of the
//! shared `nat` and `filter` tables (netfault's own masquerade lives in `table ip nat` too):
//! so the input declares (and so flushes) the chains it writes, takes out its own jump rules
//! when the live table has them, and deletes the `KUBE-*` chains of an earlier rendering that
//! this one no longer has.

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::topology::k8s::{K8s, Service};
use crate::topology::{Proto, Topology};

/// The `KUBE-*` chains a node's live `nat` and `filter` tables hold now.
#[derive(Debug, Default, Clone)]
pub struct LiveChains {
    pub nat: Vec<String>,
    pub filter: Vec<String>,
}

impl LiveChains {
    /// The `KUBE-*` chain names of `nft list table ip TABLE` text.
    pub fn read(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("chain KUBE-"))
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| format!("KUBE-{n}"))
            .collect()
    }
}

/// One table's input as it is built: chains to declare, rules to append.
#[derive(Default)]
struct Part {
    chains: Vec<String>,
    rules: Vec<String>,
}

impl Part {
    fn chain(&mut self, c: &str) {
        if !self.chains.iter().any(|x| x == c) {
            self.chains.push(c.to_string());
        }
    }

    fn rule(&mut self, r: String) {
        self.rules.push(r);
    }
}

/// The jump rules from the built-in chains: (table, rule spec after `-A`).
const JUMPS: [(&str, &str); 6] = [
    ("nat", "PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("nat", "OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("nat", "POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"),
    ("filter", "FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("filter", "OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("filter", "INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"),
];

/// iptables-restore input (for `--noflush`) that makes `node`'s kube-proxy chains those of
/// `k`, given the chains `live` holds now.
pub fn iptables_script(t: &Topology, k: &K8s, node: &str, live: &LiveChains) -> String {
    let (mut nat, mut filter) = (Part::default(), Part::default());
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        nat.chain(c);
    }
    filter.chain("KUBE-SERVICES");
    filter.chain("KUBE-EXTERNAL-SERVICES");
    nat.rule(format!(
        "-A KUBE-MARK-MASQ -j MARK --or-mark {:#x}",
        super::kube_proxy::MASQ_MARK
    ));
    nat.rule(format!(
        "-A KUBE-POSTROUTING -m mark ! --mark {m:#x}/{m:#x} -j RETURN",
        m = super::kube_proxy::MASQ_MARK
    ));
    nat.rule(format!(
        "-A KUBE-POSTROUTING -j MARK --xor-mark {:#x}",
        super::kube_proxy::MASQ_MARK
    ));
    nat.rule("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE".into());
    let node_ip = t
        .host(node)
        .filter(|h| h.as_node().is_some())
        .map(|h| h.address());
    for s in &k.services {
        service(t, s, node_ip, &mut nat, &mut filter);
    }
    if let Some(ip) = node_ip {
        // kube-proxy: "this must be the last rule in this chain".
        nat.rule(format!("-A KUBE-SERVICES -d {ip}/32 -m comment --comment \"kubernetes service nodeports\" -j KUBE-NODEPORTS"));
    }
    let mut out = String::new();
    for (name, part, was) in [("nat", nat, &live.nat), ("filter", filter, &live.filter)] {
        table(&mut out, name, part, was);
    }
    out
}

/// One table's section: declarations, this renderer's old jumps and stale chains out, rules.
fn table(out: &mut String, name: &str, part: Part, was: &[String]) {
    let _ = writeln!(out, "*{name}");
    for c in &part.chains {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    if was.iter().any(|c| c == "KUBE-SERVICES") {
        for (_, j) in JUMPS.iter().filter(|(tb, _)| *tb == name) {
            let _ = writeln!(out, "-D {j}");
        }
    }
    let stale: Vec<&String> = was.iter().filter(|c| !part.chains.contains(c)).collect();
    for c in &stale {
        let _ = writeln!(out, "-F {c}");
    }
    for c in &stale {
        let _ = writeln!(out, "-X {c}");
    }
    for (_, j) in JUMPS.iter().filter(|(tb, _)| *tb == name) {
        let _ = writeln!(out, "-A {j}");
    }
    for r in &part.rules {
        let _ = writeln!(out, "{r}");
    }
    let _ = writeln!(out, "COMMIT");
}

/// A chain name as kube-proxy makes one: a prefix and 16 characters of a hash of what the
/// chain is for (iptables chain names are at most 28 characters).
fn chain_name(prefix: &str, of: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut name = String::from(prefix);
    for round in 0..2u8 {
        for b in of.bytes().chain([round]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for i in 0..8 {
            name.push(ALPHABET[((h >> (i * 5)) & 31) as usize] as char);
        }
    }
    name
}

/// One Service port: every chain and rule it needs on this node.
fn service(
    t: &Topology,
    s: &Service,
    node_ip: Option<Ipv4Addr>,
    nat: &mut Part,
    filter: &mut Part,
) {
    let name = format!("{}/{}", s.namespace, s.name);
    let mut ports = vec![(s.protocol.l4_name(), String::new())];
    if s.dns && s.protocol == Proto::Udp {
        // kube-dns's dns-tcp port: resolvers retry a truncated answer over TCP.
        ports.push(("tcp", ":dns-tcp".into()));
    }
    let eps: Vec<(Ipv4Addr, u16)> = s
        .endpoints
        .iter()
        .filter_map(|e| Some((t.host(&e.pod)?.as_pod()?.ip, e.port)))
        .chain(s.stale.iter().copied())
        .collect();
    for (p, port_name) in ports {
        let vip = s.cluster_ip;
        let key = format!("{name}{port_name} {p}");
        if eps.is_empty() {
            filter.rule(format!("-A KUBE-SERVICES -d {vip}/32 -p {p} -m comment --comment \"{name}{port_name} has no endpoints\" -m {p} --dport {} -j REJECT --reject-with icmp-port-unreachable", s.port));
            if let (Some(np), Some(ip)) = (s.node_port, node_ip) {
                filter.rule(format!("-A KUBE-EXTERNAL-SERVICES -d {ip}/32 -p {p} -m comment --comment \"{name}{port_name} has no endpoints\" -m {p} --dport {np} -j REJECT --reject-with icmp-port-unreachable"));
            }
            continue;
        }
        let svc = chain_name("KUBE-SVC-", &key);
        nat.chain(&svc);
        nat.rule(format!("-A KUBE-SERVICES -d {vip}/32 -p {p} -m comment --comment \"{name}{port_name} cluster IP\" -m {p} --dport {} -j {svc}", s.port));
        let cidr = t.cluster.cidr;
        nat.rule(format!("-A {svc} ! -s {cidr} -d {vip}/32 -p {p} -m comment --comment \"{name}{port_name} cluster IP\" -m {p} --dport {} -j KUBE-MARK-MASQ", s.port));
        endpoints(nat, &svc, &key, &name, p, &eps);
        if let (Some(np), Some(_)) = (s.node_port.filter(|_| port_name.is_empty()), node_ip) {
            let ext = chain_name("KUBE-EXT-", &key);
            nat.chain(&ext);
            nat.rule(format!("-A KUBE-NODEPORTS -p {p} -m comment --comment \"{name}\" -m {p} --dport {np} -j {ext}"));
            nat.rule(format!("-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"));
            nat.rule(format!("-A {ext} -j {svc}"));
        }
    }
}

/// The endpoint chains of one Service port and the Service chain's choice among them: the
/// i-th of n taken with probability 1/(n-i), the last always, as kube-proxy writes it.
fn endpoints(nat: &mut Part, svc: &str, key: &str, name: &str, p: &str, eps: &[(Ipv4Addr, u16)]) {
    let n = eps.len();
    for (i, (ip, port)) in eps.iter().enumerate() {
        let sep = chain_name("KUBE-SEP-", &format!("{key} {ip}:{port}"));
        nat.chain(&sep);
        let pick = if i + 1 < n {
            format!(
                " -m statistic --mode random --probability {:.11}",
                1.0 / (n - i) as f64
            )
        } else {
            String::new()
        };
        nat.rule(format!(
            "-A {svc} -m comment --comment \"{name} -> {ip}:{port}\"{pick} -j {sep}"
        ));
        nat.rule(format!(
            "-A {sep} -s {ip}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ"
        ));
        nat.rule(format!("-A {sep} -p {p} -m comment --comment \"{name}\" -m {p} -j DNAT --to-destination {ip}:{port}"));
    }
}
