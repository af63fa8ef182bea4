//! What one host does with a packet on the way: the sender's source address, arriving on an
//! interface, forwarding or sending, what the egress interface takes, postrouting and NAT.

use super::*;

impl<'a> Walker<'a> {
    /// A packet for `host`'s own address that the kernel does not call local: the address is
    /// missing.
    pub(super) fn not_local(&self, host: &str, dst: Ipv4Addr, hops: &mut Vec<Hop>) -> Culprit {
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
    pub(super) async fn leave_by(
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

    /// The sender must own the address it sends from: what is missing, for a sender that
    /// does not.
    pub(super) async fn source_missing(
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
    pub(super) async fn arrive(
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
        self.martian_source(host, n, pkt, hops).await
    }

    /// A shaper on the egress interface too slow for what the probe sends in its time: a bulk
    /// transfer's bytes, or (any probe) a single packet. Which of a round's small probes a slow
    /// shaper's burst lets through varies; a packet it cannot pass in time does not.
    async fn shaped(
        &mut self,
        host: &str,
        oif: &str,
        index: u32,
        len: usize,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<Culprit>> {
        let h = self.lab.host(host)?.handle().clone();
        let Ok(Some(q)) = netlink::root_qdisc(&h, index).await else {
            return Ok(None);
        };
        let (kind, Some(rate)) = (q.kind, q.rate) else {
            return Ok(None);
        };
        let (bytes, what) = match self.bulk {
            Some(b) => (b, "transfer"),
            None => (len, "packet"),
        };
        let secs = (bytes as f64 * 8.0) / rate as f64;
        let budget = self.lab.topology().probe.timeout_ms as f64 / 1000.0;
        if secs <= budget {
            if q.drops > 0 {
                let what = format!(
                    "{host} {oif} is shaped to {} by a {kind} qdisc, which has dropped {} packets",
                    rate_text(rate),
                    q.drops
                );
                if !self.dropping_shapers.iter().any(|(_, w)| *w == what) {
                    self.dropping_shapers.push((host.to_string(), what));
                }
            }
            return Ok(None);
        }
        let rate = rate_text(rate);
        hops.push(hop(
            HopStatus::Fail,
            host,
            format!("{oif} is shaped to {rate} ({kind}): {bytes} bytes need {secs:.1} s"),
        ));
        Ok(Some(culprit(
            host,
            Component::Link,
            format!(
                "{host} {oif} is shaped to {rate} by a {kind} qdisc: a {bytes}-byte {what} needs {secs:.1} s, more than the probe's {budget:.1} s"
            ),
        )))
    }

    /// A packet whose source address this host holds too is dropped on arrival as a martian
    /// (unless `accept_local`): where the plan gives that address to another host, the duplicate
    /// is the culprit.
    async fn martian_source(
        &mut self,
        host: &str,
        n: &str,
        pkt: &Pkt,
        hops: &mut Vec<Hop>,
    ) -> Result<Option<Culprit>> {
        let t = self.lab.topology().clone();
        let Some(owner) = t.owner_of(pkt.src).map(|o| o.name.clone()) else {
            return Ok(None);
        };
        if owner == host || !self.has_address(host, pkt.src).await? {
            return Ok(None);
        }
        for scope in ["all", n] {
            let key = format!("net.ipv4.conf.{scope}.accept_local");
            if self.sysctl(host, &key).await.as_deref() == Some("1") {
                return Ok(None);
            }
        }
        hops.push(hop(
            HopStatus::Fail,
            host,
            format!(
                "{n}: source {} is an address of {host} too: dropped as a martian",
                pkt.src
            ),
        ));
        Ok(Some(culprit(
            host,
            Component::Address,
            format!(
                "{host} holds {}, {owner}'s address: it drops packets from {owner} as martians (their source is its own)",
                pkt.src
            ),
        )))
    }

    /// A destination local to a host the plan does not give it to: that host keeps the packet.
    pub(super) fn local_elsewhere(
        &self,
        host: &str,
        dst: std::net::Ipv4Addr,
        dir: &str,
        hops: &mut Vec<Hop>,
    ) -> Option<Culprit> {
        let t = self.lab.topology();
        let owner = t.owner_of(dst)?.name.clone();
        if owner == host {
            return None;
        }
        hops.push(hop(
            HopStatus::Fail,
            host,
            format!("{dir}{dst} is local to {host}, not to {owner}"),
        ));
        Some(culprit(
            host,
            Component::Address,
            format!(
                "{host} holds {dst}, {owner}'s address: it keeps packets for {owner} to itself"
            ),
        ))
    }

    /// The egress interface must take the packet: no larger than its MTU (DF is set), and for a
    /// bulk transfer, not shaped below what the probe's time allows.
    pub(super) async fn egress_takes(
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
                        icmp_type: Some(3),
                        icmp_code: Some(4),
                        oif: in_name.map(str::to_string),
                        ct_new: false,
                        len: 576,
                        ..Pkt::new(pkt.dst, pkt.src, Proto::Icmp, None)
                    };
                    let rs = self.ruleset(host).await?;
                    for hk in ["output", "postrouting"] {
                        if let Verdict::Drop { at, rule, .. } = rs.evaluate(hk, &icmp) {
                            why = format!(", and the ICMP fragmentation-needed it would send back is dropped in {hk} ({at}: {rule})");
                            break;
                        }
                    }
                }
                if self.full_size && in_name.is_some() && why.is_empty() {
                    // Path MTU discovery: the sender learns the smaller MTU and resends.
                    hops.push(hop(
                        HopStatus::Ok,
                        host,
                        format!("{oif} mtu {} < {}-byte packet (DF): fragmentation-needed goes back, the sender resends at {}", l.mtu, pkt.len, l.mtu),
                    ));
                    pkt.len = l.mtu as usize;
                    self.learned_len = Some(pkt.len);
                    return self.shaped(host, oif, l.index, pkt.len, hops).await;
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
            if let Some(c) = self.shaped(host, oif, l.index, pkt.len, hops).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Postrouting: its filters, and source NAT (noting the flow's translation, or that a pod's
    /// packet leaves the cluster untranslated).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn postrouting(
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
        // The first translation binds the flow.
        let mut translated = None;
        for n in nat {
            translated = match n {
                Nat::Masquerade => self.address_on(host, oif).await?,
                Nat::Snat(a) => Some(a),
                Nat::Dnat(..) => continue,
            };
            break;
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
                    flow.snat_at = Some(hops.len() - 1);
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
}
