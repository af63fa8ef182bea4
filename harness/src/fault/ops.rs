//! How each fault changes a live lab, and what it logs to undo.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};

use super::undo::{self, FdbEntry, NftUndo, Undo, VethSnapshot, VxlanSnapshot};
use crate::error::{nl_error, Error, Result};
use crate::lab::{IfaceKind, Lab, LabHost};
use crate::netns;
use crate::nft;
use crate::nl::{self as netlink, Link};
use crate::topology::Family;
use crate::topology::Network;

/// A MAC no lab interface has (locally administered).
pub(super) const BOGUS_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x99];

pub(super) fn qdisc_error(host: &str, kind: &str, e: rtnetlink::Error) -> Error {
    match crate::error::netlink_errno(&e) {
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => Error::Unsupported(format!(
            "this kernel has no {kind} qdisc (sch_{kind}): creating one fails with \"{}\"",
            crate::error::netlink_message(&e)
        )),
        _ => nl_error(host, format!("adding a {kind} qdisc"), e),
    }
}

pub(super) fn pod_sides(lab: &Lab, pod: &str) -> Result<(String, String, String)> {
    let p = lab
        .topology()
        .host(pod)
        .and_then(|h| h.as_pod())
        .ok_or_else(|| Error::NotFound(format!("{pod} is not a pod")))?;
    Ok((p.node.clone(), p.host_veth.clone(), p.ifname.clone()))
}

/// The node's spec in the lab's topology.
pub(super) fn node_spec<'a>(lab: &'a Lab, node: &str) -> Result<&'a crate::topology::NodeSpec> {
    lab.topology()
        .host(node)
        .and_then(|h| h.as_node())
        .ok_or_else(|| Error::NotFound(format!("{node} is not a node")))
}

pub(super) async fn live_link(h: &LabHost, name: &str) -> Result<Link> {
    netlink::link_by_name(h.handle(), name)
        .await
        .map_err(|e| nl_error(&h.name, format!("reading {name}"), e))?
        .ok_or_else(|| Error::NotApplicable(format!("{} has no interface {name}", h.name)))
}

pub(super) async fn ifname_of(h: &LabHost, index: u32) -> Result<String> {
    netlink::links(h.handle())
        .await
        .map_err(|e| nl_error(&h.name, "listing links", e))?
        .into_iter()
        .find(|l| l.index == index)
        .map(|l| l.name)
        .ok_or_else(|| Error::other(format!("{}: no interface with index {index}", h.name)))
}

/// Puts `routes` of `h` back, each on its device by name (see `Undo::ReaddRoutes`).
pub(super) async fn readd_routes(h: &LabHost, routes: Vec<RouteMessage>) -> Result<Undo> {
    let mut devs = Vec::new();
    for m in &routes {
        let oif = m.attributes.iter().find_map(|a| match a {
            netlink_packet_route::route::RouteAttribute::Oif(o) => Some(*o),
            _ => None,
        });
        match oif {
            Some(ix) => devs.push(ifname_of(h, ix).await?),
            None => {
                devs.clear();
                break;
            }
        }
    }
    Ok(Undo::ReaddRoutes {
        host: h.name.clone(),
        routes,
        devs,
    })
}

/// Replaces `old` routes of a host by the one `add` puts in, all or nothing: when the kernel
/// refuses the new route the old ones go back before the error is returned (else the host would
/// be left without them, and no heal knows). Returns the undo that puts the old ones back.
pub(super) async fn swap_routes(
    h: &LabHost,
    old: Vec<RouteMessage>,
    what: &str,
    add: impl std::future::Future<Output = std::result::Result<(), rtnetlink::Error>>,
) -> Result<Undo> {
    let undo = readd_routes(h, old.clone()).await?;
    for m in &old {
        netlink::del_route_msg(h.handle(), m.clone())
            .await
            .map_err(|e| nl_error(&h.name, format!("deleting the route {what} replaces"), e))?;
    }
    if let Err(e) = add.await {
        for m in old {
            // Best effort: the error that matters is the one being returned.
            let _ = netlink::readd_route(h.handle(), m).await;
        }
        return Err(nl_error(&h.name, format!("adding {what}"), e));
    }
    Ok(undo)
}

pub(super) async fn link_admin(lab: &Lab, host: &str, ifname: &str, up: bool) -> Result<Vec<Undo>> {
    let h = lab.host(host)?;
    let l = live_link(h, ifname).await?;
    if l.admin_up == up {
        return Err(Error::NotApplicable(format!(
            "{host} {ifname} is already {}",
            if up { "up" } else { "down" }
        )));
    }
    netlink::set_up(h.handle(), l.index, up)
        .await
        .map_err(|e| {
            nl_error(
                host,
                format!("setting {ifname} {}", if up { "up" } else { "down" }),
                e,
            )
        })?;
    if !up {
        // Settle before anyone looks: the veth's far end loses its carrier through linkwatch,
        // a moment later (longer on a busy machine).
        let mut ends = vec![(host.to_string(), ifname.to_string())];
        if let Some(crate::lab::IfaceKind::Veth {
            peer_host,
            peer_name,
            ..
        }) = lab
            .plan()
            .host(host)
            .and_then(|p| p.iface(ifname))
            .map(|i| i.kind.clone())
        {
            ends.push((peer_host, peer_name));
        }
        for (eh, en) in ends {
            netlink::wait_oper_down(lab.host(&eh)?.handle(), &[en], LINKWATCH_SETTLE)
                .await
                .map_err(|e| nl_error(&eh, "reading link state", e))?;
        }
    }
    Ok(vec![Undo::LinkAdmin {
        host: host.into(),
        ifname: ifname.into(),
        up: l.admin_up,
    }])
}

/// How long a link's state change may take to show at the far end of a veth.
pub(super) const LINKWATCH_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) async fn set_sysctls(
    lab: &Lab,
    host: &str,
    values: Vec<(String, String)>,
) -> Result<Vec<Undo>> {
    let h = lab.host(host)?;
    let keys: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
    let before =
        h.ns.run_async(move || {
            keys.iter()
                .map(|k| netns::read_sysctl(k).map(|v| (k.clone(), v)))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .await
        .and_then(|r| r)
        .map_err(|e| Error::io(format!("{host}: reading sysctls"), e))?;
    if before.iter().zip(&values).all(|((_, a), (_, b))| a == b) {
        return Err(Error::NotApplicable(format!(
            "{host}: {} already set",
            values
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    undo::write_sysctls(lab, host, values).await?;
    Ok(vec![Undo::Sysctls {
        host: host.into(),
        values: before,
    }])
}

pub(super) async fn remove_address(lab: &Lab, host: &str, ip: Ipv4Addr) -> Result<Vec<Undo>> {
    let h = lab.host(host)?;
    let a = netlink::addresses(h.handle())
        .await
        .map_err(|e| nl_error(host, "listing addresses", e))?
        .into_iter()
        .find(|a| a.net.addr() == ip)
        .ok_or_else(|| Error::NotApplicable(format!("{host} has no address {ip}")))?;
    let ifname = ifname_of(h, a.index).await?;
    netlink::del_address(h.handle(), a.index, a.net)
        .await
        .map_err(|e| nl_error(host, format!("removing {} from {ifname}", a.net), e))?;
    Ok(vec![Undo::Address {
        host: host.into(),
        ifname,
        net: a.net,
    }])
}

/// Routes in the main table to exactly `to`.
pub(super) async fn routes_to(h: &LabHost, to: Ipv4Net) -> Result<Vec<RouteMessage>> {
    Ok(netlink::routes_raw(h.handle())
        .await
        .map_err(|e| nl_error(&h.name, "listing routes", e))?
        .into_iter()
        .filter(|m| {
            netlink::parse_route(m).is_some_and(|r| {
                r.dst == to && r.table == 254 && r.kind != "local" && r.kind != "broadcast"
            })
        })
        .collect())
}

/// The interface whose connected network holds `ip`.
pub(super) async fn iface_reaching(h: &LabHost, ip: Ipv4Addr) -> Result<Option<String>> {
    let addrs = netlink::addresses(h.handle())
        .await
        .map_err(|e| nl_error(&h.name, "listing addresses", e))?;
    match addrs
        .iter()
        .find(|a| a.net.prefix_len() < 32 && a.net.trunc().contains(&ip))
    {
        Some(a) => Ok(Some(ifname_of(h, a.index).await?)),
        None => Ok(None),
    }
}

pub(super) async fn add_table(
    lab: &Lab,
    host: &str,
    family: &str,
    table: &str,
    script: &str,
) -> Result<Vec<Undo>> {
    let h = lab.host(host)?;
    let json = nft::list_json(&h.ns, host).await?;
    let exists = json
        .get("nftables")
        .and_then(|x| x.as_array())
        .is_some_and(|a| {
            a.iter().any(|o| {
                o.get("table").is_some_and(|t| {
                    t.get("family").and_then(|f| f.as_str()) == Some(family)
                        && t.get("name").and_then(|n| n.as_str()) == Some(table)
                })
            })
        });
    if exists {
        return Err(Error::NotApplicable(format!(
            "{host} already has table {family} {table}"
        )));
    }
    let s = script.to_string();
    h.ns.run_async(move || crate::tools::run_tool("nft", &["-f", "-"], Some(&s)))
        .await
        .and_then(|r| r)
        .map_err(|e| Error::Nft {
            host: host.into(),
            msg: crate::topology::source::plain_io_error(&e),
        })?;
    Ok(vec![Undo::NftScript {
        host: host.into(),
        script: format!("delete table {family} {table}\n"),
    }])
}

/// Docker's `iptables -P FORWARD DROP`: the forward chain of table ip filter drops by policy.
pub(super) async fn forward_drop_policy(lab: &Lab, node: &str) -> Result<Vec<Undo>> {
    let h = lab.host(node)?;
    let json = nft::list_json(&h.ns, node).await?;
    let objs = json
        .get("nftables")
        .and_then(|x| x.as_array())
        .cloned()
        .unwrap_or_default();
    let table = objs.iter().any(|o| {
        o.get("table").is_some_and(|t| {
            t.get("family").and_then(|f| f.as_str()) == Some("ip")
                && t.get("name").and_then(|n| n.as_str()) == Some("filter")
        })
    });
    let chain = objs.iter().find_map(|o| {
        let c = o.get("chain")?;
        (c.get("family")?.as_str()? == "ip"
            && c.get("table")?.as_str()? == "filter"
            && c.get("name")?.as_str()? == "FORWARD")
            .then(|| c.clone())
    });
    let (script, undo) = match (table, chain) {
        (_, Some(c)) => {
            let policy = c.get("policy").and_then(|p| p.as_str()).unwrap_or("accept").to_string();
            if policy == "drop" {
                return Err(Error::NotApplicable(format!("{node}: chain FORWARD already drops by policy")));
            }
            ("chain ip filter FORWARD { policy drop; }\n".to_string(), format!("chain ip filter FORWARD {{ policy {policy}; }}\n"))
        }
        (true, None) => (
            "add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }\n".to_string(),
            "delete chain ip filter FORWARD\n".to_string(),
        ),
        (false, None) => (
            "table ip filter {\n chain FORWARD {\n  type filter hook forward priority 0; policy drop;\n }\n}\n".to_string(),
            "delete table ip filter\n".to_string(),
        ),
    };
    h.ns.run_async(move || crate::tools::run_tool("nft", &["-f", "-"], Some(&script)))
        .await
        .and_then(|r| r)
        .map_err(|e| Error::Nft {
            host: node.into(),
            msg: crate::topology::source::plain_io_error(&e),
        })?;
    Ok(vec![Undo::NftScript {
        host: node.into(),
        script: undo,
    }])
}

pub(super) async fn delete_veth(lab: &Lab, pod: &str) -> Result<Vec<Undo>> {
    let (node, host_veth, ifname) = pod_sides(lab, pod)?;
    let host_side = undo::snap_link(lab, &node, &host_veth).await?;
    let pod_side = undo::snap_link(lab, pod, &ifname).await?;
    let n = lab.host(&node)?;
    let l = live_link(n, &host_veth).await?;
    let master = match l.master {
        Some(m) => Some(ifname_of(n, m).await?),
        None => None,
    };
    netlink::del_link(n.handle(), l.index)
        .await
        .map_err(|e| nl_error(&node, format!("deleting {host_veth}"), e))?;
    Ok(vec![Undo::Veth(Box::new(VethSnapshot {
        node,
        pod: pod.to_string(),
        host_side,
        pod_side,
        master,
    }))])
}

/// Turns a family's forwarding off on a node. Writing its switch (`net.ipv4.ip_forward`, IPv6's
/// `net.ipv6.conf.all.forwarding`) rewrites every interface's `forwarding`: all of them are kept
/// to restore, the switch first.
pub(super) async fn disable_forwarding(lab: &Lab, node: &str, family: Family) -> Result<Vec<Undo>> {
    let (switch, conf) = match family {
        Family::V4 => ("net.ipv4.ip_forward", "net/ipv4/conf"),
        Family::V6 => ("net.ipv6.conf.all.forwarding", "net/ipv6/conf"),
    };
    let h = lab.host(node)?;
    let ifnames: Vec<String> = netlink::links(h.handle())
        .await
        .map_err(|e| nl_error(node, "listing links", e))?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let values =
        h.ns.run_async(move || {
            let now = netns::read_sysctl(switch)?;
            if now == "0" {
                return Ok(None);
            }
            let mut before = vec![(switch.to_string(), now)];
            for dev in ["all", "default"]
                .into_iter()
                .map(String::from)
                .chain(ifnames)
            {
                let key = format!("{conf}/{dev}/forwarding");
                if key.replace('/', ".") == switch {
                    continue;
                }
                if let Ok(v) = netns::read_sysctl(&key) {
                    before.push((key, v));
                }
            }
            netns::write_sysctl(switch, "0")?;
            Ok::<_, std::io::Error>(Some(before))
        })
        .await
        .and_then(|r| r)
        .map_err(|e| Error::io(format!("{node}: {switch}"), e))?
        .ok_or_else(|| Error::NotApplicable(format!("{node}: {switch} is already 0")))?;
    Ok(vec![Undo::Sysctls {
        host: node.to_string(),
        values,
    }])
}

pub(super) async fn delete_masquerade(lab: &Lab, node: &str) -> Result<Vec<Undo>> {
    delete_masquerade_in(lab, node, |_| true).await
}

/// Deletes the masquerade rules of the tables whose family `family` accepts.
pub(super) async fn delete_masquerade_in(
    lab: &Lab,
    node: &str,
    family: impl Fn(nftables::types::NfFamily) -> bool,
) -> Result<Vec<Undo>> {
    let h = lab.host(node)?;
    let set = nft::list(&h.ns, node).await?;
    let mut native = Vec::new();
    let mut doomed = Vec::new();
    // (IPv6?, table) of every iptables-nft table an xt masquerade rule is deleted from.
    let mut xt_tables: Vec<(bool, String)> = Vec::new();
    let mut index_in_chain: HashMap<(String, String, String), usize> = Default::default();
    for r in nft::rules(&set) {
        let key = (
            nft::family_name(r.family).to_string(),
            r.table.to_string(),
            r.chain.to_string(),
        );
        let index = index_in_chain.entry(key).or_insert(0);
        if nft::is_masquerade(r) && family(r.family) {
            doomed.push(r.clone());
            if nft::uses_xt(r) {
                // iptables-nft and ip6tables-nft write these; their save and restore tools
                // put them back exactly. Any other family's xt rule has no such tool.
                let v6 = match r.family {
                    nftables::types::NfFamily::IP => false,
                    nftables::types::NfFamily::IP6 => true,
                    other => {
                        return Err(Error::Unsupported(format!(
                            "{node}: an xt masquerade rule in a {} table cannot be restored",
                            nft::family_name(other)
                        )))
                    }
                };
                let key = (v6, r.table.to_string());
                if !xt_tables.contains(&key) {
                    xt_tables.push(key);
                }
            } else {
                native.push((r.clone(), *index));
            }
        }
        *index += 1;
    }
    if doomed.is_empty() {
        return Err(Error::NotApplicable(format!(
            "{node} has no masquerade rule to delete"
        )));
    }
    let save = |(v6, table): (bool, String)| async move {
        let tool = if v6 {
            "ip6tables-nft-save"
        } else {
            "iptables-nft-save"
        };
        h.ns.run_async(move || crate::tools::run_tool(tool, &["-t", &table], None))
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("{node}: {tool}"), e))
    };
    let mut saved = Vec::new();
    for t in &xt_tables {
        saved.push((t.clone(), save(t.clone()).await?));
    }
    nft::apply(&h.ns, node, nft::delete_batch(&doomed)).await?;
    let (mut iptables, mut ip6tables) = (Vec::new(), Vec::new());
    for ((v6, t), before) in saved {
        let after = save((v6, t.clone())).await?;
        let lines = (t, reinsert_lines(&before, &after));
        match v6 {
            false => iptables.push(lines),
            true => ip6tables.push(lines),
        }
    }
    Ok(vec![Undo::NftRules(NftUndo {
        host: node.to_string(),
        native,
        iptables,
        ip6tables,
    })])
}

/// `-I CHAIN POS SPEC` lines that put back the `-A` rules of `before` missing from `after`.
pub fn reinsert_lines(before: &str, after: &str) -> Vec<String> {
    let rules = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("-A "))
            .filter_map(|l| l.split_once(' '))
            .map(|(c, spec)| (c.to_string(), spec.to_string()))
            .collect()
    };
    let mut remaining = rules(after);
    let mut pos: HashMap<String, usize> = Default::default();
    let mut out = Vec::new();
    for (chain, spec) in rules(before) {
        let p = pos.entry(chain.clone()).or_insert(0);
        *p += 1;
        if let Some(i) = remaining
            .iter()
            .position(|(c, s)| *c == chain && *s == spec)
        {
            remaining.remove(i);
        } else {
            out.push(format!("-I {chain} {p} {spec}"));
        }
    }
    out
}

pub(super) fn vxlan_device(lab: &Lab) -> Result<String> {
    match &lab.topology().cluster.network {
        Network::Vxlan(v) => Ok(v.device.clone()),
        other => Err(Error::NotApplicable(format!(
            "the lab's network is {}, not vxlan",
            other.name()
        ))),
    }
}

/// The node's vxlan FDB entry for the peer's VTEP (by the peer device's live MAC).
pub(super) async fn vxlan_fdb_for(lab: &Lab, node: &str, peer: &str) -> Result<(String, FdbEntry)> {
    let dev = vxlan_device(lab)?;
    let peer_mac = live_link(lab.host(peer)?, &dev)
        .await?
        .mac
        .ok_or_else(|| Error::other(format!("{peer} {dev} has no MAC")))?;
    let h = lab.host(node)?;
    let l = live_link(h, &dev).await?;
    let e = netlink::fdb(h.handle())
        .await
        .map_err(|e| nl_error(node, "listing the fdb", e))?
        .into_iter()
        .find(|e| e.index == l.index && e.mac == peer_mac && e.dst.is_some())
        .ok_or_else(|| {
            Error::NotApplicable(format!("{node} {dev} has no FDB entry for {peer}'s VTEP"))
        })?;
    Ok((
        dev.clone(),
        FdbEntry {
            ifname: dev,
            mac: e.mac,
            dst: e.dst,
            is_self: true,
        },
    ))
}

pub(super) async fn vxlan_port(lab: &Lab, node: &str, port: u16) -> Result<Vec<Undo>> {
    let dev = vxlan_device(lab)?;
    let (vni, local, under) = match lab
        .plan()
        .host(node)
        .and_then(|p| p.iface(&dev))
        .map(|i| i.kind.clone())
    {
        Some(IfaceKind::Vxlan {
            vni,
            local,
            dev: under,
            ..
        }) => (vni, local, under),
        _ => {
            return Err(Error::NotApplicable(format!(
                "{node} has no vxlan device in the plan"
            )))
        }
    };
    let h = lab.host(node)?;
    let l = live_link(h, &dev).await?;
    let live_port = l
        .details
        .iter()
        .find_map(|d| d.strip_prefix("dstport "))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    if live_port == port {
        return Err(Error::NotApplicable(format!(
            "{node} {dev} already uses port {port}"
        )));
    }
    let snap = undo::snap_link(lab, node, &dev).await?;
    netlink::del_link(h.handle(), l.index)
        .await
        .map_err(|e| nl_error(node, format!("deleting {dev}"), e))?;
    let under_ix = h.index(&under).await?;
    netlink::add_vxlan(
        h.handle(),
        &dev,
        vni,
        port,
        local,
        under_ix,
        snap.mac,
        Some(snap.mtu),
    )
    .await
    .map_err(|e| nl_error(node, format!("re-creating {dev} on port {port}"), e))?;
    // Everything that lived on the device, back on the new one (only the port differs).
    let undo_entry = Undo::Vxlan(Box::new(VxlanSnapshot {
        host: node.to_string(),
        link: snap,
        vni,
        port: live_port,
        local,
        dev: under,
    }));
    if let Undo::Vxlan(s) = &undo_entry {
        let ix = h.index(&dev).await?;
        for a in &s.link.addresses {
            netlink::add_address(h.handle(), ix, *a)
                .await
                .map_err(|e| nl_error(node, "re-adding an address", e))?;
        }
        for m in &s.link.routes {
            let mut m = m.clone();
            for a in m.attributes.iter_mut() {
                if let RouteAttribute::Oif(o) = a {
                    *o = ix;
                }
            }
            netlink::readd_route(h.handle(), m)
                .await
                .map_err(|e| nl_error(node, "re-adding a route", e))?;
        }
        for (ip, mac) in &s.link.neighbours {
            netlink::add_permanent_neighbour(h.handle(), ix, *ip, mac)
                .await
                .map_err(|e| nl_error(node, "re-adding a neighbour", e))?;
        }
        for e in &s.link.fdb {
            if let Some(d) = e.dst {
                netlink::add_fdb(h.handle(), ix, &e.mac, d)
                    .await
                    .map_err(|err| nl_error(node, "re-adding an fdb entry", err))?;
            }
        }
        lab.wait_links_up(node, std::slice::from_ref(&dev)).await?;
    }
    Ok(vec![undo_entry])
}

/// Sets the MTU of a node's pod side: the bridge, the pods' host veths, the pods' eth0.
pub(super) async fn pod_mtu(lab: &Lab, node: &str, mtu: u32) -> Result<Vec<Undo>> {
    let t = lab.topology().clone();
    let mut targets: Vec<(String, String)> = Vec::new();
    for (pod, p) in t.pods_of(node) {
        targets.push((node.to_string(), p.host_veth.clone()));
        targets.push((pod.to_string(), p.ifname.clone()));
    }
    let bridge = t
        .has_bridge()
        .then(|| {
            t.host(node)
                .and_then(|h| h.as_node())
                .map(|n| n.bridge.clone())
        })
        .flatten();
    let mut current = Vec::new();
    for (h, i) in targets.iter().chain(
        bridge
            .iter()
            .map(|b| (node.to_string(), b.clone()))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        current.push((h.clone(), i.clone(), live_link(lab.host(h)?, i).await?.mtu));
    }
    if current.iter().all(|c| c.2 == mtu) {
        return Err(Error::NotApplicable(format!(
            "{node}'s pod side already has mtu {mtu}"
        )));
    }
    // Raising: ports before the bridge; lowering: the bridge first.
    let raising = current.iter().any(|c| c.2 < mtu);
    if !raising {
        current.reverse();
    }
    let mut log = Vec::new();
    for (h, i, old) in current {
        let lh = lab.host(&h)?;
        let ix = lh.index(&i).await?;
        netlink::set_mtu(lh.handle(), ix, mtu)
            .await
            .map_err(|e| nl_error(&h, format!("setting {i} mtu {mtu}"), e))?;
        log.push(Undo::LinkMtu {
            host: h,
            ifname: i,
            mtu: old,
        });
    }
    Ok(log)
}

/// What can vanish from a host as a side effect (routes, permanent neighbours, vxlan FDB).
pub(super) struct Restorable {
    routes: Vec<(RouteMessage, String, String)>,
    neighbours: Vec<(String, IpAddr, Vec<u8>)>,
    fdb: Vec<FdbEntry>,
}

pub(super) async fn capture_restorable(lab: &Lab) -> Result<HashMap<String, Restorable>> {
    let mut out = HashMap::new();
    for h in lab.hosts() {
        let links = netlink::links(h.handle())
            .await
            .map_err(|e| nl_error(&h.name, "listing links", e))?;
        let name = |ix: u32| links.iter().find(|l| l.index == ix).map(|l| l.name.clone());
        let routes = restorable_routes(h, &name).await?;
        // Both families: a link going down flushes its permanent NDP entries too.
        let v4 = netlink::neighbours(h.handle())
            .await
            .map_err(|e| nl_error(&h.name, "listing neighbours", e))?
            .into_iter()
            .map(|n| (n.index, IpAddr::V4(n.ip), n.mac, n.state));
        let v6 = crate::nl6::neighbours6(h.handle())
            .await
            .map_err(|e| nl_error(&h.name, "listing IPv6 neighbours", e))?
            .into_iter()
            .map(|n| (n.index, IpAddr::V6(n.ip), n.mac, n.state));
        let neighbours = v4
            .chain(v6)
            .filter(|(_, _, _, state)| state == "permanent")
            .filter_map(|(ix, ip, mac, _)| Some((name(ix)?, ip, mac?)))
            .collect();
        let fdb = netlink::fdb(h.handle())
            .await
            .map_err(|e| nl_error(&h.name, "listing the fdb", e))?
            .into_iter()
            .filter(|e| e.is_self && e.dst.is_some())
            .filter_map(|e| {
                Some(FdbEntry {
                    ifname: name(e.index)?,
                    mac: e.mac,
                    dst: e.dst,
                    is_self: true,
                })
            })
            .collect();
        out.insert(
            h.name.clone(),
            Restorable {
                routes,
                neighbours,
                fdb,
            },
        );
    }
    Ok(out)
}

/// The routes someone added to a host's main table, both families, each with its device's name
/// and a key to find it again: a link going down takes its IPv4 and IPv6 routes with it.
async fn restorable_routes(
    h: &LabHost,
    name: &impl Fn(u32) -> Option<String>,
) -> Result<Vec<(RouteMessage, String, String)>> {
    let mut out = Vec::new();
    for m in netlink::routes_raw(h.handle())
        .await
        .map_err(|e| nl_error(&h.name, "listing routes", e))?
    {
        let Some(r) = netlink::parse_route(&m) else {
            continue;
        };
        if r.table != 254 || r.protocol == "kernel" || r.kind == "local" || r.kind == "broadcast" {
            continue;
        }
        let dev = r.oif.and_then(name).unwrap_or_default();
        let key = route_key(&r.dst, &r.gateway, &dev, &r.kind, r.metric);
        out.push((m, dev, key));
    }
    // The kernel's own IPv6 routes (prefix routes, fe80::/64) come back with their link.
    for m in crate::nl6::added_routes6(h.handle(), None)
        .await
        .map_err(|e| nl_error(&h.name, "listing IPv6 routes", e))?
    {
        let Some(r) = crate::nl6::parse_route6(&m) else {
            continue;
        };
        let dev = r.oif.and_then(name).unwrap_or_default();
        let metric = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        });
        let key = route_key(&r.dst, &r.gateway, &dev, &r.kind, metric);
        out.push((m, dev, key));
    }
    Ok(out)
}

/// What tells a captured route from another, in either family: found again by it after a change.
fn route_key(
    dst: &impl std::fmt::Display,
    gateway: &impl std::fmt::Debug,
    dev: &str,
    kind: &str,
    metric: Option<u32>,
) -> String {
    format!("{dst} {gateway:?} {dev} {kind} {}", metric.unwrap_or(0))
}

pub(super) fn vanished(
    before: &HashMap<String, Restorable>,
    after: &HashMap<String, Restorable>,
) -> Vec<Undo> {
    let mut out = Vec::new();
    for (host, b) in before {
        let Some(a) = after.get(host) else { continue };
        let routes: Vec<(RouteMessage, String)> = b
            .routes
            .iter()
            .filter(|(_, _, k)| !a.routes.iter().any(|(_, _, k2)| k2 == k))
            .map(|(m, dev, _)| (m.clone(), dev.clone()))
            .collect();
        let neighbours: Vec<&(String, IpAddr, Vec<u8>)> = b
            .neighbours
            .iter()
            .filter(|n| !a.neighbours.contains(n))
            .collect();
        let fdb: Vec<FdbEntry> = b
            .fdb
            .iter()
            .filter(|e| {
                !a.fdb
                    .iter()
                    .any(|x| x.ifname == e.ifname && x.mac == e.mac && x.dst == e.dst)
            })
            .cloned()
            .collect();
        if !routes.is_empty() || !neighbours.is_empty() || !fdb.is_empty() {
            out.push(Undo::Restore {
                host: host.clone(),
                routes,
                neighbours: neighbours.into_iter().cloned().collect(),
                fdb,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_rules_go_back_where_they_were() {
        let before = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j A\n-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE\n-A POSTROUTING -j B\n-A X -j MASQUERADE\nCOMMIT\n";
        let after =
            "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j A\n-A POSTROUTING -j B\nCOMMIT\n";
        assert_eq!(
            reinsert_lines(before, after),
            [
                "-I POSTROUTING 2 -s 10.0.0.0/8 -j MASQUERADE",
                "-I X 1 -j MASQUERADE"
            ]
        );
    }
}
