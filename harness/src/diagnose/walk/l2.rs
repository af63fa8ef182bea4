//! Crossing a layer-2 segment to the host that owns the next hop: veths, bridges and their
//! ports, neighbour entries, proxy ARP for a routed gateway.

use super::*;

impl<'a> Walker<'a> {
    /// Crosses the layer-2 segment behind `oif` to the host that owns `nexthop`: through a veth,
    /// and through any bridge on the way (a node's cni0, the uplink switch). Returns that host and
    /// the interface the packet arrives on there (the bridge, for a bridge port).
    pub(super) async fn l2_next(
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
                if let Some(c) = self
                    .arp_unanswered(
                        host,
                        &out,
                        nexthop,
                        neighbour.as_ref(),
                        &far_host,
                        &far,
                        hops,
                    )
                    .await?
                {
                    return Ok(Err(c));
                }
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
    pub(super) async fn segment_target(
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
    pub(super) async fn proxy_arp_off(
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
    pub(super) async fn cross_veth(
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
    pub(super) async fn wrong_neighbour_mac(
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
    pub(super) async fn through_bridge(
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
    pub(super) async fn mac_owner(&mut self, mac: &[u8]) -> Result<String> {
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

    /// The port of `bridge` on `host` that leads to `target` (the plan's wiring), checked live.
    pub(super) async fn bridge_port(
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
    pub(super) fn veth_peer(&self, host: &str, ifname: &str) -> Option<(String, String)> {
        self.lab.plan().veth_peer(host, ifname)
    }
}
