//! The path walk: why a pair is broken, from the lab's live state alone.
//!
//! It follows the packet hop by hop as the kernel would, asking the kernel where it can: route
//! lookups with `from`/`iif` (which also say whether a host forwards), link, carrier and MTU of
//! every interface on the way, veth peers and bridge ports, neighbour entries, and the verdict of
//! every nft base chain on every hook the packet crosses (with the NAT they apply); then the reply
//! from the destination back to the address the packet arrived from. The first hop that cannot
//! pass names the culprit. Nothing here knows which fault was injected: a lab broken by hand with
//! `ip`, `nft` or `sysctl` gets the same explanation.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::nfteval::{Nat, Pkt, Ruleset, Verdict};
use super::vocab::*;
use crate::error::{nl_error, Result};
use crate::lab::{IfaceKind, Lab};
use crate::netns;
use crate::nft;
use crate::nl::{self as netlink, Addr, Link, Neighbour, Route};
use crate::topology::{Outcome, Proto, SWITCH_HOST};

mod k8s;

/// Explains every pair whose outcome got worse than in `baseline`, one walk per protocol,
/// protocols that walk the same way grouped; with kernel evidence from probing them again.
pub async fn explain_changes(
    lab: &Lab,
    observed: &crate::matrix::Matrix,
    baseline: &crate::matrix::Matrix,
) -> Result<Vec<Diagnosis>> {
    let mut broken: Vec<(String, String, Proto, Outcome)> = Vec::new();
    for c in &observed.cells {
        let before = baseline.observed(&c.from, &c.to, c.proto);
        if c.observed == Outcome::Reachable
            || before == Some(c.observed)
            || c.observed == Outcome::Unsupported
        {
            continue;
        }
        broken.push((c.from.clone(), c.to.clone(), c.proto, c.observed));
    }
    explain_pairs(lab, &broken, None, true).await
}

/// Explains the given broken probes; with `gather`, probes them again to collect evidence.
pub async fn explain_pairs(
    lab: &Lab,
    broken: &[(String, String, Proto, Outcome)],
    size: Option<usize>,
    gather: bool,
) -> Result<Vec<Diagnosis>> {
    let mut w = Walker::new(lab);
    let mut out: Vec<Diagnosis> = Vec::new();
    for (from, to, proto, outcome) in broken {
        // The probe's own size unless the caller names one.
        let size = size.or(lab.topology().probe.size(*proto));
        let d = if crate::topology::k8s::Target::parse(to).is_some() {
            w.explain_target(from, to, *proto, *outcome).await?
        } else {
            w.explain(from, to, *proto, *outcome, size).await?
        };
        match out.iter_mut().find(|x| {
            x.from == d.from
                && x.to == d.to
                && x.outcome == d.outcome
                && x.forward == d.forward
                && x.reply == d.reply
                && x.culprit == d.culprit
        }) {
            Some(x) => x.protocols.push(*proto),
            None => out.push(d),
        }
    }
    if gather && !out.is_empty() {
        super::evidence::attach(lab, &mut out).await?;
    }
    Ok(out)
}

/// Explains one probe (no evidence).
pub async fn explain(
    lab: &Lab,
    from: &str,
    to: &str,
    proto: Proto,
    outcome: Outcome,
    size: Option<usize>,
) -> Result<Diagnosis> {
    Walker::new(lab)
        .explain(from, to, proto, outcome, size)
        .await
}

/// Per-lab caches of what the walk reads from the kernel.
struct Walker<'a> {
    lab: &'a Lab,
    /// The probe is a bulk TCP transfer of this many bytes: full-size segments, and time counts.
    bulk: Option<usize>,
    links: HashMap<String, Vec<Link>>,
    addrs: HashMap<String, Vec<Addr>>,
    neigh: HashMap<String, Vec<Neighbour>>,
    rules: HashMap<String, Ruleset>,
    sysctls: HashMap<(String, String), Option<String>>,
    /// The destination port to walk with instead of the probe's (a Service's endpoint port).
    dport: Option<u16>,
    /// Start the walk as a packet arriving at this host on this interface, from this source
    /// (a NodePort's packet after the node translated it).
    entry: Option<(String, String, Ipv4Addr)>,
    /// The mark the entry packet carries.
    entry_mark: u32,
}

/// Where a walk stopped.
enum End {
    Arrived,
    Broken(Culprit),
}

/// Translation state carried along a flow.
#[derive(Default, Clone)]
struct Flow {
    /// (host, original source, translated source) where the source was translated.
    snat: Option<(String, Ipv4Addr, Ipv4Addr)>,
    /// (node, uplink, pod source, hop index) when a node sent a pod-sourced packet out of its
    /// uplink untranslated.
    untranslated: Option<(String, String, Ipv4Addr, usize)>,
    /// Rules whose verdict the walk could not decide: (host, where, rule).
    uncertain: Vec<(String, String, String)>,
    /// The address the sender actually sends from (its route's preferred source).
    origin_src: Option<Ipv4Addr>,
}

const MAX_HOPS: usize = 16;
/// The size of an ordinary probe's packets.
const SMALL: usize = 64;

fn culprit(host: &str, component: Component, summary: String) -> Culprit {
    Culprit {
        host: host.to_string(),
        component,
        summary,
    }
}

fn hop(status: HopStatus, host: &str, text: String) -> Hop {
    Hop {
        status,
        host: host.to_string(),
        text,
    }
}

impl<'a> Walker<'a> {
    fn new(lab: &'a Lab) -> Self {
        Walker {
            lab,
            bulk: None,
            links: HashMap::new(),
            addrs: HashMap::new(),
            neigh: HashMap::new(),
            rules: HashMap::new(),
            sysctls: HashMap::new(),
            dport: None,
            entry: None,
            entry_mark: 0,
        }
    }

    async fn links(&mut self, host: &str) -> Result<&Vec<Link>> {
        if !self.links.contains_key(host) {
            let h = self.lab.host(host)?;
            let l = netlink::links(h.handle())
                .await
                .map_err(|e| nl_error(host, "listing links", e))?;
            self.links.insert(host.to_string(), l);
        }
        Ok(&self.links[host])
    }

    async fn link(&mut self, host: &str, name: &str) -> Result<Option<Link>> {
        Ok(self
            .links(host)
            .await?
            .iter()
            .find(|l| l.name == name)
            .cloned())
    }

    async fn ifname(&mut self, host: &str, index: u32) -> Result<String> {
        Ok(self
            .links(host)
            .await?
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("if{index}")))
    }

    async fn addrs(&mut self, host: &str) -> Result<&Vec<Addr>> {
        if !self.addrs.contains_key(host) {
            let h = self.lab.host(host)?;
            let a = netlink::addresses(h.handle())
                .await
                .map_err(|e| nl_error(host, "listing addresses", e))?;
            self.addrs.insert(host.to_string(), a);
        }
        Ok(&self.addrs[host])
    }

    async fn neighbours(&mut self, host: &str) -> Result<&Vec<Neighbour>> {
        if !self.neigh.contains_key(host) {
            let h = self.lab.host(host)?;
            let n = netlink::neighbours(h.handle())
                .await
                .map_err(|e| nl_error(host, "listing neighbours", e))?;
            self.neigh.insert(host.to_string(), n);
        }
        Ok(&self.neigh[host])
    }

    async fn ruleset(&mut self, host: &str) -> Result<&Ruleset> {
        if !self.rules.contains_key(host) {
            let h = self.lab.host(host)?;
            let json = nft::list_json(&h.ns, host).await?;
            let text = nft::parse_text(&nft::list_text(&h.ns, host).await?);
            self.rules
                .insert(host.to_string(), Ruleset::from_json(&json, &text));
        }
        Ok(&self.rules[host])
    }

    async fn sysctl(&mut self, host: &str, key: &str) -> Option<String> {
        let k = (host.to_string(), key.to_string());
        if let Some(v) = self.sysctls.get(&k) {
            return v.clone();
        }
        let key2 = key.to_string();
        let v = match self.lab.host(host) {
            Ok(h) => {
                h.ns.run_async(move || netns::read_sysctl(&key2).ok())
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        };
        self.sysctls.insert(k, v.clone());
        v
    }

    /// The address a host has on an interface (the first one).
    async fn address_on(&mut self, host: &str, ifname: &str) -> Result<Option<Ipv4Addr>> {
        let Some(l) = self.link(host, ifname).await? else {
            return Ok(None);
        };
        Ok(self
            .addrs(host)
            .await?
            .iter()
            .find(|a| a.index == l.index)
            .map(|a| a.net.addr()))
    }

    async fn has_address(&mut self, host: &str, ip: Ipv4Addr) -> Result<bool> {
        Ok(self.addrs(host).await?.iter().any(|a| a.net.addr() == ip))
    }

    async fn explain(
        &mut self,
        from: &str,
        to: &str,
        proto: Proto,
        outcome: Outcome,
        size: Option<usize>,
    ) -> Result<Diagnosis> {
        let t = self.lab.topology().clone();
        self.bulk = if proto == Proto::Tcp { size } else { None };
        let dst = t
            .host(to)
            .map(|h| h.address())
            .ok_or_else(|| crate::Error::NotFound(format!("no host {to}")))?;
        let entry = self.entry.take();
        let src = match &entry {
            Some((_, _, s)) => *s,
            None => t
                .host(from)
                .map(|h| h.address())
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        let port = self.dport.or(t.probe.port(proto));
        let pkt = Pkt {
            src,
            dst,
            proto,
            sport: None,
            dport: port,
            icmp_type: (proto == Proto::Icmp).then_some(8),
            icmp_code: None,
            iif: None,
            oif: None,
            ct_new: true,
            len: if proto == Proto::Tcp {
                SMALL
            } else {
                size.unwrap_or(SMALL)
            },
            mark: Default::default(),
            dst_local: None,
        };
        let mut forward = Vec::new();
        let mut flow = Flow::default();
        pkt.mark.set(std::mem::take(&mut self.entry_mark));
        let (start, start_iif) = match &entry {
            Some((h, ifname, _)) => {
                let ix = self.link(h, ifname).await?.map(|l| l.index);
                (h.clone(), ix)
            }
            None => (from.to_string(), None),
        };
        let end = self
            .walk(
                &start,
                start_iif,
                pkt.clone(),
                true,
                &mut flow,
                &mut forward,
            )
            .await?;
        let mut reply = Vec::new();
        let culprit = match end {
            End::Broken(c) => c,
            End::Arrived => {
                self.reply_culprit(from, to, &pkt, src, &mut flow, &mut forward, &mut reply)
                    .await?
            }
        };
        Ok(Diagnosis {
            from: from.to_string(),
            to: to.to_string(),
            protocols: vec![proto],
            outcome,
            size,
            forward,
            reply,
            culprit,
            evidence: Vec::new(),
            notes: Vec::new(),
        })
    }
    /// The forward packet arrived: the reply, from the destination back to the address the
    /// packet arrived from, decides; if it arrives too, what netfault could not evaluate.
    #[allow(clippy::too_many_arguments)]
    async fn reply_culprit(
        &mut self,
        from: &str,
        to: &str,
        pkt: &Pkt,
        src: Ipv4Addr,
        flow: &mut Flow,
        forward: &mut [Hop],
        reply: &mut Vec<Hop>,
    ) -> Result<Culprit> {
        // The reply: from the destination back to the address the packet arrived from.
        let back_to = flow
            .snat
            .as_ref()
            .map(|m| m.2)
            .or(flow.untranslated.as_ref().map(|u| u.2))
            .or(flow.origin_src)
            .unwrap_or(src);
        let rpkt = Pkt {
            src: pkt.dst,
            dst: back_to,
            proto: pkt.proto,
            sport: pkt.dport,
            dport: None,
            icmp_type: (pkt.proto == Proto::Icmp).then_some(0),
            icmp_code: None,
            iif: None,
            oif: None,
            ct_new: false,
            len: pkt.len,
            mark: Default::default(),
            dst_local: None,
        };
        let mut rflow = Flow {
            snat: flow.snat.clone(),
            ..Default::default()
        };
        let end = self.walk(to, None, rpkt, false, &mut rflow, reply).await?;
        flow.uncertain.extend(rflow.uncertain);
        Ok(match end {
                End::Broken(c) => self.blame_untranslated(c, flow, forward),
                End::Arrived => match flow.uncertain.first() {
                    Some((h, at, rule)) => culprit(
                        h,
                        Component::Unexplained,
                        format!(
                            "every hop passes by routes, links and the rules netfault can evaluate; \
                             the verdict of {at} hangs on \"{rule}\", which it cannot"
                        ),
                    ),
                    None => culprit(
                        from,
                        Component::Unexplained,
                        "every hop passes in both directions by routes, links, neighbours, MTU and nft rules"
                            .to_string(),
                    ),
                },
            })
    }

    /// Replies to an untranslated pod address fail on a host outside the cluster: the node that
    /// let the packet out unmasqueraded is the culprit.
    fn blame_untranslated(&self, c: Culprit, flow: &Flow, forward: &mut [Hop]) -> Culprit {
        let t = self.lab.topology();
        let Some((node, uplink, pod_ip, at)) = &flow.untranslated else {
            return c;
        };
        if c.component != Component::Route || c.host == *node || t.pods().any(|(p, _)| p == c.host)
        {
            return c;
        }
        let cidr = t
            .host(node)
            .and_then(|h| h.as_node())
            .map(|n| n.pod_cidr.to_string())
            .unwrap_or_else(|| pod_ip.to_string());
        if let Some(h) = forward.get_mut(*at) {
            h.status = HopStatus::Fail;
            h.text = format!("postrouting: no masquerade for {cidr} leaving {uplink}");
        }
        culprit(
            node,
            Component::Masquerade,
            format!(
                "{node} sends {cidr} out of {uplink} unmasqueraded; {} cannot route replies to the pod address {pod_ip}",
                c.host
            ),
        )
    }

    /// Evaluates one hook; a drop or reject is the culprit, an undecidable rule a `?` hop.
    async fn hook(
        &mut self,
        host: &str,
        name: &str,
        pkt: &Pkt,
        hops: &mut Vec<Hop>,
        flow: &mut Flow,
    ) -> Result<std::result::Result<Vec<Nat>, Culprit>> {
        if !self.ruleset(host).await?.has_hook(name) {
            return Ok(Ok(Vec::new()));
        }
        let mut p = pkt.clone();
        p.dst_local = Some(self.has_address(host, pkt.dst).await?);
        let rs = self.ruleset(host).await?;
        let verdict = rs.evaluate(name, &p);
        pkt.mark.set(p.mark.get());
        match verdict {
            Verdict::Accept { nat } => Ok(Ok(nat)),
            Verdict::Drop { at, rule, reject } => {
                let what = if reject { "rejects" } else { "drops" };
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("{name}: {at} {what} it: {rule}"),
                ));
                // The policies' table: a NetworkPolicy isolates a pod and nothing allows this.
                if at.contains(crate::lab::k8s::POLICY_TABLE) {
                    let why = rule
                        .split_once("comment \"")
                        .map(|(_, c)| c.trim_end_matches('"').to_string())
                        .unwrap_or_else(|| rule.clone());
                    return Ok(Err(culprit(
                        host,
                        Component::Policy,
                        format!(
                            "{host} drops {} → {} {}{}: {why}, and no rule of it allows this",
                            pkt.src,
                            pkt.dst,
                            pkt.proto,
                            pkt.dport.map(|p| format!(" port {p}")).unwrap_or_default()
                        ),
                    )));
                }
                Ok(Err(culprit(
                    host,
                    Component::Filter,
                    format!(
                        "{host} {what} {} → {} {} in {name} ({at}): {rule}",
                        pkt.src, pkt.dst, pkt.proto
                    ),
                )))
            }
            Verdict::Uncertain { at, rule } => {
                hops.push(hop(
                    HopStatus::Unknown,
                    host,
                    format!("{name}: {at} may drop it: {rule}"),
                ));
                flow.uncertain.push((host.to_string(), at, rule));
                Ok(Ok(Vec::new()))
            }
        }
    }

    /// Follows a packet from `start` (arriving on `start_iif`, or sent by `start` itself) to its
    /// destination.
    async fn walk(
        &mut self,
        start: &str,
        start_iif: Option<u32>,
        mut pkt: Pkt,
        forward: bool,
        flow: &mut Flow,
        hops: &mut Vec<Hop>,
    ) -> Result<End> {
        let t = self.lab.topology().clone();
        let dir = if forward { "" } else { "reply " };
        let mut host = start.to_string();
        let mut iif = start_iif;
        let mut prev_route: Option<(String, String)> = None;
        // The sender must own the address it sends from.
        if start_iif.is_none() && !self.has_address(&host, pkt.src).await? {
            let c = self.source_missing(&host, &pkt, dir, hops).await?;
            return Ok(End::Broken(c));
        }
        for _ in 0..MAX_HOPS {
            let h = self.lab.host(&host)?;
            let handle = h.handle().clone();
            let in_name = match iif {
                Some(i) => Some(self.ifname(&host, i).await?),
                None => None,
            };
            if let Some(n) = &in_name {
                if let Some(c) = self.arrive(&host, n, forward, &mut pkt, flow, hops).await? {
                    return Ok(End::Broken(c));
                }
            }
            let lookup_src = if iif.is_some() { Some(pkt.src) } else { None };
            let r: Route = match netlink::route_get(&handle, pkt.dst, lookup_src, iif).await {
                Ok(r) => r,
                Err(e) => {
                    let c = self
                        .unroutable(
                            &host,
                            &pkt,
                            in_name.as_deref(),
                            prev_route.as_ref(),
                            &e,
                            dir,
                            hops,
                        )
                        .await?;
                    return Ok(End::Broken(c));
                }
            };
            // An unbound socket sends from the address the kernel's route prefers.
            if forward && iif.is_none() && host == start {
                if let Some(ps) = r.prefsrc {
                    pkt.src = ps;
                }
                flow.origin_src = Some(pkt.src);
            }
            if r.kind == "local" {
                if in_name.is_some() {
                    if let Err(c) = self.hook(&host, "input", &pkt, hops, flow).await? {
                        return Ok(End::Broken(c));
                    }
                } else if host == start && forward {
                    hops.push(hop(HopStatus::Ok, &host, format!("{} is local", pkt.dst)));
                }
                return Ok(End::Arrived);
            }
            if t.owner_of(pkt.dst).is_some_and(|o| o.name == host) {
                return Ok(End::Broken(self.not_local(&host, pkt.dst, hops)));
            }
            let oif = match r.oif {
                Some(o) => self.ifname(&host, o).await?,
                None => "?".to_string(),
            };
            pkt.oif = Some(oif.clone());
            if let Err(c) = self
                .leave_by(&host, in_name.as_deref(), &oif, &pkt, flow, hops)
                .await?
            {
                return Ok(End::Broken(c));
            }
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            hops.push(hop(
                HopStatus::Ok,
                &host,
                format!("{dir}route {}{via} dev {oif}", pkt.dst),
            ));
            // The egress interface must take the packet.
            if let Some(c) = self
                .egress_takes(&host, &oif, in_name.as_deref(), &mut pkt, hops)
                .await?
            {
                return Ok(End::Broken(c));
            }
            // Postrouting: filters and source NAT.
            if let Some(c) = self
                .postrouting(&host, &oif, forward, iif.is_some(), &mut pkt, flow, hops)
                .await?
            {
                return Ok(End::Broken(c));
            }
            let nexthop = r.gateway.unwrap_or(pkt.dst);
            prev_route = Some((host.clone(), format!("via {nexthop} dev {oif}")));
            match self.l2_next(&host, &oif, nexthop, &pkt, hops, flow).await? {
                Ok((next, next_iif)) => {
                    host = next;
                    // A packet crossing into another namespace loses its mark (veth scrubs it).
                    pkt.mark.set(0);
                    iif = Some(next_iif);
                }
                Err(c) => return Ok(End::Broken(c)),
            }
        }
        Ok(End::Broken(culprit(
            &host,
            Component::Route,
            format!(
                "more than {MAX_HOPS} hops towards {}: a routing loop",
                pkt.dst
            ),
        )))
    }
    /// A packet for `host`'s own address that the kernel does not call local: the address is
    /// missing.
    fn not_local(&self, host: &str, dst: Ipv4Addr, hops: &mut Vec<Hop>) -> Culprit {
        let planned = self.planned_iface_of(host, dst);
        let on = planned.map(|i| format!(" on {i}")).unwrap_or_default();
        hops.push(hop(
            HopStatus::Fail,
            host,
            format!("{dst} is not local: the address{on} is missing"),
        ));
        culprit(
            host,
            Component::Address,
            format!("{host} lacks its address {dst}{on}: packets for it are not delivered"),
        )
    }

    /// A packet leaving `host` by `oif`: forwarded (the forward hook) when it arrived on
    /// `in_name`, else sent (the output hook).
    async fn leave_by(
        &mut self,
        host: &str,
        in_name: Option<&str>,
        oif: &str,
        pkt: &Pkt,
        flow: &mut Flow,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<(), Culprit>> {
        let Some(n) = in_name else {
            return self
                .hook(host, "output", pkt, hops, flow)
                .await
                .map(|r| r.map(drop));
        };
        let fwd = self
            .sysctl(host, "net.ipv4.ip_forward")
            .await
            .unwrap_or_else(|| "?".into());
        hops.push(hop(
            HopStatus::Ok,
            host,
            format!("forward {n} → {oif} (ip_forward={fwd})"),
        ));
        self.hook(host, "forward", pkt, hops, flow)
            .await
            .map(|r| r.map(drop))
    }

    /// The route lookup at `host` failed: a host that does not route by design (a pod, an
    /// external host) was handed a packet to forward, so the previous hop's route is wrong; or
    /// what the failure says of `host` itself.
    #[allow(clippy::too_many_arguments)]
    async fn unroutable(
        &mut self,
        host: &str,
        pkt: &Pkt,
        in_name: Option<&str>,
        prev_route: Option<&(String, String)>,
        e: &netlink::RouteGetError,
        dir: &str,
        hops: &mut Vec<Hop>,
    ) -> Result<Culprit> {
        let t = self.lab.topology().clone();
        // A host that does not route by design (a pod, an external host) was
        // handed a packet to forward: the previous hop's route is wrong.
        let by_design = t.host(host).is_some_and(|h| h.as_node().is_none())
            && t.owner_of(pkt.dst).is_none_or(|o| o.name != host);
        if let (Some(n), Some((prev, route)), true) = (
            in_name,
            prev_route,
            by_design && e.errno == libc::EHOSTUNREACH,
        ) {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("forward {n} → {}: refused ({host} does not route)", pkt.dst),
            ));
            return Ok(culprit(
                prev,
                Component::Route,
                format!(
                    "{prev} sends {} {route}: {host} is no router and drops it",
                    pkt.dst
                ),
            ));
        }
        let (c, text) = self
            .route_failure(host, pkt, in_name, e.errno, &e.message, dir)
            .await?;
        hops.push(hop(HopStatus::Fail, host, text));
        Ok(c)
    }

    /// The sender must own the address it sends from: what is missing, for a sender that
    /// does not.
    async fn source_missing(
        &mut self,
        host: &str,
        pkt: &Pkt,
        dir: &str,
        hops: &mut Vec<Hop>,
    ) -> Result<Culprit> {
        let planned = self.planned_iface_of(host, pkt.src);
        if let Some(dev) = &planned {
            if self.link(host, dev).await?.is_none() {
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("{dir}{dev} is missing (and {} with it)", pkt.src),
                ));
                return Ok(culprit(
                    host,
                    Component::Link,
                    format!(
                        "{host} has no {dev}: its address {} and its routes went with it",
                        pkt.src
                    ),
                ));
            }
        }
        let on = planned.map(|i| format!(" on {i}")).unwrap_or_default();
        hops.push(hop(
            HopStatus::Fail,
            host,
            format!("{dir}source {}{on} is missing", pkt.src),
        ));
        Ok(culprit(
            host,
            Component::Address,
            format!("{host} lacks its address {}{on}", pkt.src),
        ))
    }

    /// A packet arriving at `host` on `n`: conntrack undoes this flow's source translation, the
    /// interface must be up, and prerouting must let it pass.
    async fn arrive(
        &mut self,
        host: &str,
        n: &str,
        forward: bool,
        pkt: &mut Pkt,
        flow: &mut Flow,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<Culprit>> {
        // Conntrack undoes the source translation of this flow before routing.
        if let Some((nat_host, orig, translated)) = &flow.snat {
            if !forward && nat_host == host && pkt.dst == *translated {
                hops.push(hop(
                    HopStatus::Ok,
                    host,
                    format!("conntrack: {translated} → {orig} (undoes the masquerade)"),
                ));
                pkt.dst = *orig;
            }
        }
        let in_link = self.link(host, n).await?;
        if !in_link.as_ref().is_some_and(|l| l.admin_up) {
            hops.push(hop(HopStatus::Fail, host, format!("{n} is down")));
            return Ok(Some(culprit(
                host,
                Component::Link,
                format!("{host} {n} is administratively down"),
            )));
        }
        pkt.iif = Some(n.to_string());
        pkt.oif = None;
        if let Err(c) = self.hook(host, "prerouting", pkt, hops, flow).await? {
            return Ok(Some(c));
        }
        Ok(None)
    }

    /// The egress interface must take the packet: no larger than its MTU (DF is set), and for a
    /// bulk transfer, not shaped below what the probe's time allows.
    async fn egress_takes(
        &mut self,
        host: &str,
        oif: &str,
        in_name: Option<&str>,
        pkt: &mut Pkt,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<Culprit>> {
        let out = self.link(host, oif).await?;
        if let Some(l) = &out {
            // A bulk transfer sends segments as large as the sender's interface allows.
            if self.bulk.is_some() && in_name.is_none() {
                pkt.len = l.mtu as usize;
            }
            if (pkt.len as u32) > l.mtu {
                let mut why = String::new();
                if in_name.is_some() {
                    // A router answers with ICMP fragmentation-needed, unless that is dropped.
                    let icmp = Pkt {
                        src: pkt.dst,
                        dst: pkt.src,
                        proto: Proto::Icmp,
                        sport: None,
                        dport: None,
                        icmp_type: Some(3),
                        icmp_code: Some(4),
                        iif: None,
                        oif: in_name.map(str::to_string),
                        ct_new: false,
                        len: 576,
                        mark: Default::default(),
                        dst_local: None,
                    };
                    let rs = self.ruleset(host).await?;
                    for hk in ["output", "postrouting"] {
                        if let Verdict::Drop { at, rule, .. } = rs.evaluate(hk, &icmp) {
                            why = format!(", and the ICMP fragmentation-needed it would send back is dropped in {hk} ({at}: {rule})");
                            break;
                        }
                    }
                }
                hops.push(hop(
                    HopStatus::Fail,
                    host,
                    format!("{oif} mtu {} < {}-byte packet (DF){why}", l.mtu, pkt.len),
                ));
                return Ok(Some(culprit(
                    host,
                    Component::Mtu,
                    format!(
                        "{host} {oif} has mtu {}: {}-byte packets with DF set cannot leave{why}",
                        l.mtu, pkt.len
                    ),
                )));
            }
            if let Some(bytes) = self.bulk {
                let h = self.lab.host(host)?.handle().clone();
                if let Ok(Some((kind, Some(rate)))) = netlink::root_qdisc(&h, l.index).await {
                    let secs = (bytes as f64 * 8.0) / rate as f64;
                    let budget = self.lab.topology().probe.timeout_ms as f64 / 1000.0;
                    if secs > budget {
                        hops.push(hop(
                            HopStatus::Fail,
                            host,
                            format!(
                                "{oif} is shaped to {} ({kind}): {bytes} bytes need {secs:.1} s",
                                rate_text(rate)
                            ),
                        ));
                        return Ok(Some(culprit(
                            host,
                            Component::Link,
                            format!(
                                "{host} {oif} is shaped to {} by a {kind} qdisc: a {bytes}-byte transfer needs {secs:.1} s, more than the probe's {budget:.1} s",
                                rate_text(rate)
                            ),
                        )));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Postrouting: its filters, and source NAT (noting the flow's translation, or that a pod's
    /// packet leaves the cluster untranslated).
    #[allow(clippy::too_many_arguments)]
    async fn postrouting(
        &mut self,
        host: &str,
        oif: &str,
        forward: bool,
        forwarded: bool,
        pkt: &mut Pkt,
        flow: &mut Flow,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<Culprit>> {
        let t = self.lab.topology().clone();
        let nat = match self.hook(host, "postrouting", pkt, hops, flow).await? {
            Ok(n) => n,
            Err(c) => return Ok(Some(c)),
        };
        let mut translated = None;
        for n in nat {
            match n {
                Nat::Masquerade => translated = self.address_on(host, oif).await?,
                Nat::Snat(a) => translated = Some(a),
                Nat::Dnat(..) => {}
            }
        }
        match translated {
            Some(a) if a != pkt.src => {
                hops.push(hop(
                    HopStatus::Ok,
                    host,
                    format!("postrouting: masquerade {} → {a} leaving {oif}", pkt.src),
                ));
                if forward {
                    flow.snat = Some((host.to_string(), pkt.src, a));
                }
                pkt.src = a;
            }
            _ => {
                let is_uplink = t
                    .host(host)
                    .and_then(|x| x.as_node())
                    .is_some_and(|n| n.uplink_ifname == oif);
                let from_pod = t.pods().any(|(_, p)| p.ip == pkt.src);
                let leaves_cluster = !t.cluster.cidr.contains(&pkt.dst);
                if forward && forwarded && is_uplink && from_pod && leaves_cluster {
                    flow.untranslated =
                        Some((host.to_string(), oif.to_string(), pkt.src, hops.len()));
                    hops.push(hop(
                        HopStatus::Ok,
                        host,
                        format!("postrouting: {} leaves {oif} untranslated", pkt.src),
                    ));
                }
            }
        }
        Ok(None)
    }

    /// The interface the plan puts `ip` on, on `host`.
    fn planned_iface_of(&self, host: &str, ip: Ipv4Addr) -> Option<String> {
        self.lab
            .plan()
            .host(host)?
            .addresses
            .iter()
            .find(|(_, net)| net.addr() == ip)
            .map(|(dev, _)| dev.clone())
    }

    /// Why the kernel refused a route lookup, as a culprit and a hop line.
    async fn route_failure(
        &mut self,
        host: &str,
        pkt: &Pkt,
        in_name: Option<&str>,
        errno: i32,
        message: &str,
        dir: &str,
    ) -> Result<(Culprit, String)> {
        let dst = pkt.dst;
        // Arrived where the address should be, and it is not there.
        if self
            .lab
            .topology()
            .owner_of(dst)
            .is_some_and(|o| o.name == host)
            && !self.has_address(host, dst).await?
        {
            let on = self
                .planned_iface_of(host, dst)
                .map(|i| format!(" on {i}"))
                .unwrap_or_default();
            return Ok((
                culprit(
                    host,
                    Component::Address,
                    format!("{host} lacks its address {dst}{on}: packets for it are not delivered"),
                ),
                format!("{dir}{dst} is not local: the address{on} is missing"),
            ));
        }
        if let Some(n) = in_name {
            if let Some(r) = self.refused_by_router(host, n, pkt, errno, dir).await? {
                return Ok(r);
            }
        }
        if errno == libc::ENETUNREACH {
            if let Some(r) = self.route_lost_with_address(host, dst, dir).await? {
                return Ok(r);
            }
            if let Some(r) = self.planned_route_gone(host, dst, dir).await? {
                return Ok(r);
            }
            if in_name.is_none() {
                if let Some(missing) = self.missing_planned_links(host).await? {
                    return Ok((
                        culprit(
                            host,
                            Component::Link,
                            format!("{host} has no {missing}: its routes through it are gone"),
                        ),
                        format!("{dir}route {dst}: no route ({missing} is missing)"),
                    ));
                }
            }
        }
        let what = match errno {
            libc::ENETUNREACH => "no route",
            libc::EHOSTUNREACH => "an unreachable route",
            libc::EACCES => "a prohibit route",
            libc::EINVAL => "a blackhole route (or a rejected source)",
            _ => message,
        };
        Ok((
            culprit(
                host,
                Component::Route,
                format!("{host} has {what} to {dst}"),
            ),
            format!("{dir}route {dst}: {what}"),
        ))
    }

    /// A router that will not pass a packet arriving on `n`: forwarding off (the same lookup
    /// without iif succeeds), or strict rp_filter.
    async fn refused_by_router(
        &mut self,
        host: &str,
        n: &str,
        pkt: &Pkt,
        errno: i32,
        dir: &str,
    ) -> Result<Option<(Culprit, String)>> {
        let dst = pkt.dst;
        if errno == libc::EHOSTUNREACH {
            // The same lookup without iif succeeds when the host routes but will not forward.
            let h = self.lab.host(host)?.handle().clone();
            if netlink::route_get(&h, dst, None, None).await.is_ok() {
                let all = self
                    .sysctl(host, "net.ipv4.ip_forward")
                    .await
                    .unwrap_or_else(|| "?".into());
                let per_if = self
                    .sysctl(host, &format!("net/ipv4/conf/{n}/forwarding"))
                    .await
                    .unwrap_or_else(|| "?".into());
                let why = if all == "0" {
                    "net.ipv4.ip_forward = 0".to_string()
                } else {
                    format!("net.ipv4.conf.{n}.forwarding = {per_if}")
                };
                return Ok(Some((
                    culprit(
                        host,
                        Component::Forwarding,
                        format!("{host} does not forward packets arriving on {n} ({why})"),
                    ),
                    format!("forward {n} → {dst}: refused ({why})"),
                )));
            }
        }
        if errno == libc::EINVAL {
            let all = self.sysctl(host, "net.ipv4.conf.all.rp_filter").await;
            let per_if = self
                .sysctl(host, &format!("net/ipv4/conf/{n}/rp_filter"))
                .await;
            let strict = |v: &Option<String>| v.as_deref() == Some("1");
            if strict(&all) || strict(&per_if) {
                let s = pkt.src;
                return Ok(Some((
                    culprit(
                        host,
                        Component::RpFilter,
                        format!("{host} drops {s} arriving on {n}: strict rp_filter, and its route back to {s} leaves by another interface"),
                    ),
                    format!("{dir}from {s} on {n}: rejected by rp_filter"),
                )));
            }
        }
        Ok(None)
    }

    /// A route that went away with an address, an interface or its link.
    async fn route_lost_with_address(
        &mut self,
        host: &str,
        dst: Ipv4Addr,
        dir: &str,
    ) -> Result<Option<(Culprit, String)>> {
        if let Some(plan) = self.lab.plan().host(host).cloned() {
            for (dev, net) in &plan.addresses {
                if !net.trunc().contains(&dst) {
                    continue;
                }
                match self.link(host, dev).await? {
                    None => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Link,
                                format!(
                                    "{host} has no {dev}: the route to {} went with it",
                                    net.trunc()
                                ),
                            ),
                            format!("{dir}route {dst}: no route ({dev} is missing)"),
                        )))
                    }
                    Some(l) if !l.admin_up => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Link,
                                format!(
                                    "{host} {dev} is down: its route to {} is gone",
                                    net.trunc()
                                ),
                            ),
                            format!("{dir}route {dst}: no route ({dev} is down)"),
                        )))
                    }
                    Some(_) => {
                        if !self.has_address(host, net.addr()).await? {
                            return Ok(Some((
                                culprit(
                                    host,
                                    Component::Address,
                                    format!(
                                        "{host} {dev} lacks {net}: the route to {} went with it",
                                        net.trunc()
                                    ),
                                ),
                                format!("{dir}route {dst}: no route ({net} missing on {dev})"),
                            )));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// A planned route towards `dst`: its device missing or down, or the route itself gone.
    async fn planned_route_gone(
        &mut self,
        host: &str,
        dst: Ipv4Addr,
        dir: &str,
    ) -> Result<Option<(Culprit, String)>> {
        if let Some(plan) = self.lab.plan().host(host).cloned() {
            if let Some(r) = plan.routes.iter().find(|r| r.dst.contains(&dst)) {
                let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                let dst_s = if r.dst.prefix_len() == 0 {
                    "default".to_string()
                } else {
                    r.dst.to_string()
                };
                match self.link(host, &r.dev).await? {
                    None => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Link,
                                format!(
                                    "{host} has no {}: its route {dst_s}{via} went with it",
                                    r.dev
                                ),
                            ),
                            format!("{dir}route {dst}: no route ({} is missing)", r.dev),
                        )))
                    }
                    Some(l) if !l.admin_up => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Link,
                                format!("{host} {} is down: its route {dst_s}{via} is gone", r.dev),
                            ),
                            format!("{dir}route {dst}: no route ({} is down)", r.dev),
                        )))
                    }
                    Some(_) => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Route,
                                format!("{host} lacks its route {dst_s}{via} dev {}", r.dev),
                            ),
                            format!(
                                "{dir}route {dst}: no route ({dst_s}{via} dev {} is missing)",
                                r.dev
                            ),
                        )))
                    }
                }
            }
        }
        Ok(None)
    }

    async fn missing_planned_links(&mut self, host: &str) -> Result<Option<String>> {
        let Some(plan) = self.lab.plan().host(host) else {
            return Ok(None);
        };
        let planned: Vec<String> = plan.ifaces.iter().map(|i| i.name.clone()).collect();
        let live = self.links(host).await?;
        Ok(planned
            .into_iter()
            .find(|n| !live.iter().any(|l| &l.name == n)))
    }

    /// Crosses the layer-2 segment behind `oif` to the host that owns `nexthop`: through a veth,
    /// and through any bridge on the way (a node's cni0, the uplink switch). Returns that host and
    /// the interface the packet arrives on there (the bridge, for a bridge port).
    async fn l2_next(
        &mut self,
        host: &str,
        oif: &str,
        nexthop: Ipv4Addr,
        pkt: &Pkt,
        hops: &mut Vec<Hop>,
        flow: &mut Flow,
    ) -> Result<std::result::Result<(String, u32), Culprit>> {
        let Some(out) = self.link(host, oif).await? else {
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!("{host} routes through {oif}, which does not exist"),
            )));
        };
        if !out.admin_up {
            hops.push(hop(HopStatus::Fail, host, format!("{oif} is down")));
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!("{host} {oif} is administratively down"),
            )));
        }
        if out.kind.as_deref() == Some("vxlan") {
            return Box::pin(self.overlay(host, &out, nexthop, pkt, hops, flow)).await;
        }
        let target = match self.segment_target(host, oif, nexthop, hops).await {
            Ok(t) => t,
            Err(c) => return Ok(Err(c)),
        };
        let neighbour = self
            .neighbours(host)
            .await?
            .iter()
            .find(|n| n.index == out.index && n.ip == nexthop)
            .cloned();
        let is_bridge = matches!(
            self.lab
                .plan()
                .host(host)
                .and_then(|p| p.iface(oif))
                .map(|i| &i.kind),
            Some(IfaceKind::Bridge)
        ) || out.kind.as_deref() == Some("bridge");
        // Leaving a bridge: first pick the port towards the target.
        let mut cur_host = host.to_string();
        let mut cur_port = oif.to_string();
        let mut text = oif.to_string();
        if is_bridge {
            match self.bridge_port(host, oif, &target, hops).await? {
                Ok(p) => {
                    text = format!("{oif} port {p}");
                    cur_port = p;
                }
                Err(c) => return Ok(Err(c)),
            }
        }
        for _ in 0..4 {
            // Across the veth.
            let (far_host, far, far_master) = match self
                .cross_veth(&cur_host, &cur_port, &text, pkt, hops)
                .await?
            {
                Ok(x) => x,
                Err(c) => return Ok(Err(c)),
            };
            if far_host == target {
                // The neighbour entry the sender used must name the interface holding the
                // next hop's address (the bridge, for an address on a bridge).
                // ptp puts the same gateway address on every host-side veth: the holder that
                // counts is the one on this segment.
                if let Some(n) = &neighbour {
                    if let Some(c) = self
                        .wrong_neighbour_mac(host, oif, nexthop, n, &far_host, &far, hops)
                        .await?
                    {
                        return Ok(Err(c));
                    }
                }
                // A packet arriving on a bridge port is routed by the bridge.
                return Ok(Ok((far_host, far.master.unwrap_or(far.index))));
            }
            // Not there yet: through the far side's bridge, towards the target.
            let Some(bridge) = far_master else {
                hops.push(hop(
                    HopStatus::Fail,
                    &far_host,
                    format!("{nexthop} is not on this segment"),
                ));
                return Ok(Err(culprit(
                    host,
                    Component::Route,
                    format!(
                        "{host} expects {nexthop} ({target}) behind {oif}, but {far_host} is there"
                    ),
                )));
            };
            if let Some(c) = self
                .through_bridge(&far_host, &bridge, pkt, hops, flow)
                .await?
            {
                return Ok(Err(c));
            }
            match self.bridge_port(&far_host, &bridge, &target, hops).await? {
                Ok(p) => {
                    text = format!("{bridge} port {p}");
                    cur_host = far_host;
                    cur_port = p;
                }
                Err(c) => return Ok(Err(c)),
            }
        }
        Ok(Err(culprit(
            host,
            Component::Unexplained,
            format!("{host}: too many bridges towards {target}"),
        )))
    }
    /// The host that owns `nexthop` on the segment behind `oif`: a routed pod's gateway is no
    /// host's address, and the node answers for it by proxy ARP.
    async fn segment_target(
        &mut self,
        host: &str,
        oif: &str,
        nexthop: Ipv4Addr,
        hops: &mut Vec<Hop>,
    ) -> std::result::Result<String, Culprit> {
        let t = self.lab.topology().clone();
        // A routed pod's gateway is no host's address: the node answers for it by proxy ARP.
        let routed_gw = match (&t.cluster.network, t.host(host).and_then(|h| h.as_pod())) {
            (crate::topology::Network::Routed { gateway }, Some(_)) if *gateway == nexthop => {
                self.veth_peer(host, oif)
            }
            _ => None,
        };
        if let Some((node, node_if)) = &routed_gw {
            if let Some(c) = self.proxy_arp_off(host, node, node_if, nexthop, hops).await {
                return Err(c);
            }
        }
        let owner = match &routed_gw {
            Some((node, _)) => Some(node.clone()),
            None => t.owner_of(nexthop).map(|h| h.name.clone()),
        };
        owner.ok_or_else(|| {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("next hop {nexthop}: no lab host has it"),
            ));
            culprit(
                host,
                Component::Route,
                format!("{host} sends to {nexthop} via {oif}, an address no host in the lab has"),
            )
        })
    }

    /// A routed pod's gateway is answered by its node's proxy ARP: the culprit if that is off.
    async fn proxy_arp_off(
        &mut self,
        host: &str,
        node: &str,
        node_if: &str,
        nexthop: Ipv4Addr,
        hops: &mut Vec<Hop>,
    ) -> Option<Culprit> {
        let proxy = self
            .sysctl(node, &format!("net/ipv4/conf/{node_if}/proxy_arp"))
            .await;
        let all = self.sysctl(node, "net.ipv4.conf.all.proxy_arp").await;
        if proxy.as_deref() != Some("1") && all.as_deref() != Some("1") {
            hops.push(hop(
                HopStatus::Fail,
                node,
                format!(
                    "{node_if}: proxy_arp = {}: nobody answers ARP for {nexthop}",
                    proxy.unwrap_or_else(|| "?".into())
                ),
            ));
            return Some(culprit(
                node,
                Component::Neighbour,
                format!("{node} {node_if} has proxy_arp off: {host}'s ARP for its gateway {nexthop} gets no answer"),
            ));
        }
        None
    }

    /// Crosses the veth behind `cur_host`'s `cur_port` (`text` names it for the hop): its far end
    /// must exist, be up, have carrier, fit the packet, and be a port where the plan says.
    /// Returns the far host, its link and the bridge it is a port of.
    async fn cross_veth(
        &mut self,
        cur_host: &str,
        cur_port: &str,
        text: &str,
        pkt: &Pkt,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<(String, Link, Option<String>), Culprit>> {
        let Some((far_host, far_name)) = self.veth_peer(cur_host, cur_port) else {
            return Ok(Err(culprit(
                cur_host,
                Component::Unexplained,
                format!("{cur_host} {cur_port} leads nowhere this walk knows"),
            )));
        };
        let Some(far) = self.link(&far_host, &far_name).await? else {
            hops.push(hop(
                HopStatus::Fail,
                &far_host,
                format!("{far_name} is missing"),
            ));
            return Ok(Err(culprit(
                &far_host,
                Component::Link,
                format!("{far_host} has no {far_name}"),
            )));
        };
        if !far.admin_up {
            hops.push(hop(
                HopStatus::Fail,
                &far_host,
                format!("{far_name} is down"),
            ));
            return Ok(Err(culprit(
                &far_host,
                Component::Link,
                format!("{far_host} {far_name} is administratively down"),
            )));
        }
        let near = self.link(cur_host, cur_port).await?;
        if !near.as_ref().is_some_and(|l| l.lower_up) || !far.lower_up {
            hops.push(hop(
                HopStatus::Fail,
                cur_host,
                format!("{cur_port} ⇄ {far_host} {far_name}: no carrier"),
            ));
            return Ok(Err(culprit(
                cur_host,
                Component::Link,
                format!("{cur_host} {cur_port} ⇄ {far_host} {far_name} has no carrier"),
            )));
        }
        if (pkt.len as u32) > far.mtu {
            let near_mtu = near.as_ref().map(|l| l.mtu).unwrap_or(0);
            hops.push(hop(
                HopStatus::Fail,
                &far_host,
                format!("{far_name} mtu {} < {}-byte packet from {cur_host} {cur_port} (mtu {near_mtu})", far.mtu, pkt.len),
            ));
            // The side that is out of line with the plan is the culprit.
            let sender_bigger = near_mtu > far.mtu;
            let (h, what) = if sender_bigger {
                (cur_host.to_string(), format!("{cur_host} {cur_port} has mtu {near_mtu}, above {far_host} {far_name}'s {}", far.mtu))
            } else {
                (
                    far_host.clone(),
                    format!("{far_host} {far_name} has mtu {}", far.mtu),
                )
            };
            return Ok(Err(culprit(
                &h,
                Component::Mtu,
                format!("{what}: {}-byte packets are dropped on the way", pkt.len),
            )));
        }
        let far_master = match far.master {
            Some(m) => Some(self.ifname(&far_host, m).await?),
            None => None,
        };
        let planned_master = self
            .lab
            .plan()
            .host(&far_host)
            .and_then(|p| p.iface(&far_name))
            .and_then(|i| i.master.clone());
        if planned_master.is_some() && far_master != planned_master {
            let now = far_master
                .as_ref()
                .map(|m| format!("attached to {m}"))
                .unwrap_or_else(|| "not attached to any bridge".into());
            let want = planned_master.unwrap_or_default();
            hops.push(hop(
                HopStatus::Fail,
                &far_host,
                format!("{far_name} is {now}, not a port of {want}"),
            ));
            return Ok(Err(culprit(
                &far_host,
                Component::Bridge,
                format!("{far_host} {far_name} is {now}, not a port of {want}"),
            )));
        }
        hops.push(hop(
            HopStatus::Ok,
            cur_host,
            format!(
                "{text} ⇄ {far_host} {far_name} (up{})",
                far_master
                    .as_ref()
                    .map(|m| format!(", master {m}"))
                    .unwrap_or_default()
            ),
        ));
        Ok(Ok((far_host, far, far_master)))
    }

    /// The neighbour entry the sender used must name the interface holding the next hop's
    /// address (the bridge, for an address on a bridge). ptp puts the same gateway address on
    /// every host-side veth: the holder that counts is the one on this segment.
    #[allow(clippy::too_many_arguments)]
    async fn wrong_neighbour_mac(
        &mut self,
        host: &str,
        oif: &str,
        nexthop: Ipv4Addr,
        n: &Neighbour,
        far_host: &str,
        far: &Link,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<Culprit>> {
        let holders: Vec<u32> = self
            .addrs(far_host)
            .await?
            .iter()
            .filter(|a| a.net.addr() == nexthop)
            .map(|a| a.index)
            .collect();
        let holder = holders
            .iter()
            .find(|&&ix| ix == far.index || Some(ix) == far.master)
            .or(holders.first())
            .copied();
        let want = match holder {
            Some(ix) => self
                .links(far_host)
                .await?
                .iter()
                .find(|l| l.index == ix)
                .and_then(|l| l.mac.clone()),
            None => None,
        };
        if let (Some(mac), Some(want)) = (&n.mac, want) {
            if *mac != want && n.state != "failed" && n.state != "incomplete" {
                let owner = self.mac_owner(mac).await?;
                let right = self.mac_owner(&want).await?;
                hops.push(hop(
                        HopStatus::Fail,
                        host,
                        format!("neighbour {nexthop} dev {oif} lladdr {owner} ({}), but {nexthop} is {right}", n.state),
                    ));
                return Ok(Some(culprit(
                        host,
                        Component::Neighbour,
                        format!("{host}'s neighbour entry for {nexthop} on {oif} points at {owner}, not {right}"),
                    )));
            }
        }
        Ok(None)
    }

    /// Through a bridge on the way: it must be up, and with br_netfilter on, bridged IPv4 crosses
    /// the bridge host's ip hooks.
    async fn through_bridge(
        &mut self,
        far_host: &str,
        bridge: &str,
        pkt: &Pkt,
        hops: &mut Vec<Hop>,
        flow: &mut Flow,
    ) -> Result<Option<Culprit>> {
        let bridge_link = self.link(far_host, bridge).await?;
        if !bridge_link.as_ref().is_some_and(|l| l.admin_up) {
            hops.push(hop(HopStatus::Fail, far_host, format!("{bridge} is down")));
            return Ok(Some(culprit(
                far_host,
                Component::Link,
                format!("{far_host} {bridge} is administratively down"),
            )));
        }
        // With br_netfilter on, bridged IPv4 crosses the bridge host's ip hooks.
        if far_host != SWITCH_HOST
            && self
                .sysctl(far_host, "net.bridge.bridge-nf-call-iptables")
                .await
                .as_deref()
                == Some("1")
        {
            let mut bp = pkt.clone();
            bp.iif = Some(bridge.to_string());
            bp.oif = Some(bridge.to_string());
            for hk in ["prerouting", "forward", "postrouting"] {
                if let Err(c) = self.hook(far_host, hk, &bp, hops, flow).await? {
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    /// Which lab interface owns a MAC, as `host:ifname`.
    async fn mac_owner(&mut self, mac: &[u8]) -> Result<String> {
        let hosts: Vec<String> = self.lab.hosts().map(|h| h.name.clone()).collect();
        for h in hosts {
            if let Some(l) = self
                .links(&h)
                .await?
                .iter()
                .find(|l| l.mac.as_deref() == Some(mac))
            {
                return Ok(format!("{h}:{}", l.name));
            }
        }
        Ok("a MAC no lab interface has".to_string())
    }

    /// Crosses a vxlan overlay: the neighbour and FDB entries for the remote VTEP, both
    /// devices' VNI and port, then the encapsulated packet over the underlay (walked like any
    /// packet: routes, links, filters), arriving on the remote vxlan device.
    async fn overlay(
        &mut self,
        host: &str,
        out: &Link,
        nexthop: Ipv4Addr,
        pkt: &Pkt,
        hops: &mut Vec<Hop>,
        flow: &mut Flow,
    ) -> Result<std::result::Result<(String, u32), Culprit>> {
        let t = self.lab.topology().clone();
        let dev = out.name.clone();
        let Some(target) = t.owner_of(nexthop).map(|h| h.name.clone()) else {
            return overlay_fail(
                hops,
                host,
                format!("{dev}: next hop {nexthop} is no node's VTEP address"),
                format!(
                    "{host} routes through {dev} to {nexthop}, which is no node's VTEP address"
                ),
            );
        };
        let Some(remote) = self.link(&target, &dev).await? else {
            hops.push(hop(HopStatus::Fail, &target, format!("{dev} is missing")));
            return Ok(Err(culprit(
                &target,
                Component::Link,
                format!("{target} has no {dev}: its end of the overlay is gone"),
            )));
        };
        if !remote.admin_up {
            hops.push(hop(HopStatus::Fail, &target, format!("{dev} is down")));
            return Ok(Err(culprit(
                &target,
                Component::Link,
                format!("{target} {dev} is administratively down"),
            )));
        }
        let vtep = match self
            .vtep_of(host, out, nexthop, &target, &remote, hops)
            .await?
        {
            Ok(v) => v,
            Err(c) => return Ok(Err(c)),
        };
        if let Some(c) = vni_or_port_mismatch(&t, host, out, &target, &remote, hops) {
            return Ok(Err(c));
        }
        let field = |l: &Link, k: &str| {
            l.details
                .iter()
                .find_map(|d| d.strip_prefix(k).map(|x| x.to_string()))
        };
        let port = field(out, "dstport ").and_then(|p| p.parse::<u16>().ok());
        let local = field(out, "local ")
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        hops.push(hop(
            HopStatus::Ok,
            host,
            format!(
                "{dev} encapsulates for {target}: VTEP {vtep}, udp/{}",
                port.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
            ),
        ));
        // The encapsulated packet crosses the underlay like any other.
        let outer = Pkt {
            src: local,
            dst: vtep,
            proto: crate::topology::Proto::Udp,
            sport: None,
            dport: port,
            icmp_type: None,
            icmp_code: None,
            iif: None,
            oif: None,
            ct_new: true,
            len: pkt.len + 50,
            mark: Default::default(),
            dst_local: None,
        };
        let mut under = Vec::new();
        let mut uflow = Flow::default();
        let end = Box::pin(self.walk(host, None, outer, true, &mut uflow, &mut under)).await?;
        flow.uncertain.extend(uflow.uncertain);
        for mut h in under {
            h.text = format!("underlay: {}", h.text);
            hops.push(h);
        }
        match end {
            End::Arrived => {
                hops.push(hop(
                    HopStatus::Ok,
                    &target,
                    format!(
                        "{dev} decapsulates (VNI {})",
                        field(&remote, "vni ").unwrap_or_default()
                    ),
                ));
                Ok(Ok((target, remote.index)))
            }
            End::Broken(c) => Ok(Err(c)),
        }
    }
    /// The VTEP a packet for `target` is sent to: the neighbour entry must map the remote VTEP
    /// address to the remote device's MAC, and the FDB send that MAC to the remote node's VTEP
    /// address.
    async fn vtep_of(
        &mut self,
        host: &str,
        out: &Link,
        nexthop: Ipv4Addr,
        target: &str,
        remote: &Link,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<Ipv4Addr, Culprit>> {
        let t = self.lab.topology().clone();
        let dev = out.name.clone();
        // The neighbour entry: the remote VTEP address must map to the remote device's MAC.
        let neigh = self
            .neighbours(host)
            .await?
            .iter()
            .find(|n| n.index == out.index && n.ip == nexthop)
            .cloned();
        let Some(mac) = neigh.as_ref().and_then(|n| n.mac.clone()).filter(|_| {
            neigh
                .as_ref()
                .is_some_and(|n| n.state != "failed" && n.state != "incomplete")
        }) else {
            return overlay_fail(
                hops,
                host,
                format!("{dev}: no neighbour entry for {nexthop} ({target}'s VTEP)"),
                format!("{host} has no neighbour entry for {nexthop} on {dev}: it cannot address {target}'s VTEP"),
            );
        };
        if Some(&mac) != remote.mac.as_ref() {
            let owner = self.mac_owner(&mac).await?;
            return overlay_fail(
                hops,
                host,
                format!("{dev}: neighbour {nexthop} lladdr {owner}, but {target} {dev} has another MAC"),
                format!("{host}'s neighbour entry for {nexthop} on {dev} points at {owner}, not {target}'s VTEP"),
            );
        }
        // The FDB entry: that MAC must be sent to the remote node's VTEP address.
        let remote_local = remote
            .details
            .iter()
            .find_map(|d| d.strip_prefix("local "))
            .and_then(|a| a.parse::<Ipv4Addr>().ok());
        let fdb = {
            let h = self.lab.host(host)?.handle().clone();
            netlink::fdb(&h)
                .await
                .map_err(|e| nl_error(host, "listing the fdb", e))?
        };
        let entry = fdb
            .iter()
            .find(|e| e.index == out.index && e.mac == mac && e.dst.is_some());
        let Some(vtep) = entry.and_then(|e| e.dst) else {
            return overlay_fail(
                hops,
                host,
                format!("{dev}: no FDB entry for {target}'s VTEP MAC"),
                format!("{host} {dev} has no FDB entry for {target}'s VTEP: it does not know where to send encapsulated packets"),
            );
        };
        if Some(vtep) != remote_local {
            let to = t
                .owner_of(vtep)
                .map(|h| h.name.clone())
                .unwrap_or_else(|| "no host".into());
            return overlay_fail(
                hops,
                host,
                format!("{dev}: FDB sends {target}'s VTEP MAC to {vtep} ({to})"),
                format!(
                    "{host} {dev}'s FDB entry for {target}'s VTEP points at {vtep} ({to}), not {}",
                    remote_local
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "?".into())
                ),
            );
        }
        Ok(Ok(vtep))
    }

    /// The port of `bridge` on `host` that leads to `target` (the plan's wiring), checked live.
    async fn bridge_port(
        &mut self,
        host: &str,
        bridge: &str,
        target: &str,
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<String, Culprit>> {
        let plan = self.lab.plan().host(host).cloned();
        let port = plan.as_ref().and_then(|p| {
            p.ifaces.iter().find(|i| {
                i.master.as_deref() == Some(bridge)
                    && matches!(&i.kind, IfaceKind::Veth { peer_host, .. } if peer_host == target || (peer_host == SWITCH_HOST && host != SWITCH_HOST))
            })
        });
        let Some(port) = port.map(|p| p.name.clone()) else {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("{bridge}: no port leads to {target}"),
            ));
            return Ok(Err(culprit(
                host,
                Component::Bridge,
                format!("{host} {bridge} has no port towards {target}"),
            )));
        };
        let Some(p) = self.link(host, &port).await? else {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("{bridge} port {port} is missing"),
            ));
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!("{host} has no {port}: the veth to {target} is gone"),
            )));
        };
        let bridge_ix = self.link(host, bridge).await?.map(|l| l.index);
        if p.master.is_none() || p.master != bridge_ix {
            let now = match p.master {
                Some(m) => format!("attached to {}", self.ifname(host, m).await?),
                None => "not attached to any bridge".to_string(),
            };
            hops.push(hop(HopStatus::Fail, host, format!("{port} is {now}")));
            return Ok(Err(culprit(
                host,
                Component::Bridge,
                format!("{host} {port} is {now}, not a port of {bridge}"),
            )));
        }
        // A static FDB entry can send the target's MAC out of another port.
        if let Some((th, ti)) = self.veth_peer(host, &port) {
            let mac = if th == SWITCH_HOST {
                None
            } else {
                self.link(&th, &ti).await?.and_then(|l| l.mac)
            };
            if let (Some(mac), Some(bix)) = (mac, bridge_ix) {
                let fdb = {
                    let h = self.lab.host(host)?.handle().clone();
                    netlink::fdb(&h)
                        .await
                        .map_err(|e| nl_error(host, "listing the fdb", e))?
                };
                let wrong = fdb.iter().find(|e| {
                    e.mac == mac
                        && e.master == Some(bix)
                        && !e.is_self
                        && e.state == "static"
                        && e.index != p.index
                });
                if let Some(e) = wrong {
                    let out = self.ifname(host, e.index).await?;
                    hops.push(hop(
                        HopStatus::Fail,
                        host,
                        format!("{bridge} fdb: {th} {ti}'s MAC → {out} (static), not {port}"),
                    ));
                    return Ok(Err(culprit(
                        host,
                        Component::Bridge,
                        format!("{host} {bridge} has a static FDB entry sending {th} {ti}'s MAC out of {out} instead of {port}"),
                    )));
                }
            }
        }
        if !p.admin_up {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!("{bridge} port {port} is down"),
            ));
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!("{host} {port} (the veth to {target}) is administratively down"),
            )));
        }
        Ok(Ok(port))
    }

    /// The other end of a veth, from the plan, as (host, ifname).
    fn veth_peer(&self, host: &str, ifname: &str) -> Option<(String, String)> {
        self.lab
            .plan()
            .host(host)
            .and_then(|p| p.iface(ifname))
            .and_then(|i| match &i.kind {
                IfaceKind::Veth {
                    peer_host,
                    peer_name,
                    ..
                } => Some((peer_host.clone(), peer_name.clone())),
                IfaceKind::Bridge | IfaceKind::Vxlan { .. } => None,
            })
    }
}

fn rate_text(bits: u64) -> String {
    if bits >= 1_000_000 && bits.is_multiple_of(1_000_000) {
        format!("{}mbit", bits / 1_000_000)
    } else if bits >= 1000 && bits.is_multiple_of(1000) {
        format!("{}kbit", bits / 1000)
    } else {
        format!("{bits}bit")
    }
}

/// Both ends of an overlay must speak the same VNI on the same UDP port: the end that differs
/// from the fixture is the culprit.
fn vni_or_port_mismatch(
    t: &crate::topology::Topology,
    host: &str,
    out: &Link,
    target: &str,
    remote: &Link,
    hops: &mut Vec<Hop>,
) -> Option<Culprit> {
    let dev = &out.name;
    let field = |l: &Link, k: &str| {
        l.details
            .iter()
            .find_map(|d| d.strip_prefix(k).map(|x| x.to_string()))
    };
    for (k, what) in [("vni ", "VNI"), ("dstport ", "UDP port")] {
        let (a, b) = (field(out, k), field(remote, k));
        if a != b {
            let planned = match (&t.cluster.network, k) {
                (crate::topology::Network::Vxlan(v), "vni ") => Some(v.vni.to_string()),
                (crate::topology::Network::Vxlan(v), _) => Some(v.port.to_string()),
                _ => None,
            };
            // The end that differs from the fixture is the culprit.
            let (culprit_host, theirs) = if b == planned {
                (host.to_string(), a.clone())
            } else {
                (target.to_string(), b.clone())
            };
            let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "?".into());
            let text = format!(
                "{dev}: {what} {} on {host}, {} on {target}",
                show(&a),
                show(&b)
            );
            hops.push(hop(HopStatus::Fail, &culprit_host, text));
            let summary = format!(
                "{culprit_host} {dev} uses {what} {}, the rest of the overlay {}",
                show(&theirs),
                show(&planned)
            );
            return Some(culprit(&culprit_host, Component::Overlay, summary));
        }
    }
    None
}

/// An overlay hop that fails: the hop, and the overlay as the culprit.
fn overlay_fail<T>(
    hops: &mut Vec<Hop>,
    h: &str,
    text: String,
    summary: String,
) -> Result<std::result::Result<T, Culprit>> {
    hops.push(hop(HopStatus::Fail, h, text));
    Ok(Err(culprit(h, Component::Overlay, summary)))
}
