//! Why a next hop never answered ARP: the sender's neighbour entry for it is unresolved (FAILED
//! or INCOMPLETE; or missing, and something would stop it resolving), explained from the ARP
//! settings of both
//! ends — NOARP devices, `mcast_solicit`, `arp_ignore`, `arp_filter` — and the arp family's nft
//! chains on the request's and the reply's way.

use super::*;

/// One thing that stops ARP between the sender and the owner of the next hop.
struct Blocker {
    host: String,
    component: Component,
    /// What the hop shows.
    seen: String,
    /// Why it stops ARP, for the culprit.
    why: String,
}

/// The two ends of one ARP exchange.
struct Exchange<'l> {
    sender: &'l str,
    /// The sender's interface and the address it asks from.
    oif: &'l Link,
    sip: Option<Ipv4Addr>,
    owner: &'l str,
    /// The owner's interface the request arrives on (a bridge port's bridge).
    arrival: Link,
    tip: Ipv4Addr,
}

impl<'a> Walker<'a> {
    /// The packet reached `owner`, which holds `nexthop`, on `far`. Whether the sender's
    /// neighbour entry says ARP failed, or would fail, and why.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn arp_unanswered(
        &mut self,
        sender: &str,
        oif: &Link,
        nexthop: Ipv4Addr,
        entry: Option<&Neighbour>,
        owner: &str,
        far: &Link,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<Culprit>> {
        let state = entry.map_or("none", |n| n.state.as_str());
        // A resolved or written entry is checked for its MAC elsewhere.
        if !matches!(state, "none" | "failed" | "incomplete" | "noarp") {
            return Ok(None);
        }
        if !self.has_address(owner, nexthop).await? {
            return Ok(None); // a proxy answers it (routed gateways are checked before)
        }
        let arrival = match far.master {
            Some(m) => self
                .links(owner)
                .await?
                .iter()
                .find(|l| l.index == m)
                .cloned(),
            None => Some(far.clone()),
        };
        let Some(arrival) = arrival else {
            return Ok(None);
        };
        let sip = self.address_on(sender, &oif.name).await?;
        let x = Exchange {
            sender,
            oif,
            sip,
            owner,
            arrival,
            tip: nexthop,
        };
        let mut blockers = self.sender_blockers(&x).await;
        blockers.extend(self.owner_blockers(&x).await?);
        let (filters, uncertain) = self.arp_filters(&x).await?;
        blockers.extend(filters);
        Ok(self.arp_verdict(&x, state, blockers, uncertain, hops))
    }

    /// The sender never asks: its device has ARP off, or it sends no solicitations.
    async fn sender_blockers(&mut self, x: &Exchange<'_>) -> Vec<Blocker> {
        let (host, dev) = (x.sender, &x.oif.name);
        let mut out = Vec::new();
        if x.oif.noarp {
            out.push(Blocker {
                host: host.into(),
                component: Component::Neighbour,
                seen: format!("{dev} has ARP off (NOARP)"),
                why: format!("{host} {dev} has ARP off: it never asks who has {}", x.tip),
            });
        }
        let key = format!("net/ipv4/neigh/{dev}/mcast_solicit");
        if self.sysctl(host, &key).await.as_deref() == Some("0") {
            out.push(Blocker {
                host: host.into(),
                component: Component::Neighbour,
                seen: format!("{key} = 0"),
                why: format!("{host} {dev} sends no ARP requests (mcast_solicit 0): it never asks who has {}", x.tip),
            });
        }
        out
    }

    /// The owner hears the request and does not answer: its device has ARP off, `arp_ignore`
    /// or `arp_filter` say no (net/ipv4/arp.c: arp_ignore(), arp_filter()).
    async fn owner_blockers(&mut self, x: &Exchange<'_>) -> Result<Vec<Blocker>> {
        let (host, dev) = (x.owner, x.arrival.name.clone());
        let mut out = Vec::new();
        let blocker = |seen: String, why: String| Blocker {
            host: host.into(),
            component: Component::Neighbour,
            seen,
            why,
        };
        if x.arrival.noarp {
            out.push(blocker(
                format!("{dev} has ARP off (NOARP)"),
                format!(
                    "{host} {dev} has ARP off: it answers no ARP request for {}",
                    x.tip
                ),
            ));
        }
        let ignore = self.conf_max(host, &dev, "arp_ignore").await;
        if let Some(why) = self.ignores(x, ignore).await? {
            out.push(blocker(
                format!("{dev}: arp_ignore = {ignore}"),
                format!("{host} {dev} has arp_ignore {ignore}: {why}"),
            ));
        }
        if self.conf_max(host, &dev, "arp_filter").await > 0 {
            if let Some(sip) = x.sip {
                let h = self.lab.host(host)?;
                let back = netlink::route_get(h.handle(), sip, Some(x.tip), None).await;
                let back_dev = match &back {
                    Ok(r) if r.oif == Some(x.arrival.index) => None,
                    Ok(r) => Some(match r.oif {
                        Some(i) => self.ifname(host, i).await?,
                        None => "no interface".into(),
                    }),
                    Err(e) => Some(e.message.clone()),
                };
                if let Some(other) = back_dev {
                    out.push(blocker(
                        format!("{dev}: arp_filter on, its route to {sip} is {other}"),
                        format!("{host} {dev} has arp_filter on and routes {sip} out of {other}, so it does not answer ARP on {dev}"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// An `arp_ignore` level that keeps the owner from answering, and why (None: it answers).
    async fn ignores(&mut self, x: &Exchange<'_>, level: u32) -> Result<Option<String>> {
        let on_arrival: Vec<ipnet::Ipv4Net> = self
            .addrs(x.owner)
            .await?
            .iter()
            .filter(|a| a.index == x.arrival.index && a.net.addr() == x.tip)
            .map(|a| a.net)
            .collect();
        let tip = x.tip;
        Ok(match level {
            1 | 2 if on_arrival.is_empty() => Some(format!(
                "{tip} is not an address of {}, so it is not answered there",
                x.arrival.name
            )),
            2 if !x
                .sip
                .is_some_and(|s| on_arrival.iter().any(|n| n.contains(&s))) =>
            {
                Some(format!(
                    "the asker's address is outside {tip}'s subnet, so it is not answered"
                ))
            }
            8 => Some("it answers no ARP request at all".into()),
            _ => None,
        })
    }

    /// The arp family's chains: the request leaving the sender and arriving at the owner, the
    /// reply leaving the owner and arriving at the sender. Drops, and rules left undecided.
    async fn arp_filters(&mut self, x: &Exchange<'_>) -> Result<(Vec<Blocker>, Vec<String>)> {
        let sip = x.sip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let legs = [
            (x.sender, "output", "request", sip, x.tip, &x.oif.name),
            (x.owner, "input", "request", sip, x.tip, &x.arrival.name),
            (x.owner, "output", "reply", x.tip, sip, &x.arrival.name),
            (x.sender, "input", "reply", x.tip, sip, &x.oif.name),
        ];
        let (mut drops, mut unsure) = (Vec::new(), Vec::new());
        for (host, hook, op, src, dst, dev) in legs {
            let rules = self.ruleset(host).await?;
            let pkt = arp_packet(op, src, dst, hook, dev);
            match rules.evaluate_arp(hook, &pkt) {
                Verdict::Drop { at, rule, .. } => drops.push(Blocker {
                    host: host.into(),
                    component: Component::Filter,
                    seen: format!("arp {hook} ({op}): {rule} ({at})"),
                    why: format!("{host} drops the ARP {op} for {}: {rule} ({at})", x.tip),
                }),
                Verdict::Uncertain { at, rule } => {
                    unsure.push(format!("{host} arp {hook} ({op}): {rule} ({at})"))
                }
                Verdict::Accept { .. } => {}
            }
        }
        Ok((drops, unsure))
    }

    /// The culprit: the one host and component every blocker names; `unexplained` where they
    /// name several, or where ARP failed and nothing explains it.
    fn arp_verdict(
        &self,
        x: &Exchange<'_>,
        state: &str,
        blockers: Vec<Blocker>,
        uncertain: Vec<String>,
        hops: &mut Vec<Hop>,
    ) -> Option<Culprit> {
        // FAILED or INCOMPLETE depends on how long ago ARP began (3 s to fail): not named.
        let what = format!("{} neighbour {} dev {}", x.sender, x.tip, x.oif.name);
        if blockers.is_empty() {
            // Unresolved after the round's probes: ARP went unanswered for their time.
            if !matches!(state, "failed" | "incomplete") {
                return None;
            }
            hops.push(hop(
                HopStatus::Fail,
                x.sender,
                format!(
                    "neighbour {} dev {} unresolved: {} never answered ARP",
                    x.tip, x.oif.name, x.owner
                ),
            ));
            for u in &uncertain {
                hops.push(hop(
                    HopStatus::Unknown,
                    x.sender,
                    format!("? may drop ARP: {u}"),
                ));
            }
            return Some(culprit(
                x.sender,
                Component::Unexplained,
                format!(
                    "{what} unresolved: {} never answered, and nothing found stops it",
                    x.owner
                ),
            ));
        }
        let entry = match state {
            "none" => format!(
                "no neighbour entry for {} on {}: it needs ARP",
                x.tip, x.oif.name
            ),
            "noarp" => format!("neighbour {} dev {} NOARP", x.tip, x.oif.name),
            _ => format!(
                "neighbour {} dev {} unresolved: no answer from {}",
                x.tip, x.oif.name, x.owner
            ),
        };
        hops.push(hop(HopStatus::Fail, x.sender, entry));
        for b in &blockers {
            hops.push(hop(HopStatus::Fail, &b.host, b.seen.clone()));
        }
        let first = &blockers[0];
        let one = blockers
            .iter()
            .all(|b| b.host == first.host && b.component == first.component);
        if !one {
            let all: Vec<String> = blockers
                .iter()
                .map(|b| format!("{}: {}", b.host, b.seen))
                .collect();
            return Some(culprit(
                x.sender,
                Component::Unexplained,
                format!(
                    "{what}: ARP is stopped in more than one place ({})",
                    all.join("; ")
                ),
            ));
        }
        let why: Vec<&str> = blockers.iter().map(|b| b.why.as_str()).collect();
        Some(culprit(&first.host, first.component, why.join("; ")))
    }

    /// A per-interface `conf` value the kernel combines as the larger of `all` and the device's.
    async fn conf_max(&mut self, host: &str, dev: &str, key: &str) -> u32 {
        let mut v = 0;
        for scope in ["all", dev] {
            let k = format!("net/ipv4/conf/{scope}/{key}");
            let n = self
                .sysctl(host, &k)
                .await
                .and_then(|s| s.trim().parse().ok());
            v = v.max(n.unwrap_or(0));
        }
        v
    }
}

/// An ARP packet as the arp family's chains see it.
fn arp_packet(op: &'static str, src: Ipv4Addr, dst: Ipv4Addr, hook: &str, dev: &str) -> Pkt {
    let (iif, oif) = if hook == "input" {
        (Some(dev.to_string()), None)
    } else {
        (None, Some(dev.to_string()))
    };
    Pkt {
        icmp_type: None,
        iif,
        oif,
        len: 28,
        arp_op: Some(op),
        ..Pkt::new(src, dst, Proto::Icmp, None)
    }
}
