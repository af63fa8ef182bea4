//! The IPv6 path walk: why an icmp6/tcp6/udp6 probe failed, from the lab's live state alone.
//!
//! As the IPv4 walk does, it follows the packet host by host with the kernel's own answers:
//! the sender's address (present, not failed by DAD, its interface's MTU at least IPv6's 1280),
//! `ip -6 route get` (with `iif` on routers, which also says whether they forward), the
//! forwarding sysctl, the outgoing link, the NDP entry of the next hop against the MAC that host
//! really has, and the verdict of every ip6/inet nft base chain on the hooks crossed (with the
//! masquerade they apply); then the reply back to the address the destination saw. The first
//! hop that cannot pass names the culprit; when none does, or the culprit would be a guess, it
//! says `unexplained` with what it saw.

use std::collections::HashMap;
use std::net::Ipv6Addr;

mod service;

use super::nfteval::{Nat, Pkt, Ruleset, Verdict};
use super::vocab::*;
use crate::error::{nl_error, Result};
use crate::lab::Lab;
use crate::nl::{self as netlink, Link};
use crate::nl6::{self, Addr6, Neighbour6};
use crate::topology::{Outcome, Proto};

/// IPv6's minimum link MTU (RFC 8200): below it the kernel turns IPv6 off on the interface.
const IPV6_MIN_MTU: u32 = 1280;

/// What the walk read of each host, once.
/// It is kept for every pair one diagnosis explains, as the IPv4 walk's caches are.
pub struct Walker6<'a> {
    lab: &'a Lab,
    links: HashMap<String, Vec<Link>>,
    addrs: HashMap<String, Vec<Addr6>>,
    neigh: HashMap<String, Vec<Neighbour6>>,
    rules: HashMap<String, Ruleset>,
    sysctls: HashMap<(String, String), Option<String>>,
    /// The probe's destination port (tcp6, udp6), set per explained probe.
    port: Option<u16>,
    /// The destination port to walk with instead of the probe's (a pod's declared port).
    pub(super) dport: Option<u16>,
}

/// Where a one-way walk ended: arrived at `host` (and the source it arrived with), or broken.
enum End6 {
    Arrived { host: String, src: Ipv6Addr },
    Broken(Culprit),
}

impl Walker6<'_> {
    /// Explains one IPv6 probe between two hosts.
    pub async fn explain(
        &mut self,
        from: &str,
        to: &str,
        proto: Proto,
        outcome: Outcome,
    ) -> Result<Diagnosis> {
        let lab = self.lab;
        let t = lab.topology();
        self.port = self.dport.or(t.probe.port(proto));
        let mut d = diagnosis(
            from,
            to,
            proto,
            outcome,
            "the IPv6 path passes every check the walk makes",
        );
        if crate::topology::k8s::Target::parse(to).is_some() {
            return self.explain_service(from, to, proto, outcome).await;
        }
        let (Some(src), Some(dst)) = (
            t.host(from).and_then(|h| h.address6()),
            t.host(to).and_then(|h| h.address6()),
        ) else {
            d.culprit = unexplained(from, "one end has no IPv6 address in the fixture");
            return Ok(d);
        };
        let mut masq: Vec<(String, Ipv6Addr)> = Vec::new();
        let fwd = self
            .walk(from, src, dst, proto, false, &mut d.forward, &mut masq)
            .await?;
        let (host, seen) = match fwd {
            End6::Broken(c) => {
                d.culprit = c;
                return Ok(d);
            }
            End6::Arrived { host, src } => (host, src),
        };
        // Delivered, but not to the host the lab gives the address to: the holder is the culprit.
        if host != to && t.owner_of6(dst).is_some_and(|o| o.name == to) {
            d.culprit = Culprit {
            host: host.clone(),
            component: Component::Address,
            summary: format!("{host} holds {dst}, the address the lab gives {to}: packets for {to} end at {host} (IPv6)"),
        };
            return Ok(d);
        }
        let back = self
            .walk(&host, dst, seen, proto, true, &mut d.reply, &mut masq)
            .await?;
        if let End6::Broken(c) = back {
            d.culprit = self
                .untranslated(from, src, seen, &d.forward)
                .await
                .unwrap_or(c);
        } else if outcome == Outcome::Reachable {
            if let Some(c) = self.unplanned_route(&d.forward, dst, from, to) {
                d.culprit = c;
            }
        }
        Ok(d)
    }

    /// A pair reachable where the lab does not intend it (the case loop explains pairs whose
    /// outcome changed): the first host on the way that routes `dst` though its plan has no
    /// route for it.
    fn unplanned_route(
        &self,
        hops: &[Hop],
        dst: Ipv6Addr,
        from: &str,
        to: &str,
    ) -> Option<Culprit> {
        let (lab, t) = (self.lab, self.lab.topology());
        let host = hops.iter().map(|h| &h.host).find(|h| {
            !t.plugin_wired(h)
                && t.owner_of6(dst).is_none_or(|o| o.name != **h)
                && lab
                    .plan()
                    .host(h)
                    .filter(|p| !p.ifaces.is_empty())
                    .is_some_and(|p| p.v6.route_for(dst).is_none())
        })?;
        Some(Culprit {
            host: host.clone(),
            component: Component::Route,
            summary: format!("{host} routes {dst}, which the lab's plan gives it no IPv6 route for: {from} reaches {to}, which the lab does not intend"),
        })
    }

    /// Explains a reachable IPv6 probe whose server saw another source than the plan intends: the
    /// sender had no usable address of its own (it failed DAD: the source was its link-local one),
    /// or it sent from an address the lab gives another host, or the packet never left it.
    pub async fn explain_translation(
        &mut self,
        from: &str,
        to: &str,
        proto: Proto,
        seen: Ipv6Addr,
        why: &str,
    ) -> Result<Diagnosis> {
        let lab = self.lab;
        let t = lab.topology();
        self.port = t.probe.port(proto);
        let mut d = diagnosis(
            from,
            to,
            proto,
            Outcome::Reachable,
            &format!("reachable, {why}"),
        );
        let own = t.host(from).and_then(|h| h.address6());
        let failed = match own {
            Some(a) => self
                .addrs(from)
                .await?
                .iter()
                .any(|x| x.net.addr() == a && x.dadfailed),
            None => false,
        };
        let link_local = seen.is_unicast_link_local();
        if let (true, true, Some(a)) = (link_local, failed, own) {
            d.forward.push(hop(
                HopStatus::Fail,
                from,
                format!("{a} failed duplicate address detection: it sends from {seen}"),
            ));
            if let End6::Broken(c) = self.dad_culprit(from, a).await? {
                d.culprit = c;
            }
            return Ok(d);
        }
        let other = t
            .owner_of6(seen)
            .map(|o| o.name.clone())
            .filter(|o| o != from);
        if let Some(owner) = other {
            if self.owns(from, seen).await? {
                d.forward.push(hop(
                    HopStatus::Fail,
                    from,
                    format!("sends from {seen}, {owner}'s address"),
                ));
                d.culprit = Culprit {
                host: from.into(),
                component: Component::Address,
                summary: format!("{from} holds {seen}, the address the lab gives {owner}, and sends from it (IPv6)"),
            };
            }
        }
        Ok(d)
    }
}

/// A diagnosis of one probe with no hop yet, `unexplained` for `why` until a culprit is found.
fn diagnosis(from: &str, to: &str, proto: Proto, outcome: Outcome, why: &str) -> Diagnosis {
    Diagnosis {
        from: from.into(),
        to: to.into(),
        protocols: vec![proto],
        outcome,
        size: None,
        forward: Vec::new(),
        reply: Vec::new(),
        culprit: unexplained(from, why),
        evidence: Vec::new(),
        notes: Vec::new(),
    }
}

/// The component a drop by the chain `at` blames: the lab's NetworkPolicies (their table), or
/// a filter.
fn filter_component(at: &str) -> Component {
    if at.contains(crate::lab::policy::POLICY_TABLE) {
        Component::Policy
    } else {
        Component::Filter
    }
}

/// Nothing singled out, said at the host where the walk stopped (the sender before it starts),
/// as the IPv4 walk says it.
fn unexplained(host: &str, why: &str) -> Culprit {
    Culprit {
        host: host.into(),
        component: Component::Unexplained,
        summary: why.into(),
    }
}

fn culprit(host: &str, component: Component, summary: String) -> End6 {
    End6::Broken(Culprit {
        host: host.into(),
        component,
        summary,
    })
}

/// The packet as nft sees it at a hook: the probe's request, or its reply (established).
fn pkt6(
    port: Option<u16>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: Proto,
    reply: bool,
    iif: Option<String>,
    oif: Option<String>,
) -> Pkt {
    let icmp = proto == Proto::Icmp6;
    Pkt {
        src: std::net::Ipv4Addr::UNSPECIFIED,
        dst: std::net::Ipv4Addr::UNSPECIFIED,
        proto,
        sport: if reply { port } else { None },
        dport: if reply { None } else { port },
        icmp_type: icmp.then_some(if reply { 129 } else { 128 }),
        icmp_code: None,
        iif,
        oif,
        ct_new: !reply,
        len: 80,
        mark: Default::default(),
        dst_local: None,
        arp_op: None,
        v6: Some((src, dst)),
        rpf_oif: None,
    }
}

/// What a reverse-path rule (`fib saddr . iif oif missing`) found, said after the rule.
fn reverse_path(rule: &str, pkt: &Pkt) -> String {
    match (rule.contains("fib saddr"), &pkt.rpf_oif, &pkt.iif, pkt.v6) {
        (true, Some(None), Some(iif), Some((src, _))) => {
            format!(" (its route back to {src} does not leave by {iif}, where the packet came in)")
        }
        _ => String::new(),
    }
}

fn hop(status: HopStatus, host: &str, text: String) -> Hop {
    Hop {
        status,
        host: host.into(),
        text,
    }
}

/// What `map` holds for `host`, read once with `read`.
async fn cached<'m, T>(
    map: &'m mut HashMap<String, T>,
    host: &str,
    read: impl std::future::Future<Output = Result<T>>,
) -> Result<&'m T> {
    if !map.contains_key(host) {
        map.insert(host.into(), read.await?);
    }
    Ok(&map[host])
}

impl<'a> Walker6<'a> {
    pub fn new(lab: &'a Lab) -> Self {
        Walker6 {
            lab,
            links: HashMap::new(),
            addrs: HashMap::new(),
            neigh: HashMap::new(),
            rules: HashMap::new(),
            sysctls: HashMap::new(),
            port: None,
            dport: None,
        }
    }

    async fn links(&mut self, host: &str) -> Result<&Vec<Link>> {
        let lab = self.lab;
        cached(&mut self.links, host, async move {
            netlink::links(lab.host(host)?.handle())
                .await
                .map_err(|e| nl_error(host, "listing links", e))
        })
        .await
    }

    async fn addrs(&mut self, host: &str) -> Result<&Vec<Addr6>> {
        let lab = self.lab;
        cached(&mut self.addrs, host, async move {
            nl6::addresses6(lab.host(host)?.handle())
                .await
                .map_err(|e| nl_error(host, "listing IPv6 addresses", e))
        })
        .await
    }

    async fn neighbours(&mut self, host: &str) -> Result<&Vec<Neighbour6>> {
        let lab = self.lab;
        cached(&mut self.neigh, host, async move {
            nl6::neighbours6(lab.host(host)?.handle())
                .await
                .map_err(|e| nl_error(host, "listing NDP entries", e))
        })
        .await
    }

    async fn ruleset(&mut self, host: &str) -> Result<&Ruleset> {
        let lab = self.lab;
        cached(&mut self.rules, host, async move {
            let h = lab.host(host)?;
            let json = crate::nft::list_json(&h.ns, host).await?;
            let text = crate::nft::parse_text(&crate::nft::list_text(&h.ns, host).await?);
            Ok(Ruleset::from_json(&json, &text))
        })
        .await
    }

    async fn sysctl(&mut self, host: &str, key: &str) -> Option<String> {
        let k = (host.to_string(), key.to_string());
        if let Some(v) = self.sysctls.get(&k) {
            return v.clone();
        }
        let key = key.to_string();
        let v = match self.lab.host(host) {
            Ok(h) => {
                h.ns.run_async(move || crate::netns::read_sysctl(&key).ok())
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        };
        self.sysctls.insert(k, v.clone());
        v
    }

    async fn link_by_index(&mut self, host: &str, index: u32) -> Result<Option<Link>> {
        Ok(self
            .links(host)
            .await?
            .iter()
            .find(|l| l.index == index)
            .cloned())
    }

    /// The lab host holding `ip` (usable, not DAD-failed), and the interface it is on.
    async fn holder(&mut self, ip: Ipv6Addr) -> Result<Option<(String, u32)>> {
        for name in self.lab.topology().namespace_names() {
            let found = self
                .addrs(&name)
                .await?
                .iter()
                .find(|a| a.net.addr() == ip && !a.dadfailed)
                .map(|a| a.index);
            if let Some(ix) = found {
                return Ok(Some((name, ix)));
            }
        }
        Ok(None)
    }

    /// Walks one way from `host`, sending from `src` to `dst`; pushes hops. `masq` collects
    /// (node, original source) where a node masqueraded the flow, so the reply is de-NATed.
    /// A live route off the lab's plan is the culprit when the packet dies before it is back on
    /// the plan's path (see `divergence`).
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &mut self,
        start: &str,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        proto: Proto,
        reply: bool,
        hops: &mut Vec<Hop>,
        masq: &mut Vec<(String, Ipv6Addr)>,
    ) -> Result<End6> {
        let mut diverged = None;
        let end = self
            .walk_on(start, src, dst, proto, reply, hops, masq, &mut diverged)
            .await?;
        Ok(match (end, diverged) {
            (End6::Broken(_), Some((_, c))) => End6::Broken(c),
            (end, _) => end,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn walk_on(
        &mut self,
        start: &str,
        mut src: Ipv6Addr,
        mut dst: Ipv6Addr,
        proto: Proto,
        reply: bool,
        hops: &mut Vec<Hop>,
        masq: &mut Vec<(String, Ipv6Addr)>,
        diverged: &mut Option<(String, Culprit)>,
    ) -> Result<End6> {
        let mut host = start.to_string();
        let mut iif: Option<u32> = None;
        for _ in 0..16 {
            // Back on the plan's path: an earlier route off the plan did no harm.
            if diverged.as_ref().is_some_and(|(back, _)| *back == host) {
                *diverged = None;
            }
            if let Some(end) = self.sender_checks(&host, src, iif, hops).await? {
                return Ok(end);
            }
            // Arrived where the destination is one of the host's own addresses.
            if self.owns(&host, dst).await? {
                if let Some((node, orig)) = masq.iter().find(|(n, _)| *n == host).cloned() {
                    // The reply reaches the node that masqueraded the flow: conntrack turns it
                    // back to the pod's address, and the node forwards it on.
                    hops.push(hop(
                        HopStatus::Ok,
                        &node,
                        format!("{dst} is its own: conntrack restores the pod's address {orig}"),
                    ));
                    masq.retain(|(n, _)| *n != node);
                    dst = orig;
                    continue;
                }
                let iif_name = self.name_of(&host, iif).await?;
                let mut pkt = pkt6(self.port, src, dst, proto, reply, iif_name, None);
                pkt.rpf_oif = self.rpf(&host, src, iif).await?;
                // Prerouting runs before the input hook for what arrives from outside.
                let hooks: &[&str] = match iif {
                    Some(_) => &["prerouting", "input"],
                    None => &["input"],
                };
                for hk in hooks {
                    if let Some(end) = self.filter(&host, hk, &pkt, hops).await? {
                        return Ok(end);
                    }
                }
                hops.push(hop(
                    HopStatus::Ok,
                    &host,
                    format!("{dst} is its own: delivered"),
                ));
                return Ok(End6::Arrived { host, src });
            }
            let next = self
                .forward_hop(&host, src, dst, proto, reply, iif, hops)
                .await?;
            let (oif, nh, nat) = match next {
                Err(end) => return Ok(end),
                Ok(x) => x,
            };
            if diverged.is_none() {
                *diverged = self.divergence(&host, dst, oif, nh).await?;
            }
            if nat {
                let new = self.global_on(&host, oif).await?;
                if let Some(new) = new {
                    masq.push((host.clone(), src));
                    hops.push(hop(
                        HopStatus::Ok,
                        &host,
                        format!("masquerades {src} to {new}"),
                    ));
                    src = new;
                }
            }
            // The next host is whoever has the MAC the sender's NDP entry names, where it has one.
            let by_mac = match self.neighbour_check(&host, oif, nh, hops).await? {
                Err(end) => return Ok(end),
                Ok(x) => x,
            };
            let next = match by_mac {
                Some(x) => Some(x),
                None => self.holder(nh).await?,
            };
            let Some((next_host, next_if)) = next else {
                // The host the fixture gives that address to lost it; else nobody should have it.
                if let Some(owner) = self.lab.topology().owner_of6(nh) {
                    let owner = owner.name.clone();
                    return self.missing(&owner, nh, hops).await;
                }
                let via = if nh == dst {
                    String::new()
                } else {
                    format!(" via {nh}")
                };
                return Ok(End6::Broken(unexplained(
                    &host,
                    &format!("{host} routes {dst}{via}, which no host of the lab holds"),
                )));
            };
            if let Some(end) = self
                .bridged(&host, &next_host, src, dst, proto, reply, hops)
                .await?
            {
                return Ok(end);
            }
            // A packet for the destination itself enters by the interface it arrives on: the
            // holder of the next hop, or (the next hop a router) its interface holding it.
            host = next_host;
            iif = Some(next_if);
        }
        Ok(End6::Broken(Culprit {
            host: start.into(),
            component: Component::Route,
            summary: format!("IPv6 packets to {dst} loop: more than 16 hops"),
        }))
    }

    /// Where `host`'s live route to `dst` (out of `oif`, to next hop `nh`) is not the plan's
    /// (another interface or gateway: a route learned from a router advertisement, one changed
    /// by hand): the host the plan's route leads to, and the culprit naming both routes. None
    /// where they agree or the plan has no IPv6 route for it (CNI-built pods: the plugin's).
    async fn divergence(
        &mut self,
        host: &str,
        dst: Ipv6Addr,
        oif: u32,
        nh: Ipv6Addr,
    ) -> Result<Option<(String, Culprit)>> {
        let lab = self.lab;
        let t = lab.topology();
        let plan = lab.plan().host(host).map(|h| &h.v6);
        let Some((pdev, pgw)) = plan
            .filter(|_| !t.plugin_wired(host))
            .and_then(|p| p.route_for(dst))
        else {
            return Ok(None);
        };
        let dev = self.name_of(host, Some(oif)).await?.unwrap_or_default();
        let gw = (nh != dst).then_some(nh);
        if dev == pdev && gw == pgw {
            return Ok(None);
        }
        let Some(back) = t.owner_of6(pgw.unwrap_or(dst)).map(|o| o.name.clone()) else {
            return Ok(None);
        };
        let show = |dev: &str, gw: Option<Ipv6Addr>| match gw {
            Some(g) => format!("via {g} dev {dev}"),
            None => format!("dev {dev}"),
        };
        let learned = match gw {
            Some(g) if g.is_unicast_link_local() => self
                .holder(g)
                .await?
                .map(|(h, _)| {
                    format!(" (a link-local router: {h}, as a router advertisement makes it)")
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        let summary = format!(
            "{host}'s IPv6 route to {dst} goes {}{learned}, not as the lab's plan routes it ({}, towards {back})",
            show(&dev, gw),
            show(pdev, pgw)
        );
        Ok(Some((
            back,
            Culprit {
                host: host.into(),
                component: Component::Route,
                summary,
            },
        )))
    }

    async fn owns(&mut self, host: &str, ip: Ipv6Addr) -> Result<bool> {
        Ok(self
            .addrs(host)
            .await?
            .iter()
            .any(|a| a.net.addr() == ip && !a.dadfailed))
    }

    /// The first global address on an interface (a masquerade's new source).
    async fn global_on(&mut self, host: &str, index: u32) -> Result<Option<Ipv6Addr>> {
        Ok(self
            .addrs(host)
            .await?
            .iter()
            .find(|a| a.index == index && !a.is_link_local() && !a.dadfailed)
            .map(|a| a.net.addr()))
    }

    /// At the sender (no `iif`): its source address must be there and usable. At a router:
    /// the interface it came in by must be up.
    async fn sender_checks(
        &mut self,
        host: &str,
        src: Ipv6Addr,
        iif: Option<u32>,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<End6>> {
        if let Some(ix) = iif {
            let l = self.link_by_index(host, ix).await?;
            if let Some(l) = l.filter(|l| !l.is_oper_up()) {
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("arrives on {}, which is {}", l.name, l.oper),
                ));
                // Carrier-less because the veth's other end was set down: blame that end.
                if let Some((peer_host, peer_name)) = self.downed_peer(host, &l).await? {
                    let why = format!("{peer_host} {peer_name} is down: {host} {} has no carrier, and IPv6 packets arrive there", l.name);
                    return Ok(Some(culprit(&peer_host, Component::Link, why)));
                }
                return Ok(Some(culprit(
                    host,
                    Component::Link,
                    format!("{} is {} (IPv6 packets arrive there)", l.name, l.oper),
                )));
            }
            return Ok(None);
        }
        let found = self
            .addrs(host)
            .await?
            .iter()
            .find(|a| a.net.addr() == src)
            .cloned();
        match found {
            Some(a) if a.dadfailed => {
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("{src} failed duplicate address detection"),
                ));
                self.dad_culprit(host, src).await.map(Some)
            }
            Some(_) => Ok(None),
            None => self.missing(host, src, hops).await.map(Some),
        }
    }

    /// Why `host` does not hold its address `ip`: an interface below IPv6's minimum MTU (the
    /// kernel turned IPv6 off there and dropped its addresses), or the address is simply gone.
    async fn missing(&mut self, host: &str, ip: Ipv6Addr, hops: &mut Vec<Hop>) -> Result<End6> {
        let small: Option<Link> = self
            .links(host)
            .await?
            .iter()
            .find(|l| l.name != "lo" && l.mtu > 0 && l.mtu < IPV6_MIN_MTU)
            .cloned();
        if let Some(l) = small {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!(
                    "{} has MTU {}: below IPv6's 1280, so no IPv6 address",
                    l.name, l.mtu
                ),
            ));
            return Ok(culprit(host, Component::Mtu, format!("{} MTU {} is below IPv6's minimum of 1280: the kernel turned IPv6 off on it and dropped its addresses ({ip} is gone)", l.name, l.mtu)));
        }
        // The interface the lab puts it on is gone: the address went with the link.
        let planned = self.lab.plan().host(host).and_then(|p| {
            p.v6.addresses
                .iter()
                .find(|(_, n)| n.addr() == ip)
                .map(|(dev, _)| dev.clone())
        });
        if let Some(dev) = planned {
            if !self.links(host).await?.iter().any(|l| l.name == dev) {
                hops.push(hop(HopStatus::Fail, host, format!("has no {dev} for {ip}")));
                let why = format!("{host} has no {dev}: its IPv6 address {ip} went with it");
                return Ok(culprit(host, Component::Link, why));
            }
        }
        hops.push(hop(HopStatus::Fail, host, format!("does not hold {ip}")));
        Ok(culprit(
            host,
            Component::Address,
            format!("{ip} is not on any of its interfaces (IPv6)"),
        ))
    }

    /// Pod to pod across their node's bridge: with br_netfilter's bridge-nf-call-ip6tables on,
    /// the node's ip6 forward hook sees the bridged packet.
    #[allow(clippy::too_many_arguments)]
    async fn bridged(
        &mut self,
        from: &str,
        to: &str,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        proto: Proto,
        reply: bool,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<End6>> {
        let t = self.lab.topology();
        let pod = |h: &str| t.host(h).and_then(|x| x.as_pod()).map(|p| p.node.clone());
        let (Some(a), Some(b)) = (pod(from), pod(to)) else {
            return Ok(None);
        };
        let Some(bridge) = t
            .host(&a)
            .and_then(|n| n.as_node())
            .map(|n| n.bridge.clone())
        else {
            return Ok(None);
        };
        if a != b || !t.has_bridge() {
            return Ok(None);
        }
        if self
            .sysctl(&a, "net.bridge.bridge-nf-call-ip6tables")
            .await
            .as_deref()
            != Some("1")
        {
            return Ok(None);
        }
        let pkt = pkt6(
            self.port,
            src,
            dst,
            proto,
            reply,
            Some(bridge.clone()),
            Some(bridge.clone()),
        );
        match self.ruleset(&a).await?.evaluate("forward", &pkt) {
            Verdict::Drop { at, rule, reject } => {
                let what = if reject { "rejects" } else { "drops" };
                hops.push(hop(
                    HopStatus::Fail,
                    &a,
                    format!("bridges it on {bridge}, and {at} {what} it: {rule}"),
                ));
                Ok(Some(culprit(&a, filter_component(&at), format!("{at} {what} IPv6 packets bridged between its pods on {bridge} (br_netfilter: bridge-nf-call-ip6tables = 1): {rule}"))))
            }
            Verdict::Uncertain { at, rule } => {
                hops.push(hop(
                    HopStatus::Unknown,
                    &a,
                    format!("bridges it; {at} may drop it: {rule}"),
                ));
                Ok(Some(End6::Broken(unexplained(&a, &format!("{at} on {a} may drop IPv6 packets bridged on {bridge} ({rule}): the walk cannot decide that rule")))))
            }
            Verdict::Accept { .. } => {
                hops.push(hop(HopStatus::Ok, &a, format!("bridges it on {bridge}")));
                Ok(None)
            }
        }
    }

    /// The route lookup (with forwarding on a router), the outgoing link and the filters of a
    /// host the packet leaves: (outgoing interface, next hop, whether it is masqueraded).
    #[allow(clippy::too_many_arguments)]
    async fn forward_hop(
        &mut self,
        host: &str,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        proto: Proto,
        reply: bool,
        iif: Option<u32>,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<(u32, Ipv6Addr, bool), End6>> {
        if iif.is_some() {
            let on = self.sysctl(host, "net.ipv6.conf.all.forwarding").await;
            if on.as_deref() == Some("0") {
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    "does not forward IPv6 (net.ipv6.conf.all.forwarding = 0)".into(),
                ));
                return Ok(Err(culprit(host, Component::Forwarding, format!("IPv6 forwarding is off (net.ipv6.conf.all.forwarding = 0): it drops IPv6 packets to {dst} it should route"))));
            }
        }
        let h = self.lab.host(host)?.handle().clone();
        let route = match nl6::route_get6(&h, dst, iif).await {
            Ok(r) if r.kind == "unicast" => r,
            Ok(r) => {
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("{} route to {}", r.kind, r.dst),
                ));
                return Ok(Err(culprit(
                    host,
                    Component::Route,
                    format!("a {} route to {} covers {dst} (IPv6)", r.kind, r.dst),
                )));
            }
            Err(e) => {
                if let Some(end) = self.planned_device_gone(&h, host, dst, hops).await? {
                    return Ok(Err(end));
                }
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("no IPv6 route to {dst}: {}", e.message),
                ));
                return Ok(Err(culprit(
                    host,
                    Component::Route,
                    format!("no IPv6 route to {dst} ({})", e.message),
                )));
            }
        };
        // The sender's kernel picks the source: one the lab gives another host sends that
        // host's replies there.
        if let (None, Some(p)) = (iif, route.prefsrc.filter(|p| *p != src)) {
            let owner = self.lab.topology().owner_of6(p).map(|o| o.name.clone());
            if let Some(owner) = owner.filter(|o| o != host) {
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("sends from {p}, {owner}'s address"),
                ));
                return Ok(Err(culprit(host, Component::Address, format!("{host} holds {p}, the address the lab gives {owner}, and sends from it: replies to {p} go to {owner} (IPv6)"))));
            }
        }
        let Some(oif) = route.oif else {
            return Ok(Err(culprit(
                host,
                Component::Route,
                format!("its IPv6 route to {dst} names no interface"),
            )));
        };
        let link = self.link_by_index(host, oif).await?;
        let Some(link) = link else {
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!("its IPv6 route to {dst} leaves by interface {oif}, which is gone"),
            )));
        };
        if !link.is_oper_up() {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("route to {dst} dev {}, which is {}", link.name, link.oper),
            ));
            if let Some(end) = self.peer_down(host, &link, dst).await? {
                return Ok(Err(end));
            }
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!(
                    "{} is {}: IPv6 packets to {dst} leave by it",
                    link.name, link.oper
                ),
            )));
        }
        if link.mtu < IPV6_MIN_MTU {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("{} has MTU {}, below IPv6's 1280", link.name, link.mtu),
            ));
            return Ok(Err(culprit(host, Component::Mtu, format!("{} MTU {} is below IPv6's minimum of 1280: the kernel does not send IPv6 on it", link.name, link.mtu))));
        }
        let iif_name = self.name_of(host, iif).await?;
        let mut pkt = pkt6(
            self.port,
            src,
            dst,
            proto,
            reply,
            iif_name,
            Some(link.name.clone()),
        );
        pkt.rpf_oif = self.rpf(host, src, iif).await?;
        let hooks: &[&str] = if iif.is_some() {
            &["prerouting", "forward", "postrouting"]
        } else {
            &["output", "postrouting"]
        };
        let mut nat = false;
        for hk in hooks {
            match self.ruleset(host).await?.evaluate(hk, &pkt) {
                Verdict::Drop { at, rule, reject } => {
                    let what = if reject { "rejects" } else { "drops" };
                    hops.push(hop(
                        HopStatus::Fail,
                        host,
                        format!("{at} {what} it: {rule}"),
                    ));
                    return Ok(Err(culprit(
                        host,
                        filter_component(&at),
                        format!(
                            "{at} {what} IPv6 packets to {dst} at {hk}: {rule}{}",
                            reverse_path(&rule, &pkt)
                        ),
                    )));
                }
                Verdict::Uncertain { at, rule } => {
                    hops.push(hop(
                        HopStatus::Unknown,
                        host,
                        format!("{at} may drop it: {rule}"),
                    ));
                    return Ok(Err(End6::Broken(Culprit {
                        host: host.into(),
                        component: Component::Unexplained,
                        summary: format!("{at} may drop IPv6 packets to {dst} ({rule}): the walk cannot decide that rule"),
                    })));
                }
                Verdict::Accept { nat: n } => {
                    nat |= n.contains(&Nat::Masquerade) && *hk == "postrouting"
                }
            }
        }
        let nh = route.gateway.unwrap_or(dst);
        let via = route
            .gateway
            .map(|g| format!(" via {g}"))
            .unwrap_or_default();
        hops.push(hop(
            HopStatus::Ok,
            host,
            format!("route to {dst}{via} dev {}", link.name),
        ));
        Ok(Ok((oif, nh, nat)))
    }

    /// `fib saddr . iif oif` as nft_fib6 answers it: a lookup of the source bound to the input
    /// interface, which falls back to shorter prefixes until a route leaves by that interface.
    /// So: the input interface when a unicast route of the main table covers `src` through it,
    /// else None (`missing`, also for a source the host holds itself: a local route). None
    /// overall when there is no input interface or the routes cannot be read.
    async fn rpf(
        &mut self,
        host: &str,
        src: Ipv6Addr,
        iif: Option<u32>,
    ) -> Result<Option<Option<String>>> {
        let Some(ix) = iif else { return Ok(None) };
        if self.owns(host, src).await? {
            return Ok(Some(None));
        }
        let h = self.lab.host(host)?.handle().clone();
        let Ok(routes) = nl6::routes6(&h).await else {
            return Ok(None);
        };
        let back = routes
            .iter()
            .any(|r| r.kind == "unicast" && r.oif == Some(ix) && r.dst.contains(&src));
        if !back {
            return Ok(Some(None));
        }
        Ok(self.name_of(host, iif).await?.map(Some))
    }

    async fn name_of(&mut self, host: &str, index: Option<u32>) -> Result<Option<String>> {
        let Some(ix) = index else { return Ok(None) };
        Ok(self.link_by_index(host, ix).await?.map(|l| l.name))
    }

    /// The input hook of the host the packet is for.
    async fn filter(
        &mut self,
        host: &str,
        hk: &str,
        pkt: &Pkt,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<End6>> {
        match self.ruleset(host).await?.evaluate(hk, pkt) {
            Verdict::Drop { at, rule, reject } => {
                let what = if reject { "rejects" } else { "drops" };
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("{at} {what} it: {rule}"),
                ));
                Ok(Some(culprit(
                    host,
                    filter_component(&at),
                    format!(
                        "{at} {what} IPv6 packets at {hk}: {rule}{}",
                        reverse_path(&rule, pkt)
                    ),
                )))
            }
            Verdict::Uncertain { at, rule } => {
                hops.push(hop(
                    HopStatus::Unknown,
                    host,
                    format!("{at} may drop it: {rule}"),
                ));
                Ok(Some(End6::Broken(unexplained(host, &format!("{at} on {host} may drop IPv6 packets ({rule}): the walk cannot decide that rule")))))
            }
            Verdict::Accept { .. } => Ok(None),
        }
    }

    /// The NDP entry for the next hop: a failed or incomplete one, or a permanent one whose MAC
    /// is not the MAC of the interface that holds the address.
    ///
    /// Ok(Some(host, interface)): the lab interface the entry's MAC belongs to, holding `nh`.
    async fn neighbour_check(
        &mut self,
        host: &str,
        oif: u32,
        nh: Ipv6Addr,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<Option<(String, u32)>, End6>> {
        let entry = self
            .neighbours(host)
            .await?
            .iter()
            .find(|n| n.index == oif && n.ip == nh)
            .cloned();
        let Some(e) = entry else { return Ok(Ok(None)) };
        if matches!(e.state.as_str(), "failed" | "incomplete") {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("NDP entry for {nh} is {}", e.state),
            ));
            return Ok(Err(culprit(
                host,
                Component::Neighbour,
                format!(
                    "its NDP entry for {nh} is {}: no answer to neighbour solicitation",
                    e.state
                ),
            )));
        }
        // The interface that has the entry's MAC: it must hold the address.
        if let Some((m, mix, name)) = self.with_mac(e.mac.as_deref()).await? {
            let held = self
                .addrs(&m)
                .await?
                .iter()
                .find(|a| a.index == mix && a.net.addr() == nh)
                .cloned();
            match held {
                Some(a) if !a.dadfailed => return Ok(Ok(Some((m, mix)))),
                Some(_) => {
                    hops.push(hop(
                        HopStatus::Fail,
                        &m,
                        format!("{nh} on {name} failed duplicate address detection"),
                    ));
                    return Ok(Err(self.dad_culprit(&m, nh).await?));
                }
                None => {
                    // The entry names the host the lab gives the address to: the entry is right,
                    // and that host lost the address (whoever holds it now).
                    let t = self.lab.topology();
                    if t.owner_of6(nh).is_some_and(|o| o.name == m) {
                        return Ok(Err(self.missing(&m, nh, hops).await?));
                    }
                    if self.holder(nh).await?.is_some() {
                        hops.push(hop(
                            HopStatus::Fail,
                            host,
                            format!("NDP entry for {nh} names {m}'s {name}"),
                        ));
                        return Ok(Err(culprit(host, Component::Neighbour, format!("its {} NDP entry for {nh} names {m}'s {name}, which does not hold {nh}", e.state))));
                    }
                    return Ok(Ok(None));
                }
            }
        }
        let Some((owner, ix)) = self.holder(nh).await? else {
            return Ok(Ok(None));
        };
        let real = self.link_by_index(&owner, ix).await?.and_then(|l| l.mac);
        let (Some(real), Some(mac)) = (real, e.mac) else {
            return Ok(Ok(None));
        };
        if real != mac {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("NDP entry for {nh} says {}", netlink::mac_string(&mac)),
            ));
            return Ok(Err(culprit(host, Component::Neighbour, format!("its {} NDP entry for {nh} says {}, but {owner} has {}: frames go to a MAC nobody has", e.state, netlink::mac_string(&mac), netlink::mac_string(&real)))));
        }
        Ok(Ok(None))
    }

    /// The lab host and interface that has a MAC (not a bridge port's twin: the first match).
    async fn with_mac(&mut self, mac: Option<&[u8]>) -> Result<Option<(String, u32, String)>> {
        let Some(mac) = mac else { return Ok(None) };
        for name in self.lab.topology().namespace_names() {
            let found = self
                .links(&name)
                .await?
                .iter()
                .find(|l| l.mac.as_deref() == Some(mac))
                .map(|l| (l.index, l.name.clone()));
            if let Some((ix, ifname)) = found {
                return Ok(Some((name, ix, ifname)));
            }
        }
        Ok(None)
    }

    /// An address that failed duplicate address detection at `host`: when another lab host
    /// holds it and the lab gives it to `host`, that other host is the cause; else `host`'s.
    async fn dad_culprit(&mut self, host: &str, ip: Ipv6Addr) -> Result<End6> {
        let t = self.lab.topology();
        let planned = t.owner_of6(ip).is_some_and(|o| o.name == host);
        match self.holder(ip).await? {
            Some((other, _)) if other != host && planned => Ok(culprit(
                &other,
                Component::Address,
                format!("{other} holds {ip}, the address the lab gives {host}: {host}'s duplicate address detection failed, so {host} does not use it (IPv6)"),
            )),
            _ => Ok(culprit(
                host,
                Component::Address,
                format!("{ip} failed duplicate address detection (another host on the link answers for it): the kernel does not use it (IPv6)"),
            )),
        }
    }

    /// A reply that found no way back to a pod's address that left a node's uplink untranslated:
    /// the node's ip6 masquerade is missing (the plan masquerades that pod CIDR there).
    async fn untranslated(
        &mut self,
        from: &str,
        src: Ipv6Addr,
        seen: Ipv6Addr,
        forward: &[Hop],
    ) -> Option<Culprit> {
        if src != seen {
            return None;
        }
        let t = self.lab.topology();
        let pod = t.host(from)?.as_pod()?;
        let node = t.host(&pod.node)?.as_node()?;
        let plan = self.lab.plan().host(&pod.node)?;
        let m = plan.v6.masquerade.as_ref()?;
        let crossed = forward
            .iter()
            .any(|h| h.host == pod.node && h.text.contains(&format!("dev {}", node.uplink_ifname)));
        (crossed && m.pod_cidr.contains(&src)).then(|| Culprit {
            host: pod.node.clone(),
            component: Component::Masquerade,
            summary: format!(
                "{} sends {from}'s IPv6 packets out of {} untranslated: no ip6 masquerade for {} (the lab's plan masquerades it leaving {}), and nothing routes {src} back",
                pod.node, node.uplink_ifname, m.pod_cidr, m.uplink
            ),
        })
    }
}

impl Walker6<'_> {
    /// A link up on this side with no carrier because its veth peer was set down: the peer's
    /// host is to blame (as the IPv4 walk finds it).
    async fn peer_down(&self, host: &str, link: &Link, dst: Ipv6Addr) -> Result<Option<End6>> {
        let Some((peer_host, peer_name)) = self.downed_peer(host, link).await? else {
            return Ok(None);
        };
        let why = format!("{peer_host} {peer_name} is down: {host} {} has no carrier, and IPv6 packets to {dst} leave by it", link.name);
        Ok(Some(culprit(&peer_host, Component::Link, why)))
    }

    /// The veth peer (host, name) of a link that is up on this side, when that peer is set down.
    async fn downed_peer(&self, host: &str, link: &Link) -> Result<Option<(String, String)>> {
        if !link.admin_up {
            return Ok(None);
        }
        let Some((peer_host, peer_name)) = self.lab.plan().veth_peer(host, &link.name) else {
            return Ok(None);
        };
        let h = self.lab.host(&peer_host)?.handle().clone();
        let peer = netlink::link_by_name(&h, &peer_name)
            .await
            .map_err(|e| nl_error(&peer_host, format!("reading {peer_name}"), e))?;
        Ok(peer
            .is_some_and(|p| !p.admin_up)
            .then_some((peer_host, peer_name)))
    }

    /// A lookup that failed because the device the plan routes `dst` by is missing or down
    /// (its routes went with it, as for IPv4): the link is to blame, not the route.
    async fn planned_device_gone(
        &self,
        h: &rtnetlink::Handle,
        host: &str,
        dst: Ipv6Addr,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<End6>> {
        let plan = self.lab.plan().host(host).map(|p| &p.v6);
        let Some((dev, _)) = plan.and_then(|p| p.route_for(dst)) else {
            return Ok(None);
        };
        let live = netlink::link_by_name(h, dev)
            .await
            .map_err(|e| nl_error(host, format!("reading {dev}"), e))?;
        let why = match live {
            None => format!("{host} has no {dev}: its IPv6 route to {dst} went with it"),
            Some(l) if !l.admin_up => {
                format!("{host} {dev} is down: its IPv6 route to {dst} is gone")
            }
            Some(_) => return Ok(None),
        };
        hops.push(hop(
            HopStatus::Fail,
            host,
            format!("no IPv6 route to {dst} ({dev} is down or missing)"),
        ));
        Ok(Some(culprit(host, Component::Link, why)))
    }
}
