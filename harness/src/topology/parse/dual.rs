//! Dual-stack fields. `pod_cidr`, a pod's `ip`, `uplink` and `[cluster] cidr` take one IPv4
//! value or, as Kubernetes' `podCIDRs`, `podIPs` and `clusterCIDR` do, a list of one value per
//! family (`["10.244.1.0/24", "fd00:10:244:1::/64"]`). A lab is IPv4 or dual-stack: every list
//! holds an IPv4 entry.

use std::net::Ipv6Addr;
use std::str::FromStr;

use ipnet::Ipv6Net;
use serde::Deserialize;

use super::super::model::{NodeSpec, NodeV6, Topology};
use super::super::source::Key;
use super::super::{Family, Network, Proto};
use super::validator::Validator;

/// What the hosts of a dual-stack fixture claim as they are validated: IPv6 addresses and who
/// holds them, the IPv6 uplink segment (and who set it), every IPv6 pod CIDR.
#[derive(Default)]
pub(super) struct Claims6 {
    pub addrs: std::collections::BTreeMap<Ipv6Addr, String>,
    pub uplink: Option<(Ipv6Net, String)>,
    pub pod_cidrs: Vec<(Ipv6Net, String)>,
}

/// One address, or one per family.
#[derive(Clone, Debug)]
pub(super) enum OneOrTwo {
    One(String),
    Two(Vec<String>),
}

/// By hand rather than `untagged`, so a wrong type says what it is and what is expected.
impl<'de> Deserialize<'de> for OneOrTwo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrTwo;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an address string, or a list of one per family (IPv4 and IPv6)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrTwo, E> {
                Ok(OneOrTwo::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<OneOrTwo, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    v.push(s);
                }
                Ok(OneOrTwo::Two(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl OneOrTwo {
    pub(super) fn one(s: String) -> Self {
        OneOrTwo::One(s)
    }

    /// The IPv6 entry, if there is one.
    pub(super) fn v6_entry(&self) -> Option<&str> {
        match self {
            OneOrTwo::One(_) => None,
            OneOrTwo::Two(l) => l.iter().map(String::as_str).find(|s| is_v6(s)),
        }
    }

    /// The IPv4 entry, if there is one.
    pub(super) fn first_v4(&self) -> Option<&str> {
        match self {
            OneOrTwo::One(s) => Some(s.as_str()),
            OneOrTwo::Two(l) => l.iter().map(String::as_str).find(|s| !is_v6(s)),
        }
    }
}

/// A field's IPv4 entry and, in a list, its IPv6 entry with the list index it sits at.
pub(super) struct Split<'v> {
    pub v4: &'v str,
    pub v6: Option<(&'v str, usize)>,
}

/// A key path with a list index appended (where a list entry is wrong).
pub(super) fn at_index<'k>(at: &[Key<'k>], i: Option<usize>) -> Vec<Key<'k>> {
    let mut v = at.to_vec();
    v.extend(i.map(Key::Index));
    v
}

fn is_v6(s: &str) -> bool {
    s.contains(':')
}

/// Addresses no lab host may be given: link-local (every interface has its own already),
/// multicast, loopback, unspecified.
fn not_global(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments()[0];
    if s & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if s & 0xff00 == 0xff00 {
        Some("multicast")
    } else if a.is_loopback() {
        Some("loopback")
    } else if a.is_unspecified() {
        Some("unspecified")
    } else {
        None
    }
}

const GLOBAL_HELP: &str =
    "use a global or unique-local address such as fd00:10:244:1::2 (every interface has its own link-local address already)";

/// Longest IPv6 pod CIDR: room for the gateway and pods.
pub(super) const MAX_POD_PREFIX6: u8 = 120;

impl<'s> Validator<'s> {
    /// Splits a one-or-list field: at most one entry per family, an IPv4 entry always.
    pub(super) fn split_families<'v>(
        &mut self,
        at: &[Key],
        v: &'v OneOrTwo,
        field: &str,
    ) -> Option<Split<'v>> {
        let list: Vec<&str> = match v {
            OneOrTwo::One(s) if is_v6(s) => {
                self.err(
                    at,
                    format!("{field} \"{s}\" is IPv6 only: netfault's labs are IPv4 or dual-stack"),
                    Some(format!(
                        "list both families, IPv4 first: {field} = [\"IPV4\", \"{s}\"]"
                    )),
                );
                return None;
            }
            OneOrTwo::One(s) => return Some(Split { v4: s, v6: None }),
            OneOrTwo::Two(l) => l.iter().map(String::as_str).collect(),
        };
        let dual_help = || {
            Some(format!("write one entry per family, as Kubernetes' dual-stack fields: {field} = [\"IPV4\", \"IPV6\"]"))
        };
        if list.is_empty() || list.len() > 2 {
            self.err(
                at,
                format!("{field} lists {} entries", list.len()),
                dual_help(),
            );
            return None;
        }
        let v4: Vec<usize> = (0..list.len()).filter(|i| !is_v6(list[*i])).collect();
        let v6: Vec<usize> = (0..list.len()).filter(|i| is_v6(list[*i])).collect();
        if v4.len() != 1 || v6.len() > 1 {
            let (i, fam) = if v4.len() > 1 {
                (1, "IPv4")
            } else {
                (1, "IPv6")
            };
            let what = if v4.is_empty() {
                format!("{field} has no IPv4 entry: netfault's labs are IPv4 or dual-stack")
            } else {
                format!("{field} lists two {fam} entries")
            };
            self.err(&at_index(at, Some(i)), what, dual_help());
            return None;
        }
        Some(Split {
            v4: list[v4[0]],
            v6: v6.first().map(|&i| (list[i], i)),
        })
    }

    /// An IPv6 network: no host bits, global, at most `max_prefix` long.
    pub(super) fn net6(
        &mut self,
        at: &[Key],
        s: &str,
        field: &str,
        max_prefix: u8,
    ) -> Option<Ipv6Net> {
        let net = match Ipv6Net::from_str(s) {
            Ok(n) => n,
            Err(_) => {
                self.err(
                    at,
                    format!("{field} \"{s}\" is not an IPv6 network"),
                    Some("write a CIDR such as \"fd00:10:244:1::/64\"".into()),
                );
                return None;
            }
        };
        if net.trunc() != net {
            self.err(
                at,
                format!("{field} \"{s}\" has host bits set"),
                Some(format!("did you mean \"{}\"?", net.trunc())),
            );
            return None;
        }
        if let Some(kind) = not_global(net.network()) {
            self.err(
                at,
                format!("{field} {s} is {kind}"),
                Some(GLOBAL_HELP.into()),
            );
            return None;
        }
        if net.prefix_len() > max_prefix {
            self.err(
                at,
                format!("{field} {s} leaves no room for a gateway and pods"),
                Some(format!(
                    "use a /{max_prefix} or larger network; Kubernetes gives nodes a /64"
                )),
            );
            return None;
        }
        Some(net)
    }

    /// An interface's IPv6 address with its prefix: global, not the subnet-router anycast
    /// address (the network's own address, which routers answer).
    pub(super) fn iface_addr6(&mut self, at: &[Key], s: &str, field: &str) -> Option<Ipv6Net> {
        let Ok(net) = Ipv6Net::from_str(s) else {
            self.err(
                at,
                format!("{field} \"{s}\" is not an IPv6 address with a prefix"),
                Some("write an address with its prefix, such as \"2001:db8::1/64\"".into()),
            );
            return None;
        };
        if let Some(kind) = not_global(net.addr()) {
            self.err(
                at,
                format!("{field} {s} is {kind}"),
                Some(GLOBAL_HELP.into()),
            );
            return None;
        }
        if net.prefix_len() < 127 && net.addr() == net.network() {
            self.err(
                at,
                format!(
                    "{field} {s} is the subnet-router anycast address of {}",
                    net.trunc()
                ),
                Some("pick a host address inside the network, such as ::1".into()),
            );
            return None;
        }
        Some(net)
    }

    /// A bare global IPv6 address.
    pub(super) fn addr6(&mut self, at: &[Key], s: &str, field: &str) -> Option<Ipv6Addr> {
        let Ok(a) = Ipv6Addr::from_str(s) else {
            self.err(
                at,
                format!("{field} \"{s}\" is not an IPv6 address"),
                Some("write the address without a prefix, such as \"fd00:10:244:1::2\"".into()),
            );
            return None;
        };
        if let Some(kind) = not_global(a) {
            self.err(
                at,
                format!("{field} {s} is {kind}"),
                Some(GLOBAL_HELP.into()),
            );
            return None;
        }
        Some(a)
    }
}

impl Validator<'_> {
    /// A node's IPv6 side: its second `pod_cidr` and `uplink` entries, both or neither.
    pub(super) fn node6(
        &mut self,
        name: &str,
        pc: &Split,
        upl: &Split,
        acc: &mut Claims6,
    ) -> Option<NodeV6> {
        let at = |k: &'static str| [Key::Field("node"), Key::Field(name), Key::Field(k)];
        let uplink = match upl.v6 {
            Some((s, i)) => self.uplink6(name, s, &at_index(&at("uplink"), Some(i)), acc),
            None => None,
        };
        let (s, i) = pc.v6?;
        let at_pc = at_index(&at("pod_cidr"), Some(i));
        let pod_cidr = self.net6(&at_pc, s, "pod_cidr", MAX_POD_PREFIX6)?;
        if upl.v6.is_none() {
            self.err(
                &at("uplink"),
                format!("node {name} has an IPv6 pod_cidr but no IPv6 uplink address: its pods' IPv6 traffic leaves by it"),
                Some("add one: uplink = [\"203.0.113.1/24\", \"2001:db8::1/64\"]".into()),
            );
        }
        for (cidr, owner) in &acc.pod_cidrs {
            if overlaps6(*cidr, pod_cidr) {
                self.err(
                    &at_pc,
                    format!("pod_cidr {pod_cidr} overlaps {owner}'s pod_cidr {cidr}"),
                    Some("give every node its own IPv6 pod CIDR, e.g. fd00:10:244:1::/64, fd00:10:244:2::/64".into()),
                );
            }
        }
        acc.pod_cidrs.push((pod_cidr, name.to_string()));
        // The bridge takes the first address after the network's own (the subnet-router
        // anycast address, which every router on the link answers).
        let gateway = Ipv6Addr::from(u128::from(pod_cidr.network()) + 1);
        self.claim(&mut acc.addrs, gateway, name, &at_pc);
        Some(NodeV6 {
            pod_cidr,
            gateway,
            uplink: uplink?,
        })
    }

    /// An IPv6 uplink address (a node's or an external host's): claimed, on the one segment.
    pub(super) fn uplink6(
        &mut self,
        host: &str,
        s: &str,
        at: &[Key],
        acc: &mut Claims6,
    ) -> Option<Ipv6Net> {
        let addr = self.iface_addr6(at, s, "uplink")?;
        self.claim(&mut acc.addrs, addr.addr(), host, at);
        match &acc.uplink {
            None => acc.uplink = Some((addr.trunc(), host.to_string())),
            Some((net, owner)) if *net != addr.trunc() => self.err(
                at,
                format!("{host}'s uplink {addr} is not on the IPv6 uplink segment {net} (set by {owner})"),
                Some(format!("every node and external host shares one uplink segment: use an address in {net}")),
            ),
            Some(_) => {}
        }
        Some(addr)
    }

    /// A pod's IPv6 address: its node must be dual-stack, and the address inside its IPv6 pod CIDR.
    pub(super) fn pod_ip6(
        &mut self,
        name: &str,
        node_name: &str,
        s: &str,
        i: usize,
        node: &NodeSpec,
        acc: &mut Claims6,
    ) -> Option<Ipv6Addr> {
        let at = at_index(
            &[Key::Field("pod"), Key::Field(name), Key::Field("ip")],
            Some(i),
        );
        let ip = self.addr6(&at, s, "ip")?;
        let Some(v6) = node.v6 else {
            self.err(
                &at,
                format!("pod {name} has an IPv6 address but node {node_name} has no IPv6 pod_cidr"),
                Some(format!(
                    "give node {node_name} one: pod_cidr = [\"{}\", \"fd00:10:244:1::/64\"]",
                    node.pod_cidr
                )),
            );
            return None;
        };
        if !usable_in6(v6.pod_cidr, ip) {
            self.err(
                &at,
                format!("pod {name}: {ip} is outside node {node_name}'s pod_cidr {}", v6.pod_cidr),
                Some(format!("pick a free address inside {} (not its first, the subnet-router anycast address)", v6.pod_cidr)),
            );
            return None;
        }
        self.claim(&mut acc.addrs, ip, name, &at);
        Some(ip)
    }

    /// `[cluster] cidr`'s IPv6 entry: it holds every IPv6 pod CIDR.
    pub(super) fn cluster_cidr6(
        &mut self,
        at: &[Key],
        s: &str,
        pod_cidrs6: &[(Ipv6Net, String)],
    ) -> Option<Ipv6Net> {
        let net = self.net6(at, s, "cidr", MAX_POD_PREFIX6)?;
        for (pc, node) in pod_cidrs6 {
            if !net.contains(pc) {
                self.err(
                    at,
                    format!("cluster cidr {net} does not hold {node}'s pod_cidr {pc}"),
                    Some(
                        "the cluster CIDR must hold every node's pod CIDR, e.g. fd00:10:244::/56"
                            .into(),
                    ),
                );
            }
        }
        Some(net)
    }

    /// What a dual-stack fixture may not (yet) combine, and its probe protocols: the IPv6
    /// twins added, an IPv6 protocol refused where no host has an IPv6 address.
    pub(super) fn dual_stack_scope(&mut self, topo: &mut Topology) {
        let dual = topo.dual_stack();
        let listed_v6 = topo
            .probe
            .protocols
            .iter()
            .position(|p| p.family() == Family::V6);
        if let (false, Some(i)) = (dual, listed_v6) {
            self.err(
                &[Key::Field("probe"), Key::Field("protocols"), Key::Index(i)],
                format!(
                    "{} probes IPv6, but no host of this fixture has an IPv6 address",
                    topo.probe.protocols[i]
                ),
                Some("give hosts a second, IPv6 entry (pod_cidr, ip, uplink), or remove it".into()),
            );
        }
        if !dual {
            return;
        }
        topo.probe.protocols = Proto::with_twins(&topo.probe.protocols, true);
        let unsupported = if matches!(topo.cluster.network, Network::Routed { .. }) {
            Some(("cluster", "network = \"routed\" is IPv4-only in this version (its link-local gateway and proxy ARP have no IPv6 counterpart here yet)"))
        } else {
            None
        };
        if let Some((table, what)) = unsupported {
            self.err(
                &[Key::Field(table)],
                what,
                Some("use network = \"bridge\", \"host-gw\" or \"vxlan\" for a dual-stack lab, or drop the IPv6 entries".into()),
            );
        }
    }
}

/// Whether two IPv6 networks share an address.
pub(super) fn overlaps6(a: Ipv6Net, b: Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A usable address of a pod CIDR: inside it, not its subnet-router anycast address.
pub(super) fn usable_in6(net: Ipv6Net, ip: Ipv6Addr) -> bool {
    net.contains(&ip) && ip != net.network()
}

/// The address at the same offset in `net6` as `ip4` has in `net4`: generated pods get
/// `fd00:10:244:1::2` beside `10.244.1.2`.
pub(super) fn twin_address(
    net4: ipnet::Ipv4Net,
    ip4: std::net::Ipv4Addr,
    net6: Ipv6Net,
) -> Ipv6Addr {
    let off = u32::from(ip4) - u32::from(net4.network());
    Ipv6Addr::from(u128::from(net6.network()) + u128::from(off))
}

/// The smallest IPv6 network holding every given one.
pub(super) fn smallest_supernet6(nets: &[Ipv6Net]) -> Option<Ipv6Net> {
    let first = *nets.first()?;
    let mut len = first.prefix_len();
    loop {
        let cand = Ipv6Net::new(first.network(), len).ok()?.trunc();
        if nets.iter().all(|n| cand.contains(n)) {
            return Some(cand);
        }
        len = len.checked_sub(1)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{parse_fixture, Source};

    const DUAL: &str = include_str!("../../../../fixtures/dual-stack.toml");

    /// The first error of the dual-stack fixture with `from` replaced by `to`: (line, message).
    fn error(from: &str, to: &str) -> (usize, String, String) {
        assert!(DUAL.contains(from), "{from}");
        let text = DUAL.replacen(from, to, 1);
        let e = parse_fixture(&Source::new("dual.toml", text))
            .expect_err("should fail")
            .0
            .remove(0);
        (e.line, e.message, e.help.unwrap_or_default())
    }

    #[test]
    fn the_dual_stack_fixture_parses_with_both_families() {
        let t = parse_fixture(&Source::new("dual-stack.toml", DUAL)).unwrap();
        assert!(t.dual_stack());
        let n = t.host("node1").unwrap().as_node().unwrap().v6.unwrap();
        assert_eq!(n.gateway, "fd00:10:244:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(t.cluster.cidr6, Some("fd00:10:244::/56".parse().unwrap()));
        assert_eq!(
            t.uplink.as_ref().unwrap().cidr6,
            Some("2001:db8::/64".parse().unwrap())
        );
        assert_eq!(
            t.probe
                .protocols
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>(),
            ["icmp", "tcp", "udp", "icmp6", "tcp6", "udp6"]
        );
        // Generated pods get the address at the same offset in each family.
        let gen = DUAL.replace(
            "uplink = [\"203.0.113.1/24\", \"2001:db8::1/64\"]",
            "uplink = [\"203.0.113.1/24\", \"2001:db8::1/64\"]\npods = 2",
        );
        let t = parse_fixture(&Source::new("gen.toml", gen)).unwrap();
        let p = t.host("pod-1").unwrap().as_pod().unwrap();
        assert_eq!(
            (p.ip.to_string(), p.ip6.unwrap().to_string()),
            ("10.244.1.4".into(), "fd00:10:244:1::4".into())
        );
    }

    #[test]
    fn dual_stack_mistakes_are_located() {
        // A v6 pod on a v4-only node.
        let (line, msg, help) = error(
            "pod_cidr = [\"10.244.1.0/24\", \"fd00:10:244:1::/64\"]",
            "pod_cidr = \"10.244.1.0/24\"",
        );
        assert!(
            msg.contains("pod pod-a has an IPv6 address but node node1 has no IPv6 pod_cidr"),
            "{msg}"
        );
        assert_eq!(line, 20);
        assert!(help.contains("pod_cidr = [\"10.244.1.0/24\""), "{help}");
        let (line, msg, _) = error(
            "ip = [\"10.244.1.2\", \"fd00:10:244:1::2\"]",
            "ip = [\"10.244.1.2\", \"fd00:10:244:9::2\"]",
        );
        assert!(
            msg.contains("is outside node node1's pod_cidr fd00:10:244:1::/64"),
            "{msg}"
        );
        assert_eq!(line, 20);
        // A /128 pod CIDR, link-local where a global address is needed, host bits.
        let (_, msg, _) = error(
            "\"fd00:10:244:1::/64\"]   #",
            "\"fd00:10:244:1::/128\"]   #",
        );
        assert!(msg.contains("leaves no room"), "{msg}");
        let (_, msg, help) = error("\"2001:db8::10/64\"", "\"fe80::10/64\"");
        assert!(msg.contains("is link-local"), "{msg}");
        assert!(help.contains("global"), "{help}");
        let (_, msg, _) = error(
            "\"fd00:10:244:1::/64\"]   #",
            "\"fd00:10:244:1::1/64\"]   #",
        );
        assert!(msg.contains("host bits set"), "{msg}");
        // Overlapping IPv6 pod CIDRs, a duplicate address.
        let two = DUAL.replace(
            "[pod.pod-a]",
            "[node.node2]\npod_cidr = [\"10.244.2.0/24\", \"fd00:10:244::/48\"]\nuplink = [\"203.0.113.2/24\", \"2001:db8::2/64\"]\n\n[pod.pod-a]",
        );
        let e = parse_fixture(&Source::new("two.toml", two))
            .expect_err("overlap")
            .0;
        assert!(
            e.iter().any(|e| e
                .message
                .contains("overlaps node1's pod_cidr fd00:10:244:1::/64")),
            "{e:?}"
        );
        let (_, msg, _) = error("\"fd00:10:244:1::3\"", "\"fd00:10:244:1::2\"");
        assert!(
            msg.contains("duplicate address fd00:10:244:1::2: pod-a already uses it"),
            "{msg}"
        );
        // IPv6 only, two of one family, an IPv6 protocol in an IPv4 fixture.
        let (_, msg, help) = error(
            "ip = [\"10.244.1.3\", \"fd00:10:244:1::3\"]",
            "ip = \"fd00:10:244:1::3\"",
        );
        assert!(msg.contains("is IPv6 only"), "{msg}");
        assert!(help.contains("IPv4 first"), "{help}");
        let (_, msg, _) = error("\"fd00:10:244:1::3\"]", "\"10.244.1.4\"]");
        assert!(msg.contains("lists two IPv4 entries"), "{msg}");
        let single = include_str!("../../../../fixtures/single-node.toml").replace(
            "protocols = [\"icmp\", \"tcp\", \"udp\"]",
            "protocols = [\"icmp\", \"tcp6\"]",
        );
        let e = parse_fixture(&Source::new("s.toml", single))
            .expect_err("v6 proto")
            .0
            .remove(0);
        assert!(
            e.message.contains("tcp6 probes IPv6, but no host"),
            "{}",
            e.message
        );
    }

    #[test]
    fn twins_and_supernets() {
        let t = twin_address(
            "10.244.1.0/24".parse().unwrap(),
            "10.244.1.7".parse().unwrap(),
            "fd00:10:244:1::/64".parse().unwrap(),
        );
        assert_eq!(t, "fd00:10:244:1::7".parse::<Ipv6Addr>().unwrap());
        let nets: Vec<Ipv6Net> = ["fd00:10:244:1::/64", "fd00:10:244:2::/64"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            smallest_supernet6(&nets),
            Some("fd00:10:244::/62".parse().unwrap())
        );
        assert_eq!(not_global("fe80::1".parse().unwrap()), Some("link-local"));
        assert_eq!(not_global("fd00::1".parse().unwrap()), None);
    }

    #[test]
    fn an_ipv6_range_in_a_conflist_needs_an_ipv6_pod_cidr() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/f.toml");
        let text = include_str!("../../../../fixtures/cni-bridge-dual.toml").replacen(
            "pod_cidr = [\"10.244.1.0/24\", \"fd00:10:244:1::/64\"]",
            "pod_cidr = \"10.244.1.0/24\"",
            1,
        );
        let e = parse_fixture(&Source::new(&src, text))
            .expect_err("should fail")
            .0
            .remove(0);
        assert!(
            e.message
                .contains("uses {pod_cidr6}, but node node1 has no IPv6 pod_cidr"),
            "{}",
            e.message
        );
    }
}
