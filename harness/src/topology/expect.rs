//! Expected outcomes: `"pod-a -> ext tcp" = "timeout"` rules and how they resolve.
//!
//! A rule key is `FROM -> TO [PROTO]` (or `FROM <-> TO [PROTO]` for both directions). FROM and TO
//! are host names or globs over host names (`*`, `pod-*`, `?`); PROTO is `icmp`, `tcp` or `udp`,
//! all three when left out. When several rules match one probe, the most specific wins: an exact
//! host name beats a glob, a named protocol beats none. Two equally specific rules that disagree
//! are an error in the file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Icmp,
    Tcp,
    Udp,
    /// A name lookup with a pod's resolver settings (targets `dns/NAME` only).
    Dns,
    /// ICMPv6 echo, TCP and UDP over IPv6: the IPv6 twins of the first three, probed in
    /// dual-stack labs between hosts that both have an IPv6 address.
    Icmp6,
    Tcp6,
    Udp6,
    /// SCTP over IPv4, to a port a pod declares: probed like TCP (a one-to-one socket), and
    /// `unsupported` on a kernel without SCTP (this one).
    Sctp,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Icmp, Proto::Tcp, Proto::Udp];

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Icmp => "icmp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Dns => "dns",
            Proto::Icmp6 => "icmp6",
            Proto::Tcp6 => "tcp6",
            Proto::Udp6 => "udp6",
            Proto::Sctp => "sctp",
        }
    }

    /// The address family a probe of this protocol travels in.
    pub fn family(self) -> super::Family {
        match self {
            Proto::Icmp6 | Proto::Tcp6 | Proto::Udp6 => super::Family::V6,
            _ => super::Family::V4,
        }
    }

    /// The transport's name in nft (`tcp dport`, `meta l4proto udp`): TCP, UDP (and DNS, which
    /// travels on it) or SCTP, whatever the family.
    pub fn l4_name(self) -> &'static str {
        match self.base() {
            Proto::Tcp => "tcp",
            Proto::Sctp => "sctp",
            _ => "udp",
        }
    }

    /// A connection-oriented transport (TCP, SCTP): probed by connecting.
    pub fn is_stream(self) -> bool {
        matches!(self.base(), Proto::Tcp | Proto::Sctp)
    }

    /// The transport whatever the family: `tcp6` is TCP.
    pub fn base(self) -> Proto {
        match self {
            Proto::Icmp6 => Proto::Icmp,
            Proto::Tcp6 => Proto::Tcp,
            Proto::Udp6 => Proto::Udp,
            p => p,
        }
    }

    /// The protocols a lab probes: a dual-stack lab adds the IPv6 twin of each listed protocol
    /// unless the list already names an IPv6 one (then it probes exactly what it lists). Sorted,
    /// so every IPv4 column comes before the IPv6 ones.
    pub fn with_twins(listed: &[Proto], dual_stack: bool) -> Vec<Proto> {
        let mut v = listed.to_vec();
        if dual_stack && !listed.iter().any(|p| p.family() == super::Family::V6) {
            v.extend(listed.iter().filter_map(|p| p.v6()));
        }
        v.sort();
        v.dedup();
        v
    }

    /// The IPv6 twin of an IPv4 probe protocol (none for DNS, whose family is the resolver's).
    pub fn v6(self) -> Option<Proto> {
        match self {
            Proto::Icmp => Some(Proto::Icmp6),
            Proto::Tcp => Some(Proto::Tcp6),
            Proto::Udp => Some(Proto::Udp6),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "icmp" => Ok(Proto::Icmp),
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "dns" => Ok(Proto::Dns),
            "icmp6" => Ok(Proto::Icmp6),
            "tcp6" => Ok(Proto::Tcp6),
            "udp6" => Ok(Proto::Udp6),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(format!(
                "unknown protocol \"{s}\" (expected icmp, tcp, udp, dns, sctp, or icmp6, tcp6, udp6 in a dual-stack lab)"
            )),
        }
    }
}

/// How a probe ended (DESIGN.md's contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The echo came back.
    Reachable,
    /// TCP RST or ICMP port unreachable: the host is there, the port is not.
    Refused,
    /// An ICMP host/net/admin unreachable came back, or the source kernel had no route.
    Unreachable,
    /// Nothing came back in time: dropped somewhere silently.
    Timeout,
    /// This kernel lacks what the probe needs, so nothing was decided.
    Unsupported,
    /// DNS: the server says the name does not exist (after every search domain).
    Nxdomain,
    /// DNS: the server answered SERVFAIL.
    Servfail,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Reachable => "reachable",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::Timeout => "timeout",
            Outcome::Unsupported => "unsupported",
            Outcome::Nxdomain => "nxdomain",
            Outcome::Servfail => "servfail",
        }
    }

    /// One character for the matrix table.
    pub fn symbol(self) -> char {
        match self {
            Outcome::Reachable => '✓',
            Outcome::Refused => 'R',
            Outcome::Unreachable => 'U',
            Outcome::Timeout => 'T',
            Outcome::Unsupported => '-',
            Outcome::Nxdomain => 'N',
            Outcome::Servfail => 'S',
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reachable" => Ok(Outcome::Reachable),
            "refused" => Ok(Outcome::Refused),
            "unreachable" => Ok(Outcome::Unreachable),
            "timeout" => Ok(Outcome::Timeout),
            "unsupported" => Ok(Outcome::Unsupported),
            "nxdomain" => Ok(Outcome::Nxdomain),
            "servfail" => Ok(Outcome::Servfail),
            _ => Err(format!(
                "unknown outcome \"{s}\" (expected reachable, refused, unreachable, timeout, nxdomain or servfail)"
            )),
        }
    }
}

/// A glob over host names: `*` any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Glob(pub String);

impl Glob {
    pub fn is_exact(&self) -> bool {
        !self.0.contains(['*', '?'])
    }

    pub fn matches(&self, name: &str) -> bool {
        fn m(p: &[u8], s: &[u8]) -> bool {
            match (p.first(), s.first()) {
                (None, None) => true,
                (Some(b'*'), _) => m(&p[1..], s) || (!s.is_empty() && m(p, &s[1..])),
                (Some(b'?'), Some(_)) => m(&p[1..], &s[1..]),
                (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
                _ => false,
            }
        }
        m(self.0.as_bytes(), name.as_bytes())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairPattern {
    pub from: Glob,
    pub to: Glob,
    pub proto: Option<Proto>,
    /// `<->`: the rule also applies from `to` to `from`.
    pub both_ways: bool,
}

impl PairPattern {
    pub fn matches(&self, from: &str, to: &str, proto: Proto) -> bool {
        if self.proto.is_some_and(|p| p != proto) {
            return false;
        }
        let fwd = self.from.matches(from) && self.to.matches(to);
        fwd || (self.both_ways && self.from.matches(to) && self.to.matches(from))
    }

    /// Higher is more specific.
    pub fn specificity(&self) -> i32 {
        let host = |g: &Glob| if g.is_exact() { 2 } else { 1 };
        host(&self.from) + host(&self.to) + i32::from(self.proto.is_some())
    }
}

impl fmt::Display for PairPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arrow = if self.both_ways { "<->" } else { "->" };
        write!(f, "{} {arrow} {}", self.from.0, self.to.0)?;
        if let Some(p) = self.proto {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

impl FromStr for PairPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (left, right, both_ways) = if let Some((l, r)) = s.split_once("<->") {
            (l, r, true)
        } else if let Some((l, r)) = s.split_once("->") {
            (l, r, false)
        } else {
            return Err(format!(
                "\"{s}\" is not a pair: write \"FROM -> TO\" or \"FROM -> TO PROTO\""
            ));
        };
        let from = left.trim();
        let mut rest = right.split_whitespace();
        let to = rest.next().unwrap_or("");
        let proto = rest.next();
        if let Some(extra) = rest.next() {
            return Err(format!(
                "unexpected \"{extra}\" after the protocol in \"{s}\""
            ));
        }
        for (what, name) in [("FROM", from), ("TO", to)] {
            if name.is_empty() {
                return Err(format!(
                    "{what} is missing in \"{s}\": write \"FROM -> TO [PROTO]\""
                ));
            }
            // TO may also be a Kubernetes target: svc/NAME, nodeport/NAME@NODE, dns/NAME,
            // POD:PORT.
            let extra = if what == "TO" { "/@:" } else { "" };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.*?".contains(c) || extra.contains(c))
            {
                return Err(format!(
                    "\"{name}\" in \"{s}\" is not a host name or glob (letters, digits, '-', '*', '?')"
                ));
            }
        }
        let proto = match proto {
            None | Some("*") => None,
            Some(p) => Some(p.parse::<Proto>()?),
        };
        Ok(PairPattern {
            from: Glob(from.to_string()),
            to: Glob(to.to_string()),
            proto,
            both_ways,
        })
    }
}

/// One expectation: a pattern, the outcome it demands, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectRule {
    pub pattern: PairPattern,
    pub outcome: Outcome,
    /// `file:line` of the rule.
    pub origin: String,
}

impl ExpectRule {
    pub fn rank(&self) -> i32 {
        self.pattern.specificity()
    }
}

/// The winning rule for one probe, if any rule matches.
pub fn resolve<'a>(
    rules: &'a [ExpectRule],
    from: &str,
    to: &str,
    proto: Proto,
) -> Option<&'a ExpectRule> {
    rules
        .iter()
        .filter(|r| r.pattern.matches(from, to, proto))
        .max_by_key(|r| r.rank())
}

/// Pairs of equally specific rules that demand different outcomes for some probe between two of
/// `hosts`, each with one such probe as a witness.
pub fn conflicts<'a>(
    rules: &'a [ExpectRule],
    hosts: &[&str],
) -> Vec<(&'a ExpectRule, &'a ExpectRule, String)> {
    let mut out = Vec::new();
    for (i, a) in rules.iter().enumerate() {
        for b in &rules[i + 1..] {
            if a.outcome == b.outcome || a.rank() != b.rank() {
                continue;
            }
            let proto = match (a.pattern.proto, b.pattern.proto) {
                (Some(x), Some(y)) if x != y => continue,
                (Some(x), _) | (_, Some(x)) => x,
                (None, None) => Proto::Icmp,
            };
            if let Some((f, t)) = witness(&a.pattern, &b.pattern, hosts) {
                out.push((a, b, format!("{f} -> {t} {proto}")));
            }
        }
    }
    out
}

/// A (from, to) pair, from != to, that both patterns match.
fn witness<'h>(a: &PairPattern, b: &PairPattern, hosts: &[&'h str]) -> Option<(&'h str, &'h str)> {
    let dirs = |p: &PairPattern| {
        let mut v = vec![(p.from.clone(), p.to.clone())];
        if p.both_ways {
            v.push((p.to.clone(), p.from.clone()));
        }
        v
    };
    for (af, at) in dirs(a) {
        for (bf, bt) in dirs(b) {
            let froms: Vec<&str> = hosts
                .iter()
                .copied()
                .filter(|h| af.matches(h) && bf.matches(h))
                .collect();
            let tos: Vec<&str> = hosts
                .iter()
                .copied()
                .filter(|h| at.matches(h) && bt.matches(h))
                .collect();
            for f in &froms {
                if let Some(t) = tos.iter().find(|t| *t != f) {
                    return Some((f, t));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_adds_twins_unless_v6_is_listed() {
        let l = [Proto::Icmp, Proto::Tcp];
        assert_eq!(Proto::with_twins(&l, false), l.to_vec());
        assert_eq!(
            Proto::with_twins(&l, true),
            vec![Proto::Icmp, Proto::Tcp, Proto::Icmp6, Proto::Tcp6]
        );
        assert_eq!(
            Proto::with_twins(&[Proto::Tcp, Proto::Udp6], true),
            vec![Proto::Tcp, Proto::Udp6]
        );
        assert_eq!(Proto::Tcp6.base(), Proto::Tcp);
        assert_eq!(Proto::Udp6.family(), super::super::Family::V6);
    }

    fn rule(p: &str, o: Outcome) -> ExpectRule {
        ExpectRule {
            pattern: p.parse().unwrap(),
            outcome: o,
            origin: p.into(),
        }
    }

    #[test]
    fn globs_match() {
        assert!(Glob("pod-*".into()).matches("pod-a"));
        assert!(!Glob("pod-*".into()).matches("node1"));
        assert!(Glob("*".into()).matches("ext"));
        assert!(Glob("pod-?".into()).matches("pod-b"));
        assert!(!Glob("pod-?".into()).matches("pod-bb"));
    }

    #[test]
    fn patterns_parse() {
        let p: PairPattern = "pod-a -> ext tcp".parse().unwrap();
        assert_eq!(p.from.0, "pod-a");
        assert_eq!(p.to.0, "ext");
        assert_eq!(p.proto, Some(Proto::Tcp));
        let p: PairPattern = "pod-* <-> pod-*".parse().unwrap();
        assert!(p.both_ways);
        assert!("pod-a ext".parse::<PairPattern>().is_err());
        assert!("pod-a -> ext quic".parse::<PairPattern>().is_err());
        let p: PairPattern = "client -> web:3868 sctp".parse().unwrap();
        assert_eq!((p.to.0.as_str(), p.proto), ("web:3868", Some(Proto::Sctp)));
        assert!("-> ext".parse::<PairPattern>().is_err());
        assert!("a -> b tcp x".parse::<PairPattern>().is_err());
    }

    #[test]
    fn most_specific_rule_wins() {
        let rules = vec![
            rule("* -> ext", Outcome::Timeout),
            rule("pod-a -> ext", Outcome::Reachable),
            rule("pod-a -> ext udp", Outcome::Refused),
        ];
        assert_eq!(
            resolve(&rules, "pod-b", "ext", Proto::Tcp).unwrap().outcome,
            Outcome::Timeout
        );
        assert_eq!(
            resolve(&rules, "pod-a", "ext", Proto::Tcp).unwrap().outcome,
            Outcome::Reachable
        );
        assert_eq!(
            resolve(&rules, "pod-a", "ext", Proto::Udp).unwrap().outcome,
            Outcome::Refused
        );
        assert!(resolve(&rules, "ext", "pod-a", Proto::Udp).is_none());
    }

    #[test]
    fn equal_rank_disagreement_is_a_conflict() {
        let rules = vec![
            rule("pod-* -> ext", Outcome::Timeout),
            rule("* -> ext", Outcome::Reachable),
        ];
        // "pod-*" and "*" are both globs: equally specific.
        let c = conflicts(&rules, &["pod-a", "ext"]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].2, "pod-a -> ext icmp");
    }
}
