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
        service(t, s, node, node_ip, &mut nat, &mut filter);
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
    node: &str,
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
    // (address, port, on this node): the declared endpoints, then stale ones (on no node).
    let eps: Vec<(Ipv4Addr, u16, bool)> = s
        .endpoints
        .iter()
        .filter_map(|e| {
            let p = t.host(&e.pod)?.as_pod()?;
            Some((p.ip, e.port, p.node == node))
        })
        .chain(s.stale.iter().map(|(ip, port)| (*ip, *port, false)))
        .collect();
    for (p, port_name) in ports {
        let port = Port {
            s,
            name: &name,
            p,
            key: format!("{name}{port_name} {p}"),
        };
        if eps.is_empty() {
            reject(
                filter,
                &port,
                &port_name,
                node_ip,
                "REJECT --reject-with icmp-port-unreachable",
                "has no endpoints",
            );
            continue;
        }
        let chains = port.chains(nat, &eps, t.cluster.cidr);
        clusterip(nat, filter, &port, &port_name, &chains);
        let np = s.node_port.zip(node_ip);
        if port_name.is_empty() && (np.is_some() || !s.external_ips.is_empty()) {
            let ext = external(nat, filter, &port, np, t.cluster.cidr, &chains);
            for ip in &s.external_ips {
                nat.rule(format!("-A KUBE-SERVICES -d {ip}/32 -p {p} -m comment --comment \"{name} external IP\" -m {p} --dport {} -j {ext}", s.port));
            }
        }
    }
}

/// One port of a Service as the rules name it.
struct Port<'a> {
    s: &'a Service,
    name: &'a str,
    p: &'static str,
    key: String,
}

/// A port's Service chains: all endpoints (`KUBE-SVC-*`), and this node's own
/// (`KUBE-SVL-*`, for Local traffic policies; None when it has none).
struct Chains {
    svc: String,
    svl: Option<String>,
}

impl Port<'_> {
    fn chains(
        &self,
        nat: &mut Part,
        eps: &[(Ipv4Addr, u16, bool)],
        cidr: ipnet::Ipv4Net,
    ) -> Chains {
        let svc = chain_name("KUBE-SVC-", &self.key);
        nat.chain(&svc);
        let cidr_rule = format!("-A {svc} ! -s {cidr} -d {}/32 -p {p} -m comment --comment \"{} cluster IP\" -m {p} --dport {} -j KUBE-MARK-MASQ", self.s.cluster_ip, self.name, self.s.port, p = self.p);
        nat.rule(cidr_rule);
        let all: Vec<(Ipv4Addr, u16)> = eps.iter().map(|(ip, port, _)| (*ip, *port)).collect();
        endpoints(nat, &svc, self, &all);
        let local: Vec<(Ipv4Addr, u16)> = eps
            .iter()
            .filter(|e| e.2)
            .map(|(ip, port, _)| (*ip, *port))
            .collect();
        let wants_local = self.s.internal_local || self.s.external_local;
        let svl = (wants_local && !local.is_empty()).then(|| {
            let svl = chain_name("KUBE-SVL-", &self.key);
            nat.chain(&svl);
            endpoints(nat, &svl, self, &local);
            svl
        });
        Chains { svc, svl }
    }
}

/// A rule in the filter table turning the port away: at the ClusterIP and, with a NodePort,
/// at the node's address.
fn reject(
    filter: &mut Part,
    port: &Port,
    port_name: &str,
    node_ip: Option<Ipv4Addr>,
    target: &str,
    why: &str,
) {
    let (s, name, p) = (port.s, port.name, port.p);
    filter.rule(format!("-A KUBE-SERVICES -d {}/32 -p {p} -m comment --comment \"{name}{port_name} {why}\" -m {p} --dport {} -j {target}", s.cluster_ip, s.port));
    if let (Some(np), Some(ip), true) = (s.node_port, node_ip, port_name.is_empty()) {
        filter.rule(format!("-A KUBE-EXTERNAL-SERVICES -d {ip}/32 -p {p} -m comment --comment \"{name} {why}\" -m {p} --dport {np} -j {target}"));
    }
    // An external IP without endpoints is turned away as the ClusterIP is (new connections
    // forwarded or sent by the node).
    for ip in s.external_ips.iter().filter(|_| port_name.is_empty()) {
        filter.rule(format!("-A KUBE-SERVICES -d {ip}/32 -p {p} -m comment --comment \"{name} external IP {why}\" -m {p} --dport {} -j {target}", s.port));
    }
}

/// The ClusterIP's jump: to all endpoints, or with internalTrafficPolicy Local to this
/// node's (dropped in the filter table where it has none).
fn clusterip(nat: &mut Part, filter: &mut Part, port: &Port, port_name: &str, chains: &Chains) {
    let (s, name, p) = (port.s, port.name, port.p);
    let to = match (s.internal_local, &chains.svl) {
        (false, _) => &chains.svc,
        (true, Some(svl)) => svl,
        (true, None) => {
            filter.rule(format!("-A KUBE-SERVICES -d {}/32 -p {p} -m comment --comment \"{name}{port_name} has no local endpoints\" -m {p} --dport {} -j DROP", s.cluster_ip, s.port));
            return;
        }
    };
    nat.rule(format!("-A KUBE-SERVICES -d {}/32 -p {p} -m comment --comment \"{name}{port_name} cluster IP\" -m {p} --dport {} -j {to}", s.cluster_ip, s.port));
}

/// The external chain `KUBE-EXT-*` of the NodePort (from `KUBE-NODEPORTS`; `np`: the port
/// and the node's address) and of external IPs: masquerades and goes to every endpoint; with
/// externalTrafficPolicy Local the cluster's own traffic (pods, the node) still goes to every
/// endpoint, and the rest to this node's (dropped at the NodePort where it has none). Returns
/// the chain.
fn external(
    nat: &mut Part,
    filter: &mut Part,
    port: &Port,
    np: Option<(u16, Ipv4Addr)>,
    cidr: ipnet::Ipv4Net,
    chains: &Chains,
) -> String {
    let (name, p) = (port.name, port.p);
    let ext = chain_name("KUBE-EXT-", &port.key);
    nat.chain(&ext);
    if let Some((np, _)) = np {
        nat.rule(format!(
            "-A KUBE-NODEPORTS -p {p} -m comment --comment \"{name}\" -m {p} --dport {np} -j {ext}"
        ));
    }
    let svc = &chains.svc;
    if !port.s.external_local {
        nat.rule(format!("-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"));
        nat.rule(format!("-A {ext} -j {svc}"));
        return ext;
    }
    nat.rule(format!("-A {ext} -s {cidr} -m comment --comment \"pod traffic for {name} external destinations\" -j {svc}"));
    nat.rule(format!("-A {ext} -m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"));
    nat.rule(format!("-A {ext} -m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {svc}"));
    match (&chains.svl, np) {
        (Some(svl), _) => nat.rule(format!("-A {ext} -j {svl}")),
        (None, Some((np, node_ip))) => filter.rule(format!("-A KUBE-EXTERNAL-SERVICES -d {node_ip}/32 -p {p} -m comment --comment \"{name} has no local endpoints\" -m {p} --dport {np} -j DROP")),
        (None, None) => {}
    }
    ext
}

/// The endpoint chains of one Service chain and its choice among them: with ClientIP
/// affinity, a client seen by an endpoint's `recent` list goes back to it; else the i-th of
/// n is taken with probability 1/(n-i), the last always, as kube-proxy writes it.
fn endpoints(nat: &mut Part, svc: &str, port: &Port, eps: &[(Ipv4Addr, u16)]) {
    let (key, name, p) = (&port.key, port.name, port.p);
    let seps: Vec<String> = eps
        .iter()
        .map(|(ip, pt)| chain_name("KUBE-SEP-", &format!("{key} {ip}:{pt}")))
        .collect();
    let affinity = port.s.affinity_timeout;
    if let Some(secs) = affinity {
        for ((ip, pt), sep) in eps.iter().zip(&seps) {
            nat.rule(format!("-A {svc} -m comment --comment \"{name} -> {ip}:{pt}\" -m recent --name {sep} --rcheck --seconds {secs} --reap -j {sep}"));
        }
    }
    let n = eps.len();
    for (i, ((ip, pt), sep)) in eps.iter().zip(&seps).enumerate() {
        let pick = if i + 1 < n {
            format!(
                " -m statistic --mode random --probability {:.11}",
                1.0 / (n - i) as f64
            )
        } else {
            String::new()
        };
        nat.rule(format!(
            "-A {svc} -m comment --comment \"{name} -> {ip}:{pt}\"{pick} -j {sep}"
        ));
        if nat.chains.contains(sep) {
            continue;
        }
        nat.chain(sep);
        let remember = if affinity.is_some() {
            format!(" -m recent --set --name {sep} --mask 255.255.255.255 --rsource")
        } else {
            String::new()
        };
        nat.rule(format!(
            "-A {sep} -s {ip}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ"
        ));
        nat.rule(format!("-A {sep} -p {p} -m comment --comment \"{name}\"{remember} -m {p} -j DNAT --to-destination {ip}:{pt}"));
    }
}
