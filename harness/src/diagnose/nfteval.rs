//! What verdict would this packet get? A small evaluator of a namespace's live nft ruleset (as
//! `nft -j` prints it) for one packet at one hook: every base chain of every ip/inet table on
//! that hook, in priority order; within a chain, rules in order, with jump/goto/return and the
//! chain's policy. Any drop or reject wins.
//!
//! It models the matches a pod network uses (addresses, protocols, ports, interface names,
//! conntrack state, ICMP type, anonymous and named sets). A match it does not model makes the rule
//! *uncertain*; a verdict that depends on an uncertain rule is reported as such, never guessed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use crate::nft::RulesetText;
use crate::topology::Proto;

/// The packet as a hook sees it.
#[derive(Debug, Clone)]
pub struct Pkt {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: Proto,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// ICMP type (8 echo request, 0 echo reply, 3 destination unreachable).
    pub icmp_type: Option<u8>,
    /// ICMP code (for type 3: 4 fragmentation needed, ...).
    pub icmp_code: Option<u8>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// Conntrack state: the first packet of a flow is new, a reply is established.
    pub ct_new: bool,
    /// Length of the IP packet.
    pub len: usize,
    /// The packet's mark (skb->mark): 0 as it enters a namespace; `meta mark set` statements
    /// change it as rules run (kube-proxy marks what it wants masqueraded).
    pub mark: std::cell::Cell<u32>,
    /// Whether the destination is one of the evaluating host's addresses (`fib daddr type
    /// local`); None when unknown.
    pub dst_local: Option<bool>,
    /// An ARP packet's operation ("request" or "reply"), for the arp family's chains: `src`
    /// and `dst` are then its sender and target protocol addresses.
    pub arp_op: Option<&'static str>,
    /// An IPv6 packet's source and destination: the ip6 and inet chains see it, `src` and `dst`
    /// are unused, ip matches do not apply and ip6 ones do.
    pub v6: Option<(Ipv6Addr, Ipv6Addr)>,
    /// `fib saddr . iif oif` (nft's reverse-path check, firewalld's IPv6_rpfilter): the
    /// interface the host's route back to the source leaves by when that is the interface the
    /// packet came in on, Some(None) when there is no such route (`missing`); None: unknown.
    pub rpf_oif: Option<Option<String>>,
}

impl Pkt {
    /// The first packet of a new IPv4 flow as its sender's output hook sees it.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: Proto, dport: Option<u16>) -> Pkt {
        Pkt {
            src,
            dst,
            proto,
            sport: None,
            dport,
            icmp_type: (proto == Proto::Icmp).then_some(8),
            icmp_code: None,
            iif: None,
            oif: None,
            ct_new: true,
            len: 64,
            mark: Default::default(),
            dst_local: None,
            arp_op: None,
            v6: None,
            rpf_oif: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nat {
    Masquerade,
    Snat(Ipv4Addr),
    Dnat(Ipv4Addr, Option<u16>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every base chain let it through; NAT the nat chains would apply.
    Accept { nat: Vec<Nat> },
    /// Dropped (or rejected) by a rule or a chain's policy.
    Drop {
        at: String,
        rule: String,
        reject: bool,
    },
    /// The outcome hangs on a rule this evaluator cannot decide.
    Uncertain { at: String, rule: String },
}

#[derive(Debug, Clone)]
struct Chain {
    hook: Option<String>,
    prio: i64,
    ctype: String,
    policy: String,
    rules: Vec<(Vec<Value>, String)>,
}

type Key = (String, String, String);

/// A namespace's ruleset, ready to evaluate.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    chains: HashMap<Key, Chain>,
    sets: HashMap<Key, Vec<Value>>,
}

fn key(family: &str, table: &str, name: &str) -> Key {
    (family.to_string(), table.to_string(), name.to_string())
}

impl Ruleset {
    /// Whether any chain hooks into the stack (only those have verdicts to trace).
    pub fn has_base_chains(&self) -> bool {
        self.chains.values().any(|c| c.hook.is_some())
    }

    /// From `nft -j list ruleset` output, with `text` (the stateless text listing) giving each
    /// rule's readable form.
    pub fn from_json(v: &Value, text: &RulesetText) -> Ruleset {
        let mut rs = Ruleset::default();
        let Some(objs) = v.get("nftables").and_then(|x| x.as_array()) else {
            return rs;
        };
        for o in objs {
            if let Some(c) = o.get("chain") {
                let (Some(f), Some(t), Some(n)) = (s(c, "family"), s(c, "table"), s(c, "name"))
                else {
                    continue;
                };
                rs.chains.insert(
                    key(f, t, n),
                    Chain {
                        hook: s(c, "hook").map(String::from),
                        prio: c.get("prio").and_then(|p| p.as_i64()).unwrap_or(0),
                        ctype: s(c, "type").unwrap_or("filter").to_string(),
                        policy: s(c, "policy").unwrap_or("accept").to_string(),
                        rules: Vec::new(),
                    },
                );
            } else if let Some(set) = o.get("set") {
                let (Some(f), Some(t), Some(n)) =
                    (s(set, "family"), s(set, "table"), s(set, "name"))
                else {
                    continue;
                };
                let elems = set
                    .get("elem")
                    .and_then(|e| e.as_array())
                    .cloned()
                    .unwrap_or_default();
                rs.sets.insert(key(f, t, n), elems);
            }
        }
        for o in objs {
            let Some(r) = o.get("rule") else { continue };
            let (Some(f), Some(t), Some(c)) = (s(r, "family"), s(r, "table"), s(r, "chain")) else {
                continue;
            };
            let expr = r
                .get("expr")
                .and_then(|e| e.as_array())
                .cloned()
                .unwrap_or_default();
            if let Some(ch) = rs.chains.get_mut(&key(f, t, c)) {
                let i = ch.rules.len();
                let shown = text
                    .get(&format!("table {f} {t}"))
                    .and_then(|tt| tt.get(&format!("chain {c}")))
                    .and_then(|lines| lines.get(i + 1))
                    .cloned()
                    .unwrap_or_else(|| render_expr(&expr));
                ch.rules.push((expr, shown));
            }
        }
        rs
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// Whether any base chain sits on `hook`.
    pub fn has_hook(&self, hook: &str) -> bool {
        self.chains
            .values()
            .any(|c| c.hook.as_deref() == Some(hook))
    }

    /// The verdict for `pkt` at `hook` (prerouting, input, forward, output, postrouting).
    pub fn evaluate(&self, hook: &str, pkt: &Pkt) -> Verdict {
        if pkt.v6.is_some() {
            return self.evaluate_in(&["ip6", "inet"], hook, pkt);
        }
        self.evaluate_in(&["ip", "inet"], hook, pkt)
    }

    /// The verdict of the arp family's chains for an ARP packet (`pkt.arp_op` set) at `hook`
    /// (input or output).
    pub fn evaluate_arp(&self, hook: &str, pkt: &Pkt) -> Verdict {
        self.evaluate_in(&["arp"], hook, pkt)
    }

    fn evaluate_in(&self, families: &[&str], hook: &str, pkt: &Pkt) -> Verdict {
        let mut base: Vec<(&Key, &Chain)> = self
            .chains
            .iter()
            .filter(|(k, c)| c.hook.as_deref() == Some(hook) && families.contains(&k.0.as_str()))
            .collect();
        base.sort_by(|a, b| a.1.prio.cmp(&b.1.prio).then(a.0.cmp(b.0)));
        let mut nat = Vec::new();
        for (k, c) in base {
            if c.ctype == "nat" && !pkt.ct_new {
                continue; // conntrack translates established flows; nat chains see first packets only
            }
            if c.ctype == "nat" && !nat.is_empty() {
                continue; // the first translation binds the flow: later nat chains are not run
            }
            let at = format!("table {} {} chain {}", k.0, k.1, k.2);
            match self.run_chain(k, pkt, &mut nat, 0) {
                Flow::Accept | Flow::Continue => {}
                Flow::Policy => {
                    if c.policy == "drop" {
                        return Verdict::Drop {
                            at,
                            rule: format!("policy drop of chain {}", k.2),
                            reject: false,
                        };
                    }
                }
                Flow::Drop { at, rule, reject } => return Verdict::Drop { at, rule, reject },
                Flow::Uncertain { at, rule } => return Verdict::Uncertain { at, rule },
            }
        }
        Verdict::Accept { nat }
    }

    fn run_chain(&self, k: &Key, pkt: &Pkt, nat: &mut Vec<Nat>, depth: usize) -> Flow {
        let Some(chain) = self.chains.get(k) else {
            return Flow::Continue;
        };
        if depth > 16 {
            return Flow::Uncertain {
                at: format!("table {} {} chain {}", k.0, k.1, k.2),
                rule: "jumps nest too deep".into(),
            };
        }
        let at = format!("table {} {} chain {}", k.0, k.1, k.2);
        'rules: for (expr, text) in &chain.rules {
            let mut uncertain = false;
            for st in expr {
                let Some((name, body)) = st.as_object().and_then(|o| o.iter().next()) else {
                    continue;
                };
                match name.as_str() {
                    "match" => match self.eval_match(k, body, pkt) {
                        Some(true) => {}
                        Some(false) => continue 'rules,
                        None => uncertain = true,
                    },
                    // `reject with tcp reset` implies `meta l4proto tcp`, which `nft -j` leaves out.
                    "reject"
                        if s(body, "type") == Some("tcp reset")
                            && pkt.proto.base() != Proto::Tcp =>
                    {
                        continue 'rules
                    }
                    "accept" | "drop" | "reject" | "jump" | "goto" | "return" | "continue" => {
                        if uncertain && name != "continue" {
                            return Flow::Uncertain {
                                at,
                                rule: text.clone(),
                            };
                        }
                        match name.as_str() {
                            "accept" => return Flow::Accept,
                            "drop" => {
                                return Flow::Drop {
                                    at,
                                    rule: text.clone(),
                                    reject: false,
                                }
                            }
                            "reject" => {
                                return Flow::Drop {
                                    at,
                                    rule: text.clone(),
                                    reject: true,
                                }
                            }
                            "return" => return Flow::Continue,
                            "continue" => {}
                            _ => {
                                let target =
                                    body.get("target").and_then(|t| t.as_str()).unwrap_or("");
                                let tk = key(&k.0, &k.1, target);
                                match self.run_chain(&tk, pkt, nat, depth + 1) {
                                    Flow::Continue | Flow::Policy if name == "jump" => {
                                        continue 'rules
                                    }
                                    Flow::Continue | Flow::Policy => return Flow::Continue,
                                    other => return other,
                                }
                            }
                        }
                    }
                    "masquerade" | "snat" | "dnat" | "redirect" => {
                        if uncertain {
                            continue 'rules;
                        }
                        if let Some(n) = nat_of(name, body) {
                            nat.push(n);
                        }
                        return Flow::Accept;
                    }
                    "xt" => {
                        let kind = body.get("type").and_then(|t| t.as_str()).unwrap_or("");
                        let xname = body.get("name").and_then(|t| t.as_str()).unwrap_or("");
                        match (kind, xname) {
                            ("match", "comment") => {}
                            ("target", "MASQUERADE") if !uncertain => {
                                nat.push(Nat::Masquerade);
                                return Flow::Accept;
                            }
                            ("target", "MASQUERADE") => continue 'rules,
                            // iptables' REJECT (port unreachable unless told otherwise, a TCP
                            // reset under `-p tcp`): a reject like nft's own.
                            ("target", "REJECT") if !uncertain => {
                                return Flow::Drop {
                                    at,
                                    rule: text.clone(),
                                    reject: true,
                                }
                            }
                            ("target", _) => {
                                return Flow::Uncertain {
                                    at,
                                    rule: text.clone(),
                                }
                            }
                            _ => uncertain = true,
                        }
                    }
                    "vmap" => {
                        return Flow::Uncertain {
                            at,
                            rule: text.clone(),
                        }
                    }
                    "limit" | "quota" | "meter" => uncertain = true,
                    "mangle" => {
                        let is_mark = body
                            .get("key")
                            .and_then(|k| k.get("meta"))
                            .and_then(|m| s(m, "key"))
                            == Some("mark");
                        if is_mark && !uncertain {
                            match body.get("value").and_then(|v| self.numeric(v, pkt)) {
                                Some(v) => pkt.mark.set(v),
                                None => {
                                    return Flow::Uncertain {
                                        at,
                                        rule: text.clone(),
                                    }
                                }
                            }
                        }
                    }
                    _ => {} // counter, log, mangle, ... do not decide
                }
            }
        }
        Flow::Policy
    }

    fn eval_match(&self, k: &Key, m: &Value, pkt: &Pkt) -> Option<bool> {
        // `numgen random mod N < X`: true for a share of packets; a rule that can drop some
        // packets is reported as dropping (its text says how many).
        if m.get("left").and_then(|l| l.get("numgen")).is_some() {
            return Some(true);
        }
        let op = m.get("op").and_then(|o| o.as_str()).unwrap_or("==");
        if matches!(op, "<" | ">" | "<=" | ">=") {
            return self.compare(op, m, pkt);
        }
        let negate = match op {
            "==" | "in" => false,
            "!=" => true,
            _ => return None,
        };
        let left = m.get("left")?;
        let right = m.get("right")?;
        let value = self.left_value(left, pkt)?;
        let hit = match value {
            LeftVal::Absent => false,
            v => self.right_contains(k, right, &v)?,
        };
        Some(hit != negate)
    }

    /// An ordered comparison of a numeric field (`meta length > 1400`, `th dport < 1024`): a
    /// header the packet lacks does not match; anything but a number against a number is
    /// undecided.
    fn compare(&self, op: &str, m: &Value, pkt: &Pkt) -> Option<bool> {
        let n = match self.left_value(m.get("left")?, pkt)? {
            LeftVal::Num(n) => n,
            LeftVal::Absent => return Some(false),
            _ => return None,
        };
        let r = m.get("right")?.as_u64()?;
        Some(match op {
            "<" => n < r,
            ">" => n > r,
            "<=" => n <= r,
            _ => n >= r,
        })
    }

    /// A numeric expression: the mark, a number, or a bitwise operation over them.
    fn numeric(&self, v: &Value, pkt: &Pkt) -> Option<u32> {
        if let Some(n) = v.as_u64() {
            return u32::try_from(n).ok();
        }
        if v.get("meta").and_then(|m| s(m, "key")) == Some("mark") {
            return Some(pkt.mark.get());
        }
        let o = v.as_object()?;
        let (op, args) = o.iter().next()?;
        let args = args.as_array()?;
        let a = self.numeric(args.first()?, pkt)?;
        let b = self.numeric(args.get(1)?, pkt)?;
        match op.as_str() {
            "&" => Some(a & b),
            "|" => Some(a | b),
            "^" => Some(a ^ b),
            _ => None,
        }
    }

    fn left_value(&self, left: &Value, pkt: &Pkt) -> Option<LeftVal> {
        if let Some(p) = left.get("payload") {
            let proto = s(p, "protocol")?;
            let field = s(p, "field")?;
            if pkt.arp_op.is_some() != (proto == "arp") {
                return Some(LeftVal::Absent); // an ip header match on ARP, or the reverse
            }
            let six = pkt.v6.is_some();
            if (six && matches!(proto, "ip" | "icmp"))
                || (!six && matches!(proto, "ip6" | "icmpv6"))
            {
                return Some(LeftVal::Absent); // the other family's header
            }
            return match (proto, field) {
                ("ip6", "saddr") => pkt.v6.map(|(s, _)| LeftVal::Ip6(s)),
                ("ip6", "daddr") => pkt.v6.map(|(_, d)| LeftVal::Ip6(d)),
                ("ip6", "nexthdr") => Some(LeftVal::L4(pkt.proto)),
                ("ip6", "length") => Some(LeftVal::Num(pkt.len.saturating_sub(40) as u64)),
                ("icmpv6", "type") if pkt.proto == Proto::Icmp6 => {
                    pkt.icmp_type.map(LeftVal::Icmp6Type)
                }
                ("icmpv6", "code") if pkt.proto == Proto::Icmp6 => {
                    pkt.icmp_code.map(|c| LeftVal::Num(u64::from(c)))
                }
                ("icmpv6", _) => Some(LeftVal::Absent),
                ("arp", "operation") => pkt.arp_op.map(|op| LeftVal::Str(op.into())),
                ("arp", "saddr ip") => Some(LeftVal::Ip(pkt.src)),
                ("arp", "daddr ip") => Some(LeftVal::Ip(pkt.dst)),
                ("ip", "saddr") => Some(LeftVal::Ip(pkt.src)),
                ("ip", "daddr") => Some(LeftVal::Ip(pkt.dst)),
                ("ip", "protocol") => Some(LeftVal::L4(pkt.proto)),
                ("ip", "length") => Some(LeftVal::Num(pkt.len as u64)),
                ("tcp" | "udp" | "th", "sport" | "dport") => {
                    let wanted = match proto {
                        "tcp" => Some(Proto::Tcp),
                        "udp" => Some(Proto::Udp),
                        _ => None,
                    };
                    let is_l4 = matches!(pkt.proto.base(), Proto::Tcp | Proto::Udp);
                    if wanted.is_some_and(|w| w != pkt.proto.base()) || !is_l4 {
                        return Some(LeftVal::Absent);
                    }
                    let port = if field == "sport" {
                        pkt.sport
                    } else {
                        pkt.dport
                    };
                    port.map(|p| LeftVal::Num(u64::from(p)))
                }
                ("icmp", "type") => {
                    if pkt.proto != Proto::Icmp {
                        return Some(LeftVal::Absent);
                    }
                    pkt.icmp_type.map(LeftVal::IcmpType)
                }
                ("icmp", "code") => {
                    if pkt.proto != Proto::Icmp {
                        return Some(LeftVal::Absent);
                    }
                    pkt.icmp_code.map(LeftVal::IcmpCode)
                }
                _ => None,
            };
        }
        // Bitwise expressions over the mark: {"&": [{"meta": {"key": "mark"}}, 16384]}.
        if let Some(v) = self.numeric(left, pkt) {
            return Some(LeftVal::Num(u64::from(v)));
        }
        if let Some(f) = left.get("fib") {
            let flags: Vec<&str> = f
                .get("flags")
                .map(|x| match x {
                    Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
                    Value::String(s) => vec![s.as_str()],
                    _ => Vec::new(),
                })
                .unwrap_or_default();
            if s(f, "result") == Some("type") && flags == ["daddr"] {
                return pkt
                    .dst_local
                    .map(|l| LeftVal::Str(if l { "local" } else { "unicast" }.into()));
            }
            // The mark only steers policy-routing rules, which the walk's route reads ignore
            // too; the lookup is the reverse path's either way.
            let rpf = flags == ["saddr", "iif"] || flags == ["saddr", "mark", "iif"];
            if rpf && matches!(s(f, "result"), Some("oif" | "oifname")) {
                return pkt.rpf_oif.clone().map(LeftVal::FibOif);
            }
            return None;
        }
        if let Some(m) = left.get("meta") {
            return match s(m, "key")? {
                "l4proto" => Some(LeftVal::L4(pkt.proto)),
                "nfproto" | "protocol" => Some(LeftVal::Str(
                    if pkt.v6.is_some() { "ipv6" } else { "ipv4" }.into(),
                )),
                "iifname" | "iif" => {
                    Some(pkt.iif.clone().map(LeftVal::Str).unwrap_or(LeftVal::Absent))
                }
                "oifname" | "oif" => {
                    Some(pkt.oif.clone().map(LeftVal::Str).unwrap_or(LeftVal::Absent))
                }
                "length" => Some(LeftVal::Num(pkt.len as u64)),
                _ => None,
            };
        }
        if let Some(c) = left.get("ct") {
            return match s(c, "key")? {
                "state" => Some(LeftVal::CtState(if pkt.ct_new {
                    "new"
                } else {
                    "established"
                })),
                _ => None,
            };
        }
        None
    }

    fn right_contains(&self, k: &Key, right: &Value, v: &LeftVal) -> Option<bool> {
        match right {
            Value::String(x) if x.starts_with('@') => {
                let elems = self.sets.get(&key(&k.0, &k.1, &x[1..]))?;
                let mut any = false;
                for e in elems {
                    any |= self.right_contains(k, e, v)?;
                }
                Some(any)
            }
            Value::Array(items) => {
                // ct state { established, related } is printed as a plain list.
                let mut any = false;
                for e in items {
                    any |= self.right_contains(k, e, v)?;
                }
                Some(any)
            }
            Value::Object(o) => {
                if let Some(set) = o.get("set") {
                    return self.right_contains(k, set, v);
                }
                if let Some(p) = o.get("prefix") {
                    let len = p.get("len")?.as_u64()? as u8;
                    return match v {
                        LeftVal::Ip(ip) => {
                            let addr: Ipv4Addr = s(p, "addr")?.parse().ok()?;
                            Some(ipnet::Ipv4Net::new(addr, len).ok()?.contains(ip))
                        }
                        LeftVal::Ip6(ip) => {
                            let addr: Ipv6Addr = s(p, "addr")?.parse().ok()?;
                            Some(ipnet::Ipv6Net::new(addr, len).ok()?.contains(ip))
                        }
                        _ => None,
                    };
                }
                if let Some(r) = o.get("range").and_then(|r| r.as_array()) {
                    return match v {
                        LeftVal::Ip(ip) => {
                            let lo: Ipv4Addr = r.first()?.as_str()?.parse().ok()?;
                            let hi: Ipv4Addr = r.get(1)?.as_str()?.parse().ok()?;
                            Some(lo <= *ip && *ip <= hi)
                        }
                        LeftVal::Num(n) => {
                            Some(r.first()?.as_u64()? <= *n && *n <= r.get(1)?.as_u64()?)
                        }
                        _ => None,
                    };
                }
                if let Some(e) = o.get("elem") {
                    return self.right_contains(k, e.get("val")?, v);
                }
                None
            }
            Value::Number(n) => match v {
                LeftVal::Num(x) => Some(n.as_u64()? == *x),
                LeftVal::L4(p) => Some(n.as_u64()? == proto_number(*p)),
                LeftVal::IcmpType(t) | LeftVal::Icmp6Type(t) => Some(n.as_u64()? == u64::from(*t)),
                LeftVal::IcmpCode(c) => Some(n.as_u64()? == u64::from(*c)),
                _ => None,
            },
            // `missing` / `exists` print as false / true.
            Value::Bool(b) => match v {
                LeftVal::FibOif(r) => Some(r.is_some() == *b),
                _ => None,
            },
            Value::String(x) => match v {
                LeftVal::FibOif(r) => Some(r.as_deref() == Some(x.as_str())),
                LeftVal::Ip(ip) => x.parse::<Ipv4Addr>().ok().map(|a| a == *ip),
                LeftVal::Ip6(ip) => x.parse::<Ipv6Addr>().ok().map(|a| a == *ip),
                LeftVal::Icmp6Type(t) => Some(icmp6_type_name(*t) == Some(x.as_str())),
                LeftVal::Str(name) => Some(match x.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => x == name,
                }),
                LeftVal::L4(p) => Some(l4_names(*p).contains(&x.as_str())),
                LeftVal::CtState(st) => Some(x == st),
                LeftVal::IcmpType(t) => Some(icmp_type_name(*t) == Some(x.as_str())),
                LeftVal::IcmpCode(c) => Some(icmp_code_name(*c) == Some(x.as_str())),
                LeftVal::Num(n) => service_port(x).map(|p| u64::from(p) == *n),
                LeftVal::Absent => Some(false),
            },
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum LeftVal {
    Ip(Ipv4Addr),
    Ip6(Ipv6Addr),
    /// An ICMPv6 type (128 echo request, 129 echo reply, 1 destination unreachable, ...).
    Icmp6Type(u8),
    L4(Proto),
    Num(u64),
    Str(String),
    CtState(&'static str),
    IcmpType(u8),
    IcmpCode(u8),
    /// The header the match reads is not in this packet (a tcp match on a udp packet).
    Absent,
    /// A `fib ... oif` result: the interface, or None (`missing`).
    FibOif(Option<String>),
}

enum Flow {
    Accept,
    /// Fell off the end of a jumped-to chain (return) or matched `continue`.
    Continue,
    /// Fell off the end of the chain: its policy decides.
    Policy,
    Drop {
        at: String,
        rule: String,
        reject: bool,
    },
    Uncertain {
        at: String,
        rule: String,
    },
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

fn proto_number(p: Proto) -> u64 {
    match p {
        Proto::Icmp => 1,
        Proto::Icmp6 => 58,
        Proto::Tcp | Proto::Tcp6 => 6,
        Proto::Udp | Proto::Dns | Proto::Udp6 => 17,
        Proto::Sctp => 132,
    }
}

fn icmp_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0 => "echo-reply",
        3 => "destination-unreachable",
        8 => "echo-request",
        11 => "time-exceeded",
        _ => return None,
    })
}

fn icmp6_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        1 => "destination-unreachable",
        2 => "packet-too-big",
        3 => "time-exceeded",
        128 => "echo-request",
        129 => "echo-reply",
        135 => "nd-neighbor-solicit",
        136 => "nd-neighbor-advert",
        _ => return None,
    })
}

/// How `nft -j` may name a transport in `meta l4proto` / `ip6 nexthdr`.
fn l4_names(p: Proto) -> &'static [&'static str] {
    match p.base() {
        Proto::Icmp if p == Proto::Icmp6 => &["ipv6-icmp", "icmpv6"],
        Proto::Icmp => &["icmp"],
        Proto::Tcp => &["tcp"],
        _ => &["udp"],
    }
}

fn icmp_code_name(c: u8) -> Option<&'static str> {
    Some(match c {
        0 => "net-unreachable",
        1 => "host-unreachable",
        2 => "prot-unreachable",
        3 => "port-unreachable",
        4 => "frag-needed",
        9 => "net-prohibited",
        10 => "host-prohibited",
        13 => "admin-prohibited",
        _ => return None,
    })
}

fn service_port(name: &str) -> Option<u16> {
    name.parse().ok().or(match name {
        "http" => Some(80),
        "https" => Some(443),
        "domain" => Some(53),
        "echo" => Some(7),
        "ssh" => Some(22),
        _ => None,
    })
}

fn nat_of(name: &str, body: &Value) -> Option<Nat> {
    match name {
        "masquerade" => Some(Nat::Masquerade),
        "snat" => body.get("addr")?.as_str()?.parse().ok().map(Nat::Snat),
        "dnat" => {
            let addr = body.get("addr")?.as_str()?.parse().ok()?;
            let port = body.get("port").and_then(|p| p.as_u64()).map(|p| p as u16);
            Some(Nat::Dnat(addr, port))
        }
        _ => None,
    }
}

/// A rough text of a rule for when nft's own text is not at hand.
fn render_expr(expr: &[Value]) -> String {
    expr.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(json: &str) -> Ruleset {
        Ruleset::from_json(&serde_json::from_str(json).unwrap(), &Default::default())
    }

    fn pkt(src: &str, dst: &str, proto: Proto, iif: &str, oif: &str) -> Pkt {
        Pkt {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport: None,
            dport: if proto == Proto::Icmp { None } else { Some(80) },
            icmp_type: if proto == Proto::Icmp { Some(8) } else { None },
            icmp_code: None,
            iif: Some(iif.into()),
            oif: Some(oif.into()),
            ct_new: true,
            len: 84,
            mark: Default::default(),
            dst_local: None,
            rpf_oif: None,
            arp_op: None,
            v6: None,
        }
    }

    const TWO_TABLES: &str = r#"{"nftables":[
      {"table":{"family":"inet","name":"a"}},
      {"chain":{"family":"inet","table":"a","name":"fwd","type":"filter","hook":"forward","prio":0,"policy":"accept"}},
      {"rule":{"family":"inet","table":"a","chain":"fwd","expr":[{"accept":null}]}},
      {"table":{"family":"ip","name":"b"}},
      {"chain":{"family":"ip","table":"b","name":"fwd","type":"filter","hook":"forward","prio":10,"policy":"accept"}},
      {"chain":{"family":"ip","table":"b","name":"pods"}},
      {"rule":{"family":"ip","table":"b","chain":"fwd","expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"cni0"}},{"jump":{"target":"pods"}}]}},
      {"rule":{"family":"ip","table":"b","chain":"pods","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":[22,80]}}},{"drop":null}]}},
      {"rule":{"family":"ip","table":"b","chain":"pods","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.244.1.0","len":24}}}},{"reject":null}]}}
    ]}"#;

    #[test]
    fn a_drop_in_a_second_table_wins_over_an_accept_in_the_first() {
        let r = rs(TWO_TABLES);
        let v = r.evaluate(
            "forward",
            &pkt("10.244.1.2", "203.0.113.10", Proto::Tcp, "cni0", "eth0"),
        );
        assert!(
            matches!(v, Verdict::Drop { ref at, reject: false, .. } if at == "table ip b chain pods"),
            "{v:?}"
        );
        // UDP skips the tcp rule and hits the reject.
        let v = r.evaluate(
            "forward",
            &pkt("10.244.1.2", "203.0.113.10", Proto::Udp, "cni0", "eth0"),
        );
        assert!(matches!(v, Verdict::Drop { reject: true, .. }), "{v:?}");
        // Other sources and interfaces pass.
        let v = r.evaluate(
            "forward",
            &pkt("10.9.9.9", "203.0.113.10", Proto::Udp, "cni0", "eth0"),
        );
        assert_eq!(v, Verdict::Accept { nat: vec![] });
        let v = r.evaluate(
            "forward",
            &pkt("10.244.1.2", "203.0.113.10", Proto::Udp, "eth0", "cni0"),
        );
        assert_eq!(v, Verdict::Accept { nat: vec![] });
        assert_eq!(
            r.evaluate("input", &pkt("1.1.1.1", "2.2.2.2", Proto::Icmp, "a", "b")),
            Verdict::Accept { nat: vec![] }
        );
    }

    #[test]
    fn policy_drop_and_established_replies() {
        let r = rs(r#"{"nftables":[
          {"chain":{"family":"ip","table":"filter","name":"FORWARD","type":"filter","hook":"forward","prio":0,"policy":"drop"}},
          {"rule":{"family":"ip","table":"filter","chain":"FORWARD","expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}}
        ]}"#);
        let mut p = pkt("10.244.1.2", "203.0.113.10", Proto::Icmp, "cni0", "eth0");
        assert!(
            matches!(r.evaluate("forward", &p), Verdict::Drop { ref rule, .. } if rule == "policy drop of chain FORWARD")
        );
        p.ct_new = false;
        assert_eq!(r.evaluate("forward", &p), Verdict::Accept { nat: vec![] });
    }

    #[test]
    fn unknown_matches_make_the_verdict_uncertain_not_guessed() {
        let r = rs(r#"{"nftables":[
          {"chain":{"family":"ip","table":"t","name":"c","type":"filter","hook":"forward","prio":0,"policy":"accept"}},
          {"rule":{"family":"ip","table":"t","chain":"c","expr":[{"match":{"op":"==","left":{"meta":{"key":"skuid"}},"right":7}},{"drop":null}]}}
        ]}"#);
        let v = r.evaluate(
            "forward",
            &pkt("10.244.1.2", "203.0.113.10", Proto::Icmp, "cni0", "eth0"),
        );
        assert!(matches!(v, Verdict::Uncertain { .. }), "{v:?}");
    }

    /// The classic overlay MTU filter: `meta length > 1400 drop` drops big packets only; an
    /// ordered comparison of a port on a packet without ports does not match.
    #[test]
    fn ordered_comparisons_of_lengths_and_ports_are_decided() {
        let r = rs(r#"{"nftables":[
          {"chain":{"family":"ip","table":"t","name":"c","type":"filter","hook":"forward","prio":0,"policy":"accept"}},
          {"rule":{"family":"ip","table":"t","chain":"c","expr":[{"match":{"op":">","left":{"meta":{"key":"length"}},"right":1400}},{"drop":null}]}},
          {"rule":{"family":"ip","table":"t","chain":"c","expr":[{"match":{"op":"<","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":80}},{"drop":null}]}}
        ]}"#);
        let mut p = pkt("10.244.1.2", "203.0.113.10", Proto::Icmp, "cni0", "eth0");
        p.len = 64;
        assert_eq!(r.evaluate("forward", &p), Verdict::Accept { nat: vec![] });
        p.len = 1450;
        assert!(matches!(r.evaluate("forward", &p), Verdict::Drop { .. }));
        let mut tcp = pkt("10.244.1.2", "203.0.113.10", Proto::Tcp, "cni0", "eth0");
        tcp.dport = Some(80);
        assert_eq!(r.evaluate("forward", &tcp), Verdict::Accept { nat: vec![] });
        tcp.dport = Some(22);
        assert!(matches!(r.evaluate("forward", &tcp), Verdict::Drop { .. }));
    }

    /// kube-proxy's idiom: a chain marks the packet, postrouting masquerades marked packets
    /// only (and clears the bit). The mark travels with the packet from hook to hook.
    #[test]
    fn marks_set_by_rules_decide_later_matches() {
        let r = rs(r#"{"nftables":[
          {"chain":{"family":"ip","table":"kp","name":"pre","type":"nat","hook":"prerouting","prio":-100,"policy":"accept"}},
          {"chain":{"family":"ip","table":"kp","name":"mark-for-masquerade"}},
          {"chain":{"family":"ip","table":"kp","name":"post","type":"nat","hook":"postrouting","prio":100,"policy":"accept"}},
          {"rule":{"family":"ip","table":"kp","chain":"mark-for-masquerade","expr":[{"mangle":{"key":{"meta":{"key":"mark"}},"value":{"|":[{"meta":{"key":"mark"}},16384]}}}]}},
          {"rule":{"family":"ip","table":"kp","chain":"pre","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"203.0.113.10"}},{"jump":{"target":"mark-for-masquerade"}}]}},
          {"rule":{"family":"ip","table":"kp","chain":"post","expr":[{"match":{"op":"==","left":{"&":[{"meta":{"key":"mark"}},16384]},"right":0}},{"return":null}]}},
          {"rule":{"family":"ip","table":"kp","chain":"post","expr":[{"mangle":{"key":{"meta":{"key":"mark"}},"value":{"^":[{"meta":{"key":"mark"}},16384]}}},{"masquerade":null}]}}
        ]}"#);
        let plain = pkt("10.244.1.2", "10.244.2.2", Proto::Tcp, "cni0", "flannel.1");
        assert_eq!(
            r.evaluate("prerouting", &plain),
            Verdict::Accept { nat: vec![] }
        );
        assert_eq!(
            r.evaluate("postrouting", &plain),
            Verdict::Accept { nat: vec![] }
        );
        let ext = pkt(
            "203.0.113.10",
            "10.244.2.2",
            Proto::Tcp,
            "eth0",
            "flannel.1",
        );
        r.evaluate("prerouting", &ext);
        assert_eq!(ext.mark.get(), 0x4000);
        assert_eq!(
            r.evaluate("postrouting", &ext),
            Verdict::Accept {
                nat: vec![Nat::Masquerade]
            }
        );
        assert_eq!(ext.mark.get(), 0, "masquerading clears the bit");
    }

    #[test]
    fn nat_chains_report_translations_for_new_flows_only() {
        let r = rs(r#"{"nftables":[
          {"chain":{"family":"ip","table":"nat","name":"post","type":"nat","hook":"postrouting","prio":100,"policy":"accept"}},
          {"rule":{"family":"ip","table":"nat","chain":"post","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.244.1.0","len":24}}}},{"match":{"op":"!=","left":{"meta":{"key":"oifname"}},"right":"cni0"}},{"xt":{"type":"match","name":"comment"}},{"xt":{"type":"target","name":"MASQUERADE"}}]}}
        ]}"#);
        let mut p = pkt("10.244.1.2", "203.0.113.10", Proto::Tcp, "cni0", "eth0");
        assert_eq!(
            r.evaluate("postrouting", &p),
            Verdict::Accept {
                nat: vec![Nat::Masquerade]
            }
        );
        p.ct_new = false;
        assert_eq!(
            r.evaluate("postrouting", &p),
            Verdict::Accept { nat: vec![] }
        );
    }
}
