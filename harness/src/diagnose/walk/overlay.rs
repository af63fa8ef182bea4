//! Crossing a vxlan overlay: the VTEP mapping (neighbour and FDB entries), VNI and port on both
//! ends, then the encapsulated packet's walk across the underlay.

use super::*;

impl<'a> Walker<'a> {
    /// Crosses a vxlan overlay: the neighbour and FDB entries for the remote VTEP, both
    /// devices' VNI and port, then the encapsulated packet over the underlay (walked like any
    /// packet: routes, links, filters), arriving on the remote vxlan device.
    pub(super) async fn overlay(
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
        let port = detail(out, "dstport ").and_then(|p| p.parse::<u16>().ok());
        let local = detail(out, "local ")
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
            len: pkt.len + 50,
            ..Pkt::new(local, vtep, crate::topology::Proto::Udp, port)
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
                        detail(&remote, "vni ").unwrap_or_default()
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
    pub(super) async fn vtep_of(
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
            // A FAILED or INCOMPLETE entry is there (`ip neigh add` would say "File exists"):
            // say it is unresolved rather than missing. Which of the two it is depends on how
            // long ago the kernel began asking (3 s to fail), so the text names neither.
            let (seen, why) = match &neigh {
                Some(_) => (
                    format!("neighbour {nexthop} unresolved"),
                    format!(
                        "{host}'s neighbour entry for {nexthop} on {dev} is unresolved (no MAC)"
                    ),
                ),
                None => (
                    format!("no neighbour entry for {nexthop}"),
                    format!("{host} has no neighbour entry for {nexthop} on {dev}"),
                ),
            };
            return overlay_fail(
                hops,
                host,
                format!("{dev}: {seen} ({target}'s VTEP)"),
                format!("{why}: it cannot address {target}'s VTEP"),
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
}

/// Both ends of an overlay must speak the same VNI on the same UDP port: the end that differs
/// from the fixture is the culprit.
pub(super) fn vni_or_port_mismatch(
    t: &crate::topology::Topology,
    host: &str,
    out: &Link,
    target: &str,
    remote: &Link,
    hops: &mut Vec<Hop>,
) -> Option<Culprit> {
    let dev = &out.name;
    for (k, what) in [("vni ", "VNI"), ("dstport ", "UDP port")] {
        let (a, b) = (detail(out, k), detail(remote, k));
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
pub(super) fn overlay_fail<T>(
    hops: &mut Vec<Hop>,
    h: &str,
    text: String,
    summary: String,
) -> Result<std::result::Result<T, Culprit>> {
    hops.push(hop(HopStatus::Fail, h, text));
    Ok(Err(culprit(h, Component::Overlay, summary)))
}

/// A vxlan link's setting as its details show it (`vni 42`, `dstport 4789`, `local 10.0.0.1`).
fn detail(l: &Link, k: &str) -> Option<String> {
    l.details
        .iter()
        .find_map(|d| d.strip_prefix(k).map(|x| x.to_string()))
}
