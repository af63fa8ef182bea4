//! The undo log of an injected fault: each entry puts one change back.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use netlink_packet_route::route::RouteMessage;
use serde::{Deserialize, Serialize};

use crate::error::{nl_error, Error, Result};
use crate::lab::Lab;
use crate::netns;
use crate::nft;
use crate::nl::{self as netlink, Mac, VethSpec};

#[derive(Clone, Serialize, Deserialize)]
pub enum Undo {
    /// Re-create a deleted veth pair and what lived on both ends.
    Veth(Box<VethSnapshot>),
    /// Re-create a vxlan device (deleted or changed) with its addresses, routes, neighbours, FDB.
    Vxlan(Box<VxlanSnapshot>),
    LinkAdmin {
        host: String,
        ifname: String,
        up: bool,
    },
    LinkMaster {
        host: String,
        ifname: String,
        master: Option<String>,
    },
    LinkMtu {
        host: String,
        ifname: String,
        mtu: u32,
    },
    Sysctls {
        host: String,
        values: Vec<(String, String)>,
    },
    /// Re-add nft rules that were deleted.
    NftRules(NftUndo),
    /// Run an nft script that removes what the fault added (a table, a chain, a policy).
    NftScript { host: String, script: String },
    /// Render the lab's own Kubernetes layer again on a node (kube-proxy's rules in either
    /// mode, the policies'), as kube-proxy re-syncs; then forget stale UDP flows as below.
    K8sTables { host: String },
    /// Delete the node's UDP conntrack entries to a Service that lead to no endpoint it has
    /// (met no translation while kube-proxy's rules were missing, or went to an old endpoint;
    /// see `Lab::forget_stale_udp`).
    ForgetStaleUdp { host: String },
    Address {
        host: String,
        ifname: String,
        net: Ipv4Net,
    },
    /// Re-add routes that were deleted.
    ReaddRoutes {
        host: String,
        #[serde(with = "super::route_bytes::list")]
        routes: Vec<RouteMessage>,
        /// Each route's device by name: a device deleted and re-created by another fault's
        /// heal comes back with another index. Empty in logs written before.
        #[serde(default)]
        devs: Vec<String>,
    },
    /// Delete a route that was added.
    DeleteRoute {
        host: String,
        dst: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        ifname: String,
    },
    /// Put a neighbour entry back as it was (or remove it if there was none).
    Neighbour {
        host: String,
        ifname: String,
        ip: Ipv4Addr,
        mac: Option<Vec<u8>>,
    },
    /// Re-add FDB entries that were deleted.
    ReaddFdb {
        host: String,
        entries: Vec<FdbEntry>,
    },
    /// Delete FDB entries that were added.
    DeleteFdb {
        host: String,
        entries: Vec<FdbEntry>,
    },
    /// Remove a root qdisc that was added.
    Qdisc { host: String, ifname: String },
    /// Forget a dynamic neighbour entry (so the host resolves it afresh).
    FlushNeighbour {
        host: String,
        ifname: String,
        ip: Ipv4Addr,
    },
    /// Set a bridge port's hairpin mode back.
    Hairpin {
        host: String,
        ifname: String,
        on: bool,
    },
    /// Remove an address that was added.
    RemoveAddress {
        host: String,
        ifname: String,
        net: Ipv4Net,
    },
    /// Re-add an IPv6 address (without DAD, as the lab adds them).
    Address6 {
        host: String,
        ifname: String,
        net: ipnet::Ipv6Net,
    },
    /// Remove an IPv6 address (one a fault added, or one left failed by DAD).
    DelAddress6 {
        host: String,
        ifname: String,
        net: ipnet::Ipv6Net,
    },
    /// Delete an IPv6 route that was added.
    DeleteRoute6 {
        host: String,
        dst: ipnet::Ipv6Net,
        gateway: Option<std::net::Ipv6Addr>,
        ifname: String,
    },
    /// Put an NDP entry back as it was (or remove it if there was none).
    Neighbour6 {
        host: String,
        ifname: String,
        ip: std::net::Ipv6Addr,
        mac: Option<Vec<u8>>,
    },
    /// Start the cluster DNS server again.
    StartDns,
    /// Put a pod's resolv.conf back.
    Resolv { pod: String, text: String },
    /// Put back what vanished as a side effect (routes through a link that went down, permanent
    /// neighbours flushed with it); entries already back are left alone.
    Restore {
        host: String,
        /// Each route with the name of its output interface (indexes change when links are
        /// re-created).
        #[serde(with = "super::route_bytes::named")]
        routes: Vec<(RouteMessage, String)>,
        neighbours: Vec<(String, std::net::IpAddr, Vec<u8>)>,
        fdb: Vec<FdbEntry>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbEntry {
    pub ifname: String,
    pub mac: Vec<u8>,
    pub dst: Option<Ipv4Addr>,
    /// An entry of the device itself (a vxlan's), rather than of its bridge.
    pub is_self: bool,
}

impl Undo {
    pub async fn apply(self, lab: &Lab) -> Result<()> {
        match self {
            Undo::Veth(s) => s.restore(lab).await,
            Undo::Vxlan(s) => s.restore(lab).await,
            Undo::LinkAdmin { host, ifname, up } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                netlink::set_up(h.handle(), ix, up).await.map_err(|e| {
                    nl_error(
                        &host,
                        format!("setting {ifname} {}", if up { "up" } else { "down" }),
                        e,
                    )
                })?;
                if up {
                    wait_up_both_ends(lab, &host, &ifname).await?;
                }
                Ok(())
            }
            Undo::LinkMaster {
                host,
                ifname,
                master,
            } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                let m = match &master {
                    Some(m) => Some(h.index(m).await?),
                    None => None,
                };
                netlink::set_master(h.handle(), ix, m)
                    .await
                    .map_err(|e| nl_error(&host, format!("attaching {ifname}"), e))?;
                wait_up_both_ends(lab, &host, &ifname).await
            }
            Undo::LinkMtu { host, ifname, mtu } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                netlink::set_mtu(h.handle(), ix, mtu)
                    .await
                    .map_err(|e| nl_error(&host, format!("setting {ifname} mtu {mtu}"), e))
            }
            Undo::Sysctls { host, values } => write_sysctls(lab, &host, values).await,
            Undo::NftRules(u) => u.restore(lab).await,
            Undo::Hairpin { host, ifname, on } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                netlink::set_hairpin(h.handle(), ix, on)
                    .await
                    .map_err(|e| nl_error(&host, format!("hairpin on {ifname}"), e))
            }
            Undo::StartDns => lab.start_dns(),
            Undo::RemoveAddress { host, ifname, net } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                netlink::del_address(h.handle(), ix, net)
                    .await
                    .map_err(|e| nl_error(&host, format!("removing {net} from {ifname}"), e))
            }
            Undo::Resolv { pod, text } => lab.set_resolv_conf(&pod, &text),
            Undo::NftScript { host, script } => {
                let h = lab.host(&host)?;
                h.ns.run_async(move || crate::tools::run_tool("nft", &["-f", "-"], Some(&script)))
                    .await
                    .and_then(|r| r)
                    .map(|_| ())
                    .map_err(|e| Error::io(format!("{host}: nft"), e))
            }
            Undo::K8sTables { host } => {
                lab.apply_k8s_tables(&host, &lab.topology().k8s).await?;
                lab.forget_stale_udp(&host).await.map(|_| ())
            }
            Undo::ForgetStaleUdp { host } => lab.forget_stale_udp(&host).await.map(|_| ()),
            Undo::Address { host, ifname, net } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                netlink::add_address(h.handle(), ix, net)
                    .await
                    .map_err(|e| nl_error(&host, format!("adding {net} to {ifname}"), e))
            }
            Undo::ReaddRoutes { host, routes, devs } => {
                let h = lab.host(&host)?;
                let mut routes = routes;
                if devs.len() == routes.len() {
                    for (m, dev) in routes.iter_mut().zip(&devs) {
                        set_oif(m, h.index(dev).await?);
                    }
                }
                // Link routes first: gatewayed routes may need them.
                let (direct, via): (Vec<_>, Vec<_>) = routes.into_iter().partition(|m| {
                    !m.attributes.iter().any(|a| {
                        matches!(a, netlink_packet_route::route::RouteAttribute::Gateway(_))
                    })
                });
                // One already there came back with its link (a connected route the kernel
                // adds again): the heal check compares what is left with the state before.
                for m in direct.into_iter().chain(via) {
                    match netlink::readd_route(h.handle(), m).await {
                        Err(e) if crate::error::netlink_errno(&e) != Some(libc::EEXIST) => {
                            return Err(nl_error(&host, "re-adding a route", e))
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            Undo::DeleteRoute {
                host,
                dst,
                gateway,
                ifname,
            } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                netlink::del_route(h.handle(), dst, gateway, Some(ix))
                    .await
                    .map_err(|e| nl_error(&host, format!("deleting route {dst}"), e))
            }
            Undo::Neighbour {
                host,
                ifname,
                ip,
                mac,
            } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                match mac {
                    Some(m) => netlink::add_permanent_neighbour(h.handle(), ix, ip, &m)
                        .await
                        .map_err(|e| nl_error(&host, format!("restoring neighbour {ip}"), e)),
                    None => netlink::del_neighbour(h.handle(), ix, ip)
                        .await
                        .map_err(|e| nl_error(&host, format!("removing neighbour {ip}"), e)),
                }
            }
            Undo::ReaddFdb { host, entries } => readd_fdb(lab, &host, entries).await,
            Undo::DeleteFdb { host, entries } => delete_fdb(lab, &host, entries).await,
            Undo::Restore {
                host,
                routes,
                neighbours,
                fdb,
            } => restore(lab, &host, routes, neighbours, fdb).await,
            Undo::Address6 { host, ifname, net } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                match crate::nl6::add_address6(h.handle(), ix, net).await {
                    Err(e) if crate::error::netlink_errno(&e) != Some(libc::EEXIST) => {
                        Err(nl_error(&host, format!("adding {net} to {ifname}"), e))
                    }
                    _ => Ok(()),
                }
            }
            Undo::DeleteRoute6 {
                host,
                dst,
                gateway,
                ifname,
            } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                crate::nl6::del_route6(h.handle(), dst, gateway, ix)
                    .await
                    .map_err(|e| nl_error(&host, format!("deleting route {dst}"), e))
            }
            Undo::DelAddress6 { host, ifname, net } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                match crate::nl6::del_address6(h.handle(), ix, net).await {
                    Err(e) if crate::error::netlink_errno(&e) != Some(libc::EADDRNOTAVAIL) => {
                        Err(nl_error(&host, format!("removing {net} from {ifname}"), e))
                    }
                    _ => Ok(()),
                }
            }
            Undo::Neighbour6 {
                host,
                ifname,
                ip,
                mac,
            } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                match mac {
                    Some(m) => netlink::add_permanent_neighbour(h.handle(), ix, ip, &m)
                        .await
                        .map_err(|e| nl_error(&host, format!("restoring NDP entry {ip}"), e)),
                    None => {
                        let _ = crate::nl6::del_neighbour6(h.handle(), ix, ip).await;
                        Ok(())
                    }
                }
            }
            Undo::FlushNeighbour { host, ifname, ip } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                let _ = netlink::del_neighbour(h.handle(), ix, ip).await;
                Ok(())
            }
            Undo::Qdisc { host, ifname } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                crate::nl::del_root_qdisc(h.handle(), ix)
                    .await
                    .map_err(|e| nl_error(&host, format!("removing the qdisc on {ifname}"), e))
            }
        }
    }
}

async fn readd_fdb(lab: &Lab, host: &str, entries: Vec<FdbEntry>) -> Result<()> {
    let h = lab.host(host)?;
    for e in entries {
        let ix = h.index(&e.ifname).await?;
        let r = match (e.is_self, e.dst) {
            (true, Some(d)) => netlink::add_fdb(h.handle(), ix, &e.mac, d).await,
            _ => netlink::add_bridge_fdb(h.handle(), ix, &e.mac).await,
        };
        r.map_err(|err| nl_error(host, format!("re-adding an fdb entry on {}", e.ifname), err))?;
    }
    Ok(())
}

async fn delete_fdb(lab: &Lab, host: &str, entries: Vec<FdbEntry>) -> Result<()> {
    for e in &entries {
        del_fdb(lab, host, &e.ifname, e).await?;
    }
    Ok(())
}

pub(super) async fn del_fdb(lab: &Lab, host: &str, dev: &str, e: &FdbEntry) -> Result<()> {
    let h = lab.host(host)?;
    let ix = h.index(dev).await?;
    let f = netlink::Fdb {
        index: ix,
        mac: e.mac.clone(),
        dst: e.dst,
        master: None,
        state: String::new(),
        is_self: e.is_self,
    };
    netlink::del_fdb(h.handle(), &f)
        .await
        .map_err(|err| nl_error(host, format!("deleting an fdb entry on {dev}"), err))
}

/// Puts back what vanished as a side effect; entries already back are left alone.
async fn restore(
    lab: &Lab,
    host: &str,
    routes: Vec<(RouteMessage, String)>,
    neighbours: Vec<(String, std::net::IpAddr, Vec<u8>)>,
    fdb: Vec<FdbEntry>,
) -> Result<()> {
    let h = lab.host(host)?;
    let exists = |e: &rtnetlink::Error| crate::error::netlink_errno(e) == Some(libc::EEXIST);
    for (dev, ip, mac) in neighbours {
        let ix = h.index(&dev).await?;
        netlink::add_permanent_neighbour(h.handle(), ix, ip, &mac)
            .await
            .map_err(|e| nl_error(host, format!("restoring neighbour {ip}"), e))?;
    }
    for e in fdb {
        let ix = h.index(&e.ifname).await?;
        if let Some(d) = e.dst {
            match netlink::add_fdb(h.handle(), ix, &e.mac, d).await {
                Ok(()) => {}
                Err(err) if exists(&err) => {}
                Err(err) => {
                    return Err(nl_error(
                        host,
                        format!("restoring an fdb entry on {}", e.ifname),
                        err,
                    ))
                }
            }
        }
    }
    let (direct, via): (Vec<_>, Vec<_>) = routes.into_iter().partition(|(m, _)| {
        !m.attributes
            .iter()
            .any(|a| matches!(a, netlink_packet_route::route::RouteAttribute::Gateway(_)))
    });
    for (mut m, dev) in direct.into_iter().chain(via) {
        if !dev.is_empty() {
            set_oif(&mut m, h.index(&dev).await?);
        }
        match netlink::readd_route(h.handle(), m).await {
            Ok(()) => {}
            Err(e) if exists(&e) => {}
            Err(e) => return Err(nl_error(host, "restoring a route", e)),
        }
    }
    Ok(())
}

/// Points a route at the device now at `index`.
fn set_oif(m: &mut RouteMessage, index: u32) {
    for a in m.attributes.iter_mut() {
        if let netlink_packet_route::route::RouteAttribute::Oif(o) = a {
            *o = index;
        }
    }
}

/// After bringing a veth end back, wait for carrier on both ends (a heal must leave the lab as
/// ready to probe as `up` does).
async fn wait_up_both_ends(lab: &Lab, host: &str, ifname: &str) -> Result<()> {
    let h = lab.host(host)?;
    let l = netlink::link_by_name(h.handle(), ifname)
        .await
        .map_err(|e| nl_error(host, format!("reading {ifname}"), e))?;
    if !l.as_ref().is_some_and(|l| l.admin_up) {
        return Ok(());
    }
    lab.wait_links_up(host, &[ifname.to_string()]).await?;
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
        let peer_up = netlink::link_by_name(lab.host(&peer_host)?.handle(), &peer_name)
            .await
            .ok()
            .flatten()
            .is_some_and(|l| l.admin_up);
        if peer_up {
            lab.wait_links_up(&peer_host, &[peer_name]).await?;
        }
    }
    Ok(())
}

pub async fn write_sysctls(lab: &Lab, host: &str, values: Vec<(String, String)>) -> Result<()> {
    let h = lab.host(host)?;
    h.ns.run_async(move || {
        for (k, v) in &values {
            netns::write_sysctl(k, v)?;
        }
        Ok::<(), std::io::Error>(())
    })
    .await
    .and_then(|r| r)
    .map_err(|e| Error::io(format!("{host}: sysctls"), e))
}

/// Everything needed to rebuild a link and what lived on it.
#[derive(Clone, Serialize, Deserialize)]
pub struct LinkSnap {
    pub name: String,
    pub mac: Mac,
    pub mtu: u32,
    pub up: bool,
    pub addresses: Vec<Ipv4Net>,
    #[serde(with = "super::route_bytes::list")]
    pub routes: Vec<RouteMessage>,
    pub neighbours: Vec<(Ipv4Addr, Vec<u8>)>,
    pub fdb: Vec<FdbEntry>,
    /// Per-interface sysctls that differ from a new interface's defaults.
    pub sysctls: Vec<(String, String)>,
    /// A bridge port's hairpin mode: a re-created port joins with it off.
    #[serde(default)]
    pub hairpin: bool,
    /// The IPv6 side of a dual-stack link: global addresses (the kernel makes the link-local
    /// one), routes someone added, permanent NDP entries.
    #[serde(default)]
    pub addresses6: Vec<ipnet::Ipv6Net>,
    #[serde(default, with = "super::route_bytes::list")]
    pub routes6: Vec<RouteMessage>,
    #[serde(default)]
    pub neighbours6: Vec<(std::net::Ipv6Addr, Vec<u8>)>,
}

pub async fn snap_link(lab: &Lab, host: &str, ifname: &str) -> Result<LinkSnap> {
    let h = lab.host(host)?;
    let hd = h.handle();
    let l = netlink::link_by_name(hd, ifname)
        .await
        .map_err(|e| nl_error(host, format!("reading {ifname}"), e))?
        .ok_or_else(|| Error::NotApplicable(format!("{host} has no interface {ifname}")))?;
    let mac: Mac = l
        .mac
        .as_deref()
        .and_then(|m| m.try_into().ok())
        .ok_or_else(|| Error::other(format!("{host}: {ifname} has no MAC address")))?;
    let addresses = netlink::addresses(hd)
        .await
        .map_err(|e| nl_error(host, "listing addresses", e))?
        .into_iter()
        .filter(|a| a.index == l.index)
        .map(|a| a.net)
        .collect();
    let routes = netlink::routes_raw(hd)
        .await
        .map_err(|e| nl_error(host, "listing routes", e))?
        .into_iter()
        .filter(|m| {
            netlink::parse_route(m).is_some_and(|r| {
                r.oif == Some(l.index)
                    && r.table == 254
                    && r.protocol != "kernel"
                    && r.kind == "unicast"
            })
        })
        .collect();
    let neighbours = netlink::neighbours(hd)
        .await
        .map_err(|e| nl_error(host, "listing neighbours", e))?
        .into_iter()
        .filter(|n| n.index == l.index && n.state == "permanent")
        .filter_map(|n| Some((n.ip, n.mac?)))
        .collect();
    let fdb = netlink::fdb(hd)
        .await
        .map_err(|e| nl_error(host, "listing the fdb", e))?
        .into_iter()
        .filter(|e| e.index == l.index && e.dst.is_some() && e.is_self)
        .map(|e| FdbEntry {
            ifname: ifname.to_string(),
            mac: e.mac,
            dst: e.dst,
            is_self: true,
        })
        .collect();
    let hairpin = l.details.iter().any(|d| d == "hairpin on");
    let (addresses6, routes6, neighbours6) = snap_link6(h, l.index).await?;
    let name = ifname.to_string();
    let sysctls =
        h.ns.run_async(move || {
            let mut v = Vec::new();
            for k in ["proxy_arp", "rp_filter", "forwarding"] {
                let key = format!("net/ipv4/conf/{name}/{k}");
                let default = format!("net/ipv4/conf/default/{k}");
                if let (Ok(a), Ok(d)) = (netns::read_sysctl(&key), netns::read_sysctl(&default)) {
                    if a != d {
                        v.push((key, a));
                    }
                }
            }
            v
        })
        .await
        .unwrap_or_default();
    Ok(LinkSnap {
        name: ifname.to_string(),
        mac,
        mtu: l.mtu,
        up: l.admin_up,
        addresses,
        routes,
        neighbours,
        fdb,
        sysctls,
        hairpin,
        addresses6,
        routes6,
        neighbours6,
    })
}

type Link6 = (
    Vec<ipnet::Ipv6Net>,
    Vec<RouteMessage>,
    Vec<(std::net::Ipv6Addr, Vec<u8>)>,
);

/// A link's IPv6 side (see `LinkSnap`).
async fn snap_link6(h: &crate::lab::LabHost, index: u32) -> Result<Link6> {
    let hd = h.handle();
    let host = &h.name;
    let addresses = crate::nl6::addresses6(hd)
        .await
        .map_err(|e| nl_error(host, "listing IPv6 addresses", e))?
        .into_iter()
        .filter(|a| a.index == index && !a.is_link_local())
        .map(|a| a.net)
        .collect();
    let routes = crate::nl6::routes_raw6(hd)
        .await
        .map_err(|e| nl_error(host, "listing IPv6 routes", e))?
        .into_iter()
        .filter(|m| {
            m.header.protocol != netlink_packet_route::route::RouteProtocol::Kernel
                && crate::nl6::parse_route6(m)
                    .is_some_and(|r| r.oif == Some(index) && r.kind == "unicast")
        })
        .collect();
    let neighbours = crate::nl6::neighbours6(hd)
        .await
        .map_err(|e| nl_error(host, "listing NDP entries", e))?
        .into_iter()
        .filter(|n| n.index == index && n.state == "permanent")
        .filter_map(|n| Some((n.ip, n.mac?)))
        .collect();
    Ok((addresses, routes, neighbours))
}

/// Puts back what lived on a re-created link.
async fn restore_on(lab: &Lab, host: &str, side: &LinkSnap) -> Result<()> {
    let h = lab.host(host)?;
    let ix = h.index(&side.name).await?;
    let hd = h.handle();
    if side.up {
        netlink::set_up(hd, ix, true)
            .await
            .map_err(|e| nl_error(host, format!("bringing {} up", side.name), e))?;
    }
    for a in &side.addresses {
        netlink::add_address(hd, ix, *a)
            .await
            .map_err(|e| nl_error(host, format!("adding {a} to {}", side.name), e))?;
    }
    // Link routes first: a gatewayed route may go via one (a routed pod's default route via
    // its link-local gateway).
    let gatewayed = |m: &RouteMessage| {
        m.attributes
            .iter()
            .any(|a| matches!(a, netlink_packet_route::route::RouteAttribute::Gateway(_)))
    };
    for a in &side.addresses6 {
        crate::nl6::add_address6(hd, ix, *a)
            .await
            .map_err(|e| nl_error(host, format!("adding {a} to {}", side.name), e))?;
    }
    let mut routes: Vec<&RouteMessage> = side.routes.iter().chain(&side.routes6).collect();
    routes.sort_by_key(|m| gatewayed(m));
    for m in routes {
        let mut m = m.clone();
        // The link is new: so is its index.
        for a in m.attributes.iter_mut() {
            if let netlink_packet_route::route::RouteAttribute::Oif(o) = a {
                *o = ix;
            }
        }
        netlink::readd_route(hd, m)
            .await
            .map_err(|e| nl_error(host, format!("re-adding a route through {}", side.name), e))?;
    }
    let v6 = side
        .neighbours6
        .iter()
        .map(|(ip, mac)| (IpAddr::V6(*ip), mac));
    for (ip, mac) in side
        .neighbours
        .iter()
        .map(|(ip, mac)| (IpAddr::V4(*ip), mac))
        .chain(v6)
    {
        netlink::add_permanent_neighbour(hd, ix, ip, mac)
            .await
            .map_err(|e| nl_error(host, format!("adding neighbour {ip}"), e))?;
    }
    for e in &side.fdb {
        if let Some(d) = e.dst {
            netlink::add_fdb(hd, ix, &e.mac, d).await.map_err(|err| {
                nl_error(host, format!("adding an fdb entry on {}", side.name), err)
            })?;
        }
    }
    if !side.sysctls.is_empty() {
        write_sysctls(lab, host, side.sysctls.clone()).await?;
    }
    if side.hairpin {
        netlink::set_hairpin(hd, ix, true)
            .await
            .map_err(|e| nl_error(host, format!("hairpin on {}", side.name), e))?;
    }
    Ok(())
}

/// A deleted veth pair.
#[derive(Clone, Serialize, Deserialize)]
pub struct VethSnapshot {
    pub node: String,
    pub pod: String,
    pub host_side: LinkSnap,
    pub pod_side: LinkSnap,
    pub master: Option<String>,
}

impl VethSnapshot {
    async fn restore(self, lab: &Lab) -> Result<()> {
        let n = lab.host(&self.node)?;
        let p = lab.host(&self.pod)?;
        let master = match &self.master {
            Some(m) => Some(n.index(m).await?),
            None => None,
        };
        netlink::add_veth(
            n.handle(),
            VethSpec {
                name: &self.host_side.name,
                mac: self.host_side.mac,
                mtu: Some(self.host_side.mtu),
                master,
                // Up while what lived on it goes back (a gateway route needs a live link);
                // set down below if it was.
                up: true,
                peer_name: &self.pod_side.name,
                peer_mac: self.pod_side.mac,
                peer_mtu: Some(self.pod_side.mtu),
                peer_ns: &p.ns,
            },
        )
        .await
        .map_err(|e| {
            nl_error(
                &self.node,
                format!("re-creating {}", self.host_side.name),
                e,
            )
        })?;
        restore_on(lab, &self.pod, &self.pod_side).await?;
        restore_on(lab, &self.node, &self.host_side).await?;
        for (host, side) in [(&self.node, &self.host_side), (&self.pod, &self.pod_side)] {
            if !side.up {
                let h = lab.host(host)?;
                let ix = h.index(&side.name).await?;
                netlink::set_up(h.handle(), ix, false)
                    .await
                    .map_err(|e| nl_error(host, format!("setting {} down", side.name), e))?;
            }
        }
        if self.host_side.up && self.pod_side.up {
            lab.wait_links_up(&self.node, std::slice::from_ref(&self.host_side.name))
                .await?;
            lab.wait_links_up(&self.pod, std::slice::from_ref(&self.pod_side.name))
                .await?;
        }
        Ok(())
    }
}

/// A vxlan device as it was.
#[derive(Clone, Serialize, Deserialize)]
pub struct VxlanSnapshot {
    pub host: String,
    pub link: LinkSnap,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub dev: String,
}

impl VxlanSnapshot {
    async fn restore(self, lab: &Lab) -> Result<()> {
        let h = lab.host(&self.host)?;
        if let Ok(Some(l)) = netlink::link_by_name(h.handle(), &self.link.name).await {
            netlink::del_link(h.handle(), l.index)
                .await
                .map_err(|e| nl_error(&self.host, format!("deleting {}", self.link.name), e))?;
        }
        let dev = h.index(&self.dev).await?;
        netlink::add_vxlan(
            h.handle(),
            &self.link.name,
            self.vni,
            self.port,
            self.local,
            dev,
            self.link.mac,
            Some(self.link.mtu),
        )
        .await
        .map_err(|e| nl_error(&self.host, format!("re-creating {}", self.link.name), e))?;
        restore_on(lab, &self.host, &self.link).await?;
        lab.wait_links_up(&self.host, std::slice::from_ref(&self.link.name))
            .await
    }
}

/// Deleted nft rules to put back.
#[derive(Clone, Serialize, Deserialize)]
pub struct NftUndo {
    pub host: String,
    /// Deleted native rules in ruleset order, with their index in the chain before deletion.
    /// (nft 1.0.6 places a JSON `add` by `index` only, not by handle.)
    pub native: Vec<(nftables::schema::Rule<'static>, usize)>,
    /// iptables-nft tables whose xt rules were deleted: (table, `iptables-restore --noflush`
    /// lines re-inserting each rule at its old position).
    pub iptables: Vec<(String, Vec<String>)>,
    /// The same for ip6tables-nft tables (ip6tables-restore lines).
    #[serde(default)]
    pub ip6tables: Vec<(String, Vec<String>)>,
}

impl NftUndo {
    async fn restore(self, lab: &Lab) -> Result<()> {
        let h = lab.host(&self.host)?;
        let v4 = self
            .iptables
            .into_iter()
            .map(|t| ("iptables-nft-restore", t));
        let v6 = self
            .ip6tables
            .into_iter()
            .map(|t| ("ip6tables-nft-restore", t));
        for (tool, (table, lines)) in v4.chain(v6) {
            let host = self.host.clone();
            let input = format!("*{table}\n{}\nCOMMIT\n", lines.join("\n"));
            h.ns.run_async(move || crate::tools::run_tool(tool, &["--noflush"], Some(&input)))
                .await
                .and_then(|r| r)
                .map_err(|e| Error::io(format!("{host}: {tool}"), e))?;
        }
        // In chain order, each rule goes right after the rule now at its old index minus one.
        // A rule already back is left alone: a later fault's heal may have rendered its whole
        // table again (kube-proxy's, as a re-sync does), and a second copy would stay behind.
        let live = nft::list(&h.ns, &self.host).await?;
        for (rule, index) in self.native {
            let back = nft::rules(&live).any(|r| {
                (r.family, &r.table, &r.chain, &r.expr)
                    == (rule.family, &rule.table, &rule.chain, &rule.expr)
            });
            if back {
                continue;
            }
            let mut b = nftables::batch::Batch::new();
            b.add_cmd(nft::readd_cmd(&rule, index.checked_sub(1)));
            nft::apply(&h.ns, &self.host, b.to_nftables()).await?;
        }
        Ok(())
    }
}
