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

mod arp;
mod divergence;
mod host;
mod k8s;
mod l2;
mod overlay;
mod route;
mod translation;

/// Explains every pair whose outcome got worse than in `baseline`, one walk per protocol,
/// protocols that walk the same way grouped; with the kernel evidence of the round that
/// observed them (`recorded`, see [`super::evidence::recorded_matrix`]).
pub async fn explain_changes(
    lab: &Lab,
    observed: &crate::matrix::Matrix,
    baseline: &crate::matrix::Matrix,
    recorded: super::evidence::Stopped,
) -> Result<Vec<Diagnosis>> {
    let mut broken: Vec<(String, String, Proto, Outcome)> = Vec::new();
    for c in &observed.cells {
        let before = baseline.observed(&c.from, &c.to, c.proto);
        if before.is_none() || before == Some(c.observed) || c.observed == Outcome::Unsupported {
            continue;
        }
        broken.push((c.from.clone(), c.to.clone(), c.proto, c.observed));
    }
    // The monitors finish printing the round's traces while the walk runs.
    let (ds, recorded) = tokio::join!(explain_pairs(lab, &broken, None), recorded.collect());
    let mut ds = ds?;
    super::evidence::attach_round(lab, &mut ds, observed, &recorded);
    ds.extend(explain_translations(lab, observed, Some(baseline)).await?);
    super::planted::apply(&mut ds, lab.topology());
    Ok(ds)
}

/// Explains the given broken probes from the lab's state (no evidence).
pub async fn explain_pairs(
    lab: &Lab,
    broken: &[(String, String, Proto, Outcome)],
    size: Option<usize>,
) -> Result<Vec<Diagnosis>> {
    let mut w = Walker::new(lab);
    let mut w6 = super::walk6::Walker6::new(lab);
    let mut out: Vec<Diagnosis> = Vec::new();
    for (from, to, proto, outcome) in broken {
        // The probe's own size unless the caller names one.
        let size = size.or(lab.topology().probe.size(*proto));
        let d = explain_one(&mut w, &mut w6, from, to, *proto, *outcome, size).await?;
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
    Ok(out)
}

/// Explains the reachable cells of `observed` whose server saw another source than the plan
/// intends (and did not in `baseline`, where given): the hop that translated them.
pub async fn explain_translations(
    lab: &Lab,
    observed: &crate::matrix::Matrix,
    baseline: Option<&crate::matrix::Matrix>,
) -> Result<Vec<Diagnosis>> {
    let mut w = Walker::new(lab);
    let mut w6 = super::walk6::Walker6::new(lab);
    let mut out: Vec<Diagnosis> = Vec::new();
    for c in &observed.cells {
        let (Some(why), Some(seen)) = (&c.translation, c.seen_as) else {
            continue;
        };
        let before = baseline.and_then(|b| b.cell(&c.from, &c.to, c.proto));
        if before.is_some_and(|b| b.translation.is_some()) {
            continue;
        }
        let d = match seen {
            std::net::IpAddr::V4(seen) => {
                w.explain_translation(&c.from, &c.to, c.proto, seen, why)
                    .await?
            }
            std::net::IpAddr::V6(seen) => {
                w6.explain_translation(&c.from, &c.to, c.proto, seen, why)
                    .await?
            }
        };
        match out
            .iter_mut()
            .find(|x| x.from == d.from && x.to == d.to && x.culprit == d.culprit)
        {
            Some(x) => x.protocols.push(c.proto),
            None => out.push(d),
        }
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
    let (mut w, mut w6) = (Walker::new(lab), super::walk6::Walker6::new(lab));
    explain_one(&mut w, &mut w6, from, to, proto, outcome, size).await
}

/// One probe with the walkers given: a pod's declared port (`POD:PORT`) is walked as the host
/// pair at that port; other targets by the Service walk.
async fn explain_one(
    w: &mut Walker<'_>,
    w6: &mut super::walk6::Walker6<'_>,
    from: &str,
    to: &str,
    proto: Proto,
    outcome: Outcome,
    size: Option<usize>,
) -> Result<Diagnosis> {
    use crate::topology::k8s::Target;
    let (host, dport) = match Target::parse(to) {
        Some(Target::Port { pod, port }) => (pod, Some(port)),
        _ => (to.to_string(), None),
    };
    w.dport = dport;
    w6.dport = dport;
    let d = if proto.family() == crate::topology::Family::V6 {
        w6.explain(from, &host, proto, outcome).await
    } else if dport.is_none() && Target::parse(to).is_some() {
        w.explain_target(from, to, proto, outcome).await
    } else {
        w.explain(from, &host, proto, outcome, size).await
    };
    w.dport = None;
    w6.dport = None;
    let mut d = d?;
    d.to = to.to_string();
    Ok(d)
}

/// Per-lab caches of what the walk reads from the kernel.
struct Walker<'a> {
    lab: &'a Lab,
    /// The probe is a bulk TCP transfer of this many bytes: full-size segments, and time counts.
    bulk: Option<usize>,
    /// The probe is a full-size ICMP echo (see `ProbeSettings::full_size`): as large as the
    /// sender's route allows, and smaller past a router whose fragmentation-needed reaches back.
    full_size: bool,
    /// The size path MTU discovery brought a full-size probe down to on the forward way: its
    /// echo reply is as large.
    learned_len: Option<usize>,
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
    /// The source translation the last forward walk applied: (host, original, translated).
    last_snat: Option<(String, Ipv4Addr, Ipv4Addr)>,
    /// Where the last forward walk left a node's uplink untranslated: (node, uplink, pod
    /// source, hop index).
    last_untranslated: Option<(String, String, Ipv4Addr, usize)>,
    /// Shapers the walk passed that a single packet gets through in time but that have dropped
    /// packets (host, what): a burst of the round's parallel probes overflows a slow one.
    dropping_shapers: Vec<(String, String)>,
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
    /// The forward hop where the source was translated.
    snat_at: Option<usize>,
    /// A route of the walk that leaves the lab's plan, until the packet is back on it.
    diverged: Option<Divergence>,
}

/// A route that left the plan: where, what it does, and where the plan's route leads.
#[derive(Clone)]
struct Divergence {
    host: String,
    /// The hop that shows the route.
    at: usize,
    dst: Ipv4Addr,
    /// What the live route does and what the plan's does, for the culprit.
    live: String,
    planned: String,
    /// The host the plan's route leads to; arriving there, the packet is back on the plan.
    planned_next: Option<String>,
    /// The live route's interface, and the plan's for the same destination.
    oif: String,
    planned_dev: Option<String>,
    /// The live route leaves by an interface the plan does not give the host at all.
    foreign_iface: bool,
    /// The plan's path from `host` on.
    path: String,
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
            full_size: false,
            learned_len: None,
            links: HashMap::new(),
            addrs: HashMap::new(),
            neigh: HashMap::new(),
            rules: HashMap::new(),
            sysctls: HashMap::new(),
            dport: None,
            entry: None,
            entry_mark: 0,
            last_snat: None,
            last_untranslated: None,
            dropping_shapers: Vec::new(),
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

    /// The MTU of the interface `host` routes `dst` out of: what a full-size probe sends.
    async fn route_mtu(&mut self, host: &str, dst: Ipv4Addr) -> Result<Option<usize>> {
        let h = self.lab.host(host)?;
        let Ok(r) = netlink::route_get(h.handle(), dst, None, None).await else {
            return Ok(None);
        };
        let Some(oif) = r.oif else { return Ok(None) };
        Ok(self
            .links(host)
            .await?
            .iter()
            .find(|l| l.index == oif)
            .map(|l| l.mtu as usize))
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
        self.full_size = size.is_none() && entry.is_none() && t.full_size_ping(from, to, proto);
        self.learned_len = None;
        let full = match self.full_size {
            true => self.route_mtu(from, dst).await?,
            false => None,
        };
        let mut pkt = Pkt::new(src, dst, proto, port);
        pkt.len = if proto == Proto::Tcp {
            SMALL
        } else {
            full.or(size).unwrap_or(SMALL)
        };
        let mut forward = Vec::new();
        let mut flow = Flow::default();
        self.dropping_shapers.clear();
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
        self.last_snat = flow.snat.clone();
        self.last_untranslated = flow.untranslated.clone();
        let mut reply = Vec::new();
        let culprit = match end {
            End::Broken(c) => self.blame_divergence(c, &flow, &mut forward),
            End::Arrived => {
                let c = self
                    .reply_culprit(from, to, &pkt, src, &mut flow, &mut forward, &mut reply)
                    .await?;
                match outcome {
                    Outcome::Reachable => self.reached_off_plan(c, &flow, &mut forward, from, to),
                    _ => c,
                }
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
            len: self.learned_len.unwrap_or(pkt.len),
            mark: Default::default(),
            dst_local: None,
            rpf_oif: None,
            arp_op: None,
            v6: None,
        };
        let mut rflow = Flow {
            snat: flow.snat.clone(),
            ..Default::default()
        };
        let end = self.walk(to, None, rpkt, false, &mut rflow, reply).await?;
        flow.uncertain.extend(std::mem::take(&mut rflow.uncertain));
        if let End::Broken(c) = &end {
            if let Some(b) = self.foreign_translation(c, flow, forward).await? {
                return Ok(b);
            }
            if rflow.diverged.is_some() {
                return Ok(self.blame_divergence(c.clone(), &rflow, reply));
            }
        }
        Ok(match end {
                End::Broken(c) => self.blame_untranslated(c, flow, forward),
                End::Arrived if flow.uncertain.is_empty() && self.dropping_shapers.len() == 1 => {
                    let (h, what) = &self.dropping_shapers[0];
                    culprit(h, Component::Link, format!("every other hop passes in both directions; {what}: a burst of the probes overflows its queue (which of them it drops varies)"))
                }
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

    /// A reply that cannot come back to an address the translating host does not hold: the
    /// translation is the culprit (the plan translates only to a host's own address), wherever
    /// the reply then dies.
    async fn foreign_translation(
        &mut self,
        c: &Culprit,
        flow: &Flow,
        forward: &mut [Hop],
    ) -> Result<Option<Culprit>> {
        let Some((host, orig, to)) = flow.snat.clone() else {
            return Ok(None);
        };
        if self.has_address(&host, to).await? {
            return Ok(None);
        }
        if let Some(h) = flow.snat_at.and_then(|i| forward.get_mut(i)) {
            h.status = HopStatus::Fail;
            h.text =
                format!("postrouting: {orig} translated to {to}, an address {host} does not hold");
        }
        Ok(Some(culprit(
            &host,
            Component::Masquerade,
            format!(
                "{host} translates {orig} to {to}, an address it does not hold: replies to {to} never come back to {host} to be translated back ({} {}: {})",
                c.host,
                c.component.as_str(),
                c.summary
            ),
        )))
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
                if at.contains(crate::lab::policy::POLICY_TABLE) {
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
                if let Some(c) = self.local_elsewhere(&host, pkt.dst, dir, hops) {
                    return Ok(End::Broken(c));
                }
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
            if flow.diverged.is_none() {
                let addrs = (pkt.src, pkt.dst);
                flow.diverged = self.diverges(&host, &oif, r.gateway, addrs, hops.len() - 1);
            }
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
                    if flow.diverged.as_ref().is_some_and(|d| d.rejoined_at(&next)) {
                        flow.diverged = None; // back on the plan's path
                    }
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
