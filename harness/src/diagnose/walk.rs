//! The path walk: why a pair is broken, from the lab's live state alone.
//!
//! It follows the packet hop by hop as the kernel would, asking the kernel where it can: route
//! lookups with `from`/`iif` (which also say whether a host forwards), link and carrier state,
//! veth peers and bridge ports, masquerade rules in the live ruleset; then the reply from the
//! destination back to the address the packet arrived from. The first hop that cannot pass names
//! the culprit. Nothing here knows which fault was injected: a lab broken by hand with `ip`,
//! `nft` or `sysctl` gets the same explanation.

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::error::{nl, Result};
use crate::lab::{IfaceKind, Lab};
use crate::netns;
use crate::nft;
use crate::nl::{self as netlink, Link, Route};
use crate::topology::{Outcome, Proto, SWITCH_HOST};

/// What broke, in a small fixed vocabulary (README: "Diagnosis components").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Link,
    Bridge,
    Address,
    Route,
    Forwarding,
    Masquerade,
    Filter,
    Mtu,
    Overlay,
    Neighbour,
    RpFilter,
    Service,
    Policy,
    Dns,
    Unexplained,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Link => "link",
            Component::Bridge => "bridge",
            Component::Address => "address",
            Component::Route => "route",
            Component::Forwarding => "forwarding",
            Component::Masquerade => "masquerade",
            Component::Filter => "filter",
            Component::Mtu => "mtu",
            Component::Overlay => "overlay",
            Component::Neighbour => "neighbour",
            Component::RpFilter => "rp-filter",
            Component::Service => "service",
            Component::Policy => "policy",
            Component::Dns => "dns",
            Component::Unexplained => "unexplained",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub ok: bool,
    pub host: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Culprit {
    pub host: String,
    pub component: Component,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub from: String,
    pub to: String,
    pub protocols: Vec<Proto>,
    pub outcome: Outcome,
    pub forward: Vec<Hop>,
    pub reply: Vec<Hop>,
    pub culprit: Culprit,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protos: Vec<&str> = self.protocols.iter().map(|p| p.as_str()).collect();
        writeln!(
            f,
            "{} → {} {}: {}",
            self.from,
            self.to,
            protos.join(","),
            self.outcome
        )?;
        let width = self
            .forward
            .iter()
            .chain(&self.reply)
            .map(|h| h.host.chars().count())
            .max()
            .unwrap_or(0);
        for h in self.forward.iter().chain(&self.reply) {
            let pad = " ".repeat(width - h.host.chars().count());
            writeln!(
                f,
                "  {} {}{pad}  {}",
                if h.ok { '✓' } else { '✗' },
                h.host,
                h.text
            )?;
        }
        write!(
            f,
            "culprit: {} {} — {}",
            self.culprit.host, self.culprit.component, self.culprit.summary
        )
    }
}

/// Explains every pair whose outcome got worse than in `baseline`, grouping protocols that
/// ended the same way.
pub async fn explain_changes(
    lab: &Lab,
    observed: &crate::matrix::Matrix,
    baseline: &crate::matrix::Matrix,
) -> Result<Vec<Diagnosis>> {
    let mut groups: Vec<(String, String, Outcome, Vec<Proto>)> = Vec::new();
    for c in &observed.cells {
        let before = baseline.observed(&c.from, &c.to, c.proto);
        if c.observed == Outcome::Reachable
            || before == Some(c.observed)
            || c.observed == Outcome::Unsupported
        {
            continue;
        }
        match groups
            .iter_mut()
            .find(|(f, t, o, _)| *f == c.from && *t == c.to && *o == c.observed)
        {
            Some(g) => g.3.push(c.proto),
            None => groups.push((c.from.clone(), c.to.clone(), c.observed, vec![c.proto])),
        }
    }
    let mut w = Walker::new(lab);
    let mut out = Vec::new();
    for (from, to, outcome, protos) in groups {
        out.push(w.explain(&from, &to, protos, outcome).await?);
    }
    Ok(out)
}

/// Explains one pair.
pub async fn explain(
    lab: &Lab,
    from: &str,
    to: &str,
    protocols: Vec<Proto>,
    outcome: Outcome,
) -> Result<Diagnosis> {
    Walker::new(lab).explain(from, to, protocols, outcome).await
}

struct Walker<'a> {
    lab: &'a Lab,
    links: HashMap<String, Vec<Link>>,
    rulesets: HashMap<String, Vec<nftables::schema::Rule<'static>>>,
}

/// Where a walk stopped.
enum End {
    Arrived { host: String, iif: Option<u32> },
    Broken(Culprit),
}

/// Translation state carried along the forward path.
#[derive(Default)]
struct Flow {
    /// (node, original source, translated source) when a node masqueraded the packet.
    masq: Option<(String, Ipv4Addr, Ipv4Addr)>,
    /// (node, uplink, pod source, index of the hop) when a node sent a pod-sourced packet out of
    /// its uplink untranslated.
    untranslated: Option<(String, String, Ipv4Addr, usize)>,
}

const MAX_HOPS: usize = 16;

impl<'a> Walker<'a> {
    fn new(lab: &'a Lab) -> Self {
        Walker {
            lab,
            links: HashMap::new(),
            rulesets: HashMap::new(),
        }
    }

    async fn links(&mut self, host: &str) -> Result<&Vec<Link>> {
        if !self.links.contains_key(host) {
            let h = self.lab.host(host)?;
            let l = netlink::links(h.handle())
                .await
                .map_err(|e| nl(host, "listing links", e))?;
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

    async fn rules(&mut self, host: &str) -> Result<&Vec<nftables::schema::Rule<'static>>> {
        if !self.rulesets.contains_key(host) {
            let h = self.lab.host(host)?;
            let set = nft::list(&h.ns, host).await?;
            self.rulesets
                .insert(host.to_string(), nft::rules(&set).cloned().collect());
        }
        Ok(&self.rulesets[host])
    }

    async fn sysctl(&self, host: &str, key: &str) -> Option<String> {
        let key = key.to_string();
        self.lab
            .host(host)
            .ok()?
            .ns
            .run_async(move || netns::read_sysctl(&key).ok())
            .await
            .ok()
            .flatten()
    }

    async fn explain(
        &mut self,
        from: &str,
        to: &str,
        protocols: Vec<Proto>,
        outcome: Outcome,
    ) -> Result<Diagnosis> {
        let t = self.lab.topology();
        let dst = t
            .host(to)
            .map(|h| h.address())
            .ok_or_else(|| crate::Error::NotFound(format!("no host {to}")))?;
        let mut forward = Vec::new();
        let mut flow = Flow::default();
        let end = self
            .walk(from, None, None, dst, &mut forward, &mut flow, true)
            .await?;
        let mut reply = Vec::new();
        let culprit = match end {
            End::Broken(c) => c,
            End::Arrived { .. } => {
                // The reply: from the destination back to the address the packet arrived from.
                let back_to = flow
                    .masq
                    .as_ref()
                    .map(|m| m.2)
                    .or(flow.untranslated.as_ref().map(|u| u.2));
                let src = match back_to {
                    Some(a) => a,
                    None => self.source_address(from, dst).await?,
                };
                let mut rflow = Flow::default();
                let end = self
                    .walk_reply(to, dst, src, &flow, &mut reply, &mut rflow)
                    .await?;
                match end {
                    End::Broken(c) => {
                        // Replies to an untranslated pod address fail on a host outside the
                        // cluster: the node that let it out unmasqueraded is the culprit.
                        if let (Some((node, uplink, pod_ip, hop)), Component::Route) =
                            (&flow.untranslated, c.component)
                        {
                            if c.host != *node && !t.pods().any(|(p, _)| p == c.host) {
                                let cidr = t
                                    .host(node)
                                    .and_then(|h| h.as_node())
                                    .map(|n| n.pod_cidr.to_string())
                                    .unwrap_or_else(|| pod_ip.to_string());
                                if let Some(h) = forward.get_mut(*hop) {
                                    h.ok = false;
                                    h.text = format!(
                                        "postrouting: no masquerade for {cidr} leaving {uplink}"
                                    );
                                }
                                Culprit {
                                    host: node.clone(),
                                    component: Component::Masquerade,
                                    summary: format!(
                                        "{node} sends {cidr} out of {uplink} unmasqueraded; {} cannot route replies to the pod address {pod_ip}",
                                        c.host
                                    ),
                                }
                            } else {
                                c
                            }
                        } else {
                            c
                        }
                    }
                    End::Arrived { .. } => Culprit {
                        host: from.to_string(),
                        component: Component::Unexplained,
                        summary:
                            "every hop passes in both directions by routes, links and NAT; \
                                  the drop is somewhere this walk does not look yet (filter rules?)"
                                .to_string(),
                    },
                }
            }
        };
        Ok(Diagnosis {
            from: from.to_string(),
            to: to.to_string(),
            protocols,
            outcome,
            forward,
            reply,
            culprit,
        })
    }

    async fn source_address(&mut self, host: &str, dst: Ipv4Addr) -> Result<Ipv4Addr> {
        let h = self.lab.host(host)?;
        Ok(netlink::route_get(h.handle(), dst, None, None)
            .await
            .ok()
            .and_then(|r| r.prefsrc)
            .or_else(|| self.lab.topology().host(host).map(|h| h.address()))
            .unwrap_or(Ipv4Addr::UNSPECIFIED))
    }

    /// The reply path: from `to` back to `src`, undoing the forward path's masquerade.
    async fn walk_reply(
        &mut self,
        to: &str,
        reply_src: Ipv4Addr,
        dst: Ipv4Addr,
        fwd: &Flow,
        hops: &mut Vec<Hop>,
        flow: &mut Flow,
    ) -> Result<End> {
        let end = self
            .walk(to, None, Some(reply_src), dst, hops, flow, false)
            .await?;
        match (end, &fwd.masq) {
            (End::Arrived { host, iif }, Some((node, orig, translated)))
                if host == *node && dst == *translated =>
            {
                hops.push(Hop {
                    ok: true,
                    host: host.clone(),
                    text: format!("conntrack: {translated} → {orig} (undoes the masquerade)"),
                });
                self.walk(&host, iif, Some(reply_src), *orig, hops, flow, false)
                    .await
            }
            (end, _) => Ok(end),
        }
    }

    /// Follows a packet from `host` (arriving on `iif`, or sent by `host` itself) to `dst`.
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &mut self,
        start: &str,
        start_iif: Option<u32>,
        mut src: Option<Ipv4Addr>,
        dst: Ipv4Addr,
        hops: &mut Vec<Hop>,
        flow: &mut Flow,
        forward: bool,
    ) -> Result<End> {
        let t = self.lab.topology().clone();
        let mut host = start.to_string();
        let mut iif = start_iif;
        let direction = if forward { "" } else { "reply " };
        for _ in 0..MAX_HOPS {
            let h = self.lab.host(&host)?;
            let r =
                netlink::route_get(h.handle(), dst, if iif.is_some() { src } else { None }, iif)
                    .await;
            let r: Route = match r {
                Ok(r) => r,
                Err(e) => {
                    let c = self
                        .route_failure(&host, dst, src, iif, e.errno, &e.message, direction)
                        .await?;
                    hops.push(Hop {
                        ok: false,
                        host: host.clone(),
                        text: c.1,
                    });
                    return Ok(End::Broken(c.0));
                }
            };
            if r.kind == "local" {
                if iif.is_none() && host == start && forward {
                    hops.push(Hop {
                        ok: true,
                        host: host.clone(),
                        text: format!("{dst} is local"),
                    });
                }
                return Ok(End::Arrived { host, iif });
            }
            if src.is_none() {
                src = r.prefsrc;
            }
            let oif = match r.oif {
                Some(o) => self.ifname(&host, o).await?,
                None => String::from("?"),
            };
            if let Some(i) = iif {
                let in_name = self.ifname(&host, i).await?;
                let fwd = self
                    .sysctl(&host, "net.ipv4.ip_forward")
                    .await
                    .unwrap_or_else(|| "?".into());
                hops.push(Hop {
                    ok: true,
                    host: host.clone(),
                    text: format!("forward {in_name} → {oif} (ip_forward={fwd})"),
                });
            }
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            hops.push(Hop {
                ok: true,
                host: host.clone(),
                text: format!("{direction}route {dst}{via} dev {oif}"),
            });
            // Masquerade on the way out of a forwarding host.
            if let (Some(_), Some(s)) = (iif, src) {
                let masq = self.masquerades(&host, s, dst, &oif).await?;
                let out_addr = self.address_on(&host, &oif).await?;
                match (masq, out_addr) {
                    (true, Some(a)) => {
                        hops.push(Hop {
                            ok: true,
                            host: host.clone(),
                            text: format!("postrouting: masquerade {s} → {a} leaving {oif}"),
                        });
                        if forward {
                            flow.masq = Some((host.clone(), s, a));
                        }
                        src = Some(a);
                    }
                    _ => {
                        let is_uplink = t
                            .host(&host)
                            .and_then(|x| x.as_node())
                            .is_some_and(|n| n.uplink_ifname == oif);
                        let from_pod = t.pods().any(|(_, p)| p.ip == s);
                        if forward && is_uplink && from_pod {
                            flow.untranslated = Some((host.clone(), oif.clone(), s, hops.len()));
                            hops.push(Hop {
                                ok: true,
                                host: host.clone(),
                                text: format!("postrouting: {s} leaves {oif} untranslated"),
                            });
                        }
                    }
                }
            }
            let nexthop = r.gateway.unwrap_or(dst);
            match self.l2_next(&host, &oif, nexthop, hops).await? {
                Ok((next, next_iif)) => {
                    host = next;
                    iif = Some(next_iif);
                }
                Err(c) => return Ok(End::Broken(c)),
            }
        }
        Ok(End::Broken(Culprit {
            host: host.clone(),
            component: Component::Route,
            summary: format!("more than {MAX_HOPS} hops towards {dst}: a routing loop"),
        }))
    }

    /// The address a host has on an interface (the first one).
    async fn address_on(&mut self, host: &str, ifname: &str) -> Result<Option<Ipv4Addr>> {
        let Some(l) = self.link(host, ifname).await? else {
            return Ok(None);
        };
        let h = self.lab.host(host)?;
        let addrs = netlink::addresses(h.handle())
            .await
            .map_err(|e| nl(host, "listing addresses", e))?;
        Ok(addrs
            .iter()
            .find(|a| a.index == l.index)
            .map(|a| a.net.addr()))
    }

    /// Whether any masquerade rule on `host` would match a packet from `src` to `dst` leaving `oif`.
    async fn masquerades(
        &mut self,
        host: &str,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        oif: &str,
    ) -> Result<bool> {
        let rules = self.rules(host).await?;
        Ok(rules
            .iter()
            .filter(|r| nft::is_masquerade(r))
            .any(|r| rule_may_match(r, src, dst, oif)))
    }

    /// Why the kernel refused a route lookup, as a culprit and a hop line.
    #[allow(clippy::too_many_arguments)]
    async fn route_failure(
        &mut self,
        host: &str,
        dst: Ipv4Addr,
        src: Option<Ipv4Addr>,
        iif: Option<u32>,
        errno: i32,
        message: &str,
        direction: &str,
    ) -> Result<(Culprit, String)> {
        let culprit = |component, summary: String| Culprit {
            host: host.to_string(),
            component,
            summary,
        };
        if let Some(i) = iif {
            let in_name = self.ifname(host, i).await?;
            if errno == libc::EHOSTUNREACH {
                // The same lookup without iif succeeds when the host routes but will not forward.
                let h = self.lab.host(host)?;
                if netlink::route_get(h.handle(), dst, None, None)
                    .await
                    .is_ok()
                {
                    let all = self
                        .sysctl(host, "net.ipv4.ip_forward")
                        .await
                        .unwrap_or_else(|| "?".into());
                    let per_if = self
                        .sysctl(host, &format!("net/ipv4/conf/{in_name}/forwarding"))
                        .await
                        .unwrap_or_else(|| "?".into());
                    let why = if all == "0" {
                        "net.ipv4.ip_forward = 0".to_string()
                    } else {
                        format!("net.ipv4.conf.{in_name}.forwarding = {per_if}")
                    };
                    return Ok((
                        culprit(
                            Component::Forwarding,
                            format!(
                                "{host} does not forward packets arriving on {in_name} ({why})"
                            ),
                        ),
                        format!("forward {in_name} → {dst}: refused ({why})"),
                    ));
                }
            }
            if errno == libc::EINVAL {
                let rp = self.sysctl(host, "net.ipv4.conf.all.rp_filter").await;
                let rp_if = self
                    .sysctl(host, &format!("net/ipv4/conf/{in_name}/rp_filter"))
                    .await;
                if rp.as_deref() == Some("1") || rp_if.as_deref() == Some("1") {
                    let s = src.map(|s| s.to_string()).unwrap_or_default();
                    return Ok((
                        culprit(
                            Component::RpFilter,
                            format!("{host} drops {s} arriving on {in_name}: strict rp_filter and the route back to {s} leaves elsewhere"),
                        ),
                        format!("{direction}from {s} on {in_name}: rejected by rp_filter"),
                    ));
                }
            }
        }
        if errno == libc::ENETUNREACH && iif.is_none() {
            // A host that lost the interface its routes went through.
            if let Some(missing) = self.missing_planned_links(host).await? {
                return Ok((
                    culprit(
                        Component::Link,
                        format!("{host} has no {missing}: its routes through it are gone"),
                    ),
                    format!("{direction}route {dst}: no route ({missing} is missing)"),
                ));
            }
        }
        let what = match errno {
            libc::ENETUNREACH => "no route",
            libc::EHOSTUNREACH => "unreachable route",
            libc::EACCES => "prohibit route",
            libc::EINVAL => "blackhole route or rejected source",
            _ => message,
        };
        Ok((
            culprit(Component::Route, format!("{host} has {what} to {dst}")),
            format!("{direction}route {dst}: {what}"),
        ))
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
        hops: &mut Vec<Hop>,
    ) -> Result<std::result::Result<(String, u32), Culprit>> {
        let t = self.lab.topology().clone();
        let Some(out) = self.link(host, oif).await? else {
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!("{host} routes through {oif}, which does not exist"),
            )));
        };
        if !out.admin_up {
            hops.push(bad(host, format!("{oif} is down")));
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!("{host} {oif} is administratively down"),
            )));
        }
        let Some(target) = t.owner_of(nexthop).map(|h| h.name.clone()) else {
            hops.push(bad(host, format!("next hop {nexthop}: no lab host has it")));
            return Ok(Err(culprit(
                host,
                Component::Route,
                format!("{host} sends to {nexthop} via {oif}, an address no host in the lab has"),
            )));
        };
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
            let (far_host, far_name) = match self.veth_peer(&cur_host, &cur_port).await? {
                Some(p) => p,
                None => {
                    return Ok(Err(culprit(
                        &cur_host,
                        Component::Unexplained,
                        format!("{cur_host} {cur_port} leads nowhere this walk knows"),
                    )))
                }
            };
            let Some(far) = self.link(&far_host, &far_name).await? else {
                hops.push(bad(&far_host, format!("{far_name} is missing")));
                return Ok(Err(culprit(
                    &far_host,
                    Component::Link,
                    format!("{far_host} has no {far_name}"),
                )));
            };
            if !far.admin_up {
                hops.push(bad(&far_host, format!("{far_name} is down")));
                return Ok(Err(culprit(
                    &far_host,
                    Component::Link,
                    format!("{far_host} {far_name} is administratively down"),
                )));
            }
            let near = self.link(&cur_host, &cur_port).await?;
            if !near.as_ref().is_some_and(|l| l.lower_up) || !far.lower_up {
                hops.push(bad(
                    &cur_host,
                    format!("{cur_port} ⇄ {far_host} {far_name}: no carrier"),
                ));
                return Ok(Err(culprit(
                    &cur_host,
                    Component::Link,
                    format!("{cur_host} {cur_port} ⇄ {far_host} {far_name} has no carrier"),
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
                hops.push(bad(
                    &far_host,
                    format!("{far_name} is {now}, not a port of {want}"),
                ));
                return Ok(Err(culprit(
                    &far_host,
                    Component::Bridge,
                    format!("{far_host} {far_name} is {now}, not a port of {want}"),
                )));
            }
            hops.push(Hop {
                ok: true,
                host: cur_host.clone(),
                text: format!(
                    "{text} ⇄ {far_host} {far_name} (up{})",
                    far_master
                        .as_ref()
                        .map(|m| format!(", master {m}"))
                        .unwrap_or_default()
                ),
            });
            if far_host == target {
                // A packet arriving on a bridge port is routed by the bridge.
                return Ok(Ok((far_host, far.master.unwrap_or(far.index))));
            }
            // Not there yet: through the far side's bridge, towards the target.
            let Some(bridge) = far_master else {
                hops.push(bad(&far_host, format!("{nexthop} is not on this segment")));
                return Ok(Err(culprit(
                    host,
                    Component::Route,
                    format!(
                        "{host} expects {nexthop} ({target}) behind {oif}, but {far_host} is there"
                    ),
                )));
            };
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
            hops.push(bad(host, format!("{bridge}: no port leads to {target}")));
            return Ok(Err(culprit(
                host,
                Component::Bridge,
                format!("{host} {bridge} has no port towards {target}"),
            )));
        };
        let Some(p) = self.link(host, &port).await? else {
            hops.push(bad(host, format!("{bridge} port {port} is missing")));
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
            hops.push(bad(host, format!("{port} is {now}")));
            return Ok(Err(culprit(
                host,
                Component::Bridge,
                format!("{host} {port} is {now}, not a port of {bridge}"),
            )));
        }
        if !p.admin_up {
            hops.push(bad(host, format!("{bridge} port {port} is down")));
            return Ok(Err(culprit(
                host,
                Component::Link,
                format!("{host} {port} (the veth to {target}) is administratively down"),
            )));
        }
        Ok(Ok(port))
    }

    /// The other end of a veth, from the plan, as (host, ifname).
    async fn veth_peer(&mut self, host: &str, ifname: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .lab
            .plan()
            .host(host)
            .and_then(|p| p.iface(ifname))
            .and_then(|i| match &i.kind {
                IfaceKind::Veth {
                    peer_host,
                    peer_name,
                    ..
                } => Some((peer_host.clone(), peer_name.clone())),
                IfaceKind::Bridge => None,
            }))
    }
}

fn culprit(host: &str, component: Component, summary: String) -> Culprit {
    Culprit {
        host: host.to_string(),
        component,
        summary,
    }
}

fn bad(host: &str, text: String) -> Hop {
    Hop {
        ok: false,
        host: host.to_string(),
        text,
    }
}

/// Whether a rule's matches could all hold for this packet. Matches this walk does not model
/// count as holding (a rule we cannot rule out is assumed to apply).
fn rule_may_match(
    r: &nftables::schema::Rule<'static>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    oif: &str,
) -> bool {
    use nftables::expr::{Expression, MetaKey, NamedExpression, Payload};
    use nftables::stmt::{Operator, Statement};
    for s in r.expr.iter() {
        let Statement::Match(m) = s else { continue };
        let negate = match m.op {
            Operator::EQ | Operator::IN => false,
            Operator::NEQ => true,
            _ => continue,
        };
        let holds = match &m.left {
            Expression::Named(NamedExpression::Payload(Payload::PayloadField(f)))
                if f.protocol == "ip" =>
            {
                let addr = match f.field.as_ref() {
                    "saddr" => src,
                    "daddr" => dst,
                    _ => continue,
                };
                match ip_in(&m.right, addr) {
                    Some(b) => b,
                    None => continue,
                }
            }
            Expression::Named(NamedExpression::Meta(meta)) if meta.key == MetaKey::Oifname => {
                match &m.right {
                    Expression::String(s) => {
                        let s = s.as_ref();
                        match s.strip_suffix('*') {
                            Some(prefix) => oif.starts_with(prefix),
                            None => s == oif,
                        }
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
        if holds == negate {
            return false;
        }
    }
    true
}

fn ip_in(e: &nftables::expr::Expression<'static>, addr: Ipv4Addr) -> Option<bool> {
    use nftables::expr::{Expression, NamedExpression};
    match e {
        Expression::String(s) => s.parse::<Ipv4Addr>().ok().map(|a| a == addr),
        Expression::Named(NamedExpression::Prefix(p)) => {
            let Expression::String(a) = p.addr.as_ref() else {
                return None;
            };
            let net = ipnet::Ipv4Net::new(a.parse().ok()?, p.len as u8).ok()?;
            Some(net.contains(&addr))
        }
        Expression::Named(NamedExpression::Set(items)) => {
            let mut any = false;
            for i in items {
                if let nftables::expr::SetItem::Element(x) = i {
                    any |= ip_in(x, addr)?;
                } else {
                    return None;
                }
            }
            Some(any)
        }
        _ => None,
    }
}

/// Renders a list of diagnoses for people.
pub fn render(ds: &[Diagnosis]) -> String {
    let mut s = String::new();
    for d in ds {
        let _ = writeln!(s, "{d}");
    }
    s
}
