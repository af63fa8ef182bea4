//! The state of a lab, captured from the kernel and normalised so two captures compare: links,
//! addresses, routes, permanent neighbours, forwarding sysctls and nft rules, per host. Nothing
//! unstable is kept: no ifindexes, no MACs (a MAC shows as the lab interface that owns it), no
//! rule handles or counters, no dynamic neighbour entries.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::{nl_error, Result};
use crate::lab::{IfaceKind, Lab, LabHost};
use crate::netns;
use crate::nft::{self, RulesetText};
use crate::nl::{self as netlink, Link};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkState {
    pub kind: String,
    pub admin_up: bool,
    pub oper: String,
    pub mtu: u32,
    pub master: Option<String>,
    /// For a veth: the other end as `host:ifname` (`?` when outside the lab).
    pub peer: Option<String>,
    /// `planned` when the MAC is the one the lab gave it, else `changed`.
    pub mac: String,
    /// Kind-specific facts: vxlan VNI, port, local address; bridge port flags.
    pub details: Vec<String>,
}

impl LinkState {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} (oper {}) mtu {}",
            self.kind,
            if self.admin_up { "up" } else { "down" },
            self.oper,
            self.mtu
        );
        if let Some(m) = &self.master {
            s.push_str(&format!(" master {m}"));
        }
        if let Some(p) = &self.peer {
            s.push_str(&format!(" peer {p}"));
        }
        if self.mac != "planned" {
            s.push_str(&format!(" mac {}", self.mac));
        }
        for d in &self.details {
            s.push_str(&format!(" {d}"));
        }
        s
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostState {
    pub links: BTreeMap<String, LinkState>,
    pub addresses: BTreeSet<String>,
    pub routes: BTreeSet<String>,
    pub neighbours: BTreeSet<String>,
    /// Policy routing rules (`ip rule`).
    pub rules: BTreeSet<String>,
    /// Forwarding database entries of overlay devices, and static entries on bridge ports.
    pub fdb: BTreeSet<String>,
    /// Qdiscs other than the kernel's defaults (`noqueue`, `noop`), as `dev IF PARENT KIND ...`.
    pub qdiscs: BTreeSet<String>,
    pub sysctls: BTreeMap<String, String>,
    pub nft: RulesetText,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LabState {
    /// Hosts in lab order.
    pub hosts: Vec<(String, HostState)>,
}

impl LabState {
    pub fn host(&self, name: &str) -> Option<&HostState> {
        self.hosts.iter().find(|(n, _)| n == name).map(|(_, h)| h)
    }
}

/// Per-interface sysctls that decide forwarding and filtering.
pub const IFACE_SYSCTLS: [&str; 4] = ["forwarding", "rp_filter", "proxy_arp", "route_localnet"];

/// Captures the state of every namespace of the lab, veth peers resolved to `host:ifname`.
pub async fn capture(lab: &Lab) -> Result<LabState> {
    let mut s = capture_links_unresolved(lab).await?;
    resolve_peers(lab, &mut s).await?;
    crate::testhook::pause("capture");
    Ok(s)
}

async fn capture_links_unresolved(lab: &Lab) -> Result<LabState> {
    let mut raw = Vec::new();
    for h in lab.hosts() {
        raw.push(read_host(h));
    }
    let raw = futures::future::try_join_all(raw).await?;
    let macs = lab_macs(lab, &raw);
    let mut order: Vec<String> = lab.topology().namespace_names();
    order.retain(|n| raw.iter().any(|r| &r.0 == n));
    let mut hosts = Vec::new();
    for name in order {
        let (_, links, addrs, routes, neigh, sysctls, nft_text, rules, fdb, qdiscs, v6) =
            raw.iter().find(|r| r.0 == name).expect("captured");
        let by_index: BTreeMap<u32, &Link> = links.iter().map(|l| (l.index, l)).collect();
        let ifname = |i: u32| {
            by_index
                .get(&i)
                .map(|l| l.name.clone())
                .unwrap_or_else(|| format!("if{i}"))
        };
        let plan = lab.plan().host(&name);
        let mut hs = HostState {
            links: link_states(links, plan, &ifname),
            rules: rules.iter().cloned().collect(),
            qdiscs: qdiscs
                .iter()
                .filter(|q| q.kind != "noqueue" && q.kind != "noop")
                .map(|q| render_qdisc(q, &ifname))
                .collect(),
            fdb: fdb_lines(fdb, &by_index, &macs),
            ..Default::default()
        };
        for a in addrs {
            hs.addresses
                .insert(format!("{} {}", ifname(a.index), a.net));
        }
        for r in routes {
            if r.table == 255 || r.kind == "local" || r.kind == "broadcast" {
                continue;
            }
            hs.routes.insert(render_route(r, &ifname));
        }
        for n in neigh.iter().filter(|n| n.state == "permanent") {
            hs.neighbours.insert(neighbour_line(
                n.ip,
                &ifname(n.index),
                n.mac.as_deref(),
                &macs,
            ));
        }
        add_v6(&mut hs, v6, &ifname, &macs);
        hs.sysctls = sysctls.clone();
        hs.nft = nft::parse_text(nft_text);
        hosts.push((name, hs));
    }
    Ok(LabState { hosts })
}

/// The IPv6 lines of a host's state, as the IPv4 ones read (the kernel's own link-local
/// addresses and routes left out: every interface has them).
fn add_v6(
    hs: &mut HostState,
    v6: &Raw6,
    ifname: &impl Fn(u32) -> String,
    macs: &BTreeMap<Vec<u8>, String>,
) {
    for a in v6.addrs.iter().filter(|a| !a.is_link_local()) {
        let dad = if a.dadfailed { " dadfailed" } else { "" };
        hs.addresses
            .insert(format!("{} {}{dad}", ifname(a.index), a.net));
    }
    for r in &v6.routes {
        let link_local = r.dst.addr().is_unicast_link_local();
        if link_local || r.kind != "unicast" && r.kind != "blackhole" && r.kind != "unreachable" {
            continue;
        }
        let dst = if r.dst.prefix_len() == 0 {
            "default (IPv6)".to_string()
        } else {
            r.dst.to_string()
        };
        let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let dev = r
            .oif
            .map(|i| format!(" dev {}", ifname(i)))
            .unwrap_or_default();
        let kind = if r.kind == "unicast" {
            String::new()
        } else {
            format!("{} ", r.kind)
        };
        hs.routes.insert(format!("{kind}{dst}{via}{dev}"));
    }
    for n in v6.neigh.iter().filter(|n| n.state == "permanent") {
        hs.neighbours.insert(neighbour_line(
            n.ip,
            &ifname(n.index),
            n.mac.as_deref(),
            macs,
        ));
    }
}

/// A permanent neighbour (ARP or NDP) entry, its MAC named by the lab interface that has it.
fn neighbour_line(
    ip: impl std::fmt::Display,
    dev: &str,
    mac: Option<&[u8]>,
    macs: &BTreeMap<Vec<u8>, String>,
) -> String {
    let owner = mac
        .map(|m| {
            macs.get(m)
                .cloned()
                .unwrap_or_else(|| "a MAC outside the lab".into())
        })
        .unwrap_or_else(|| "no lladdr".into());
    format!("{ip} dev {dev} lladdr {owner} permanent")
}

/// Which lab interface owns which MAC, to show neighbour and FDB entries without MACs; MACs of
/// interfaces that are gone still belong to the interface the lab gave them to.
fn lab_macs(lab: &Lab, raw: &[RawHost]) -> BTreeMap<Vec<u8>, String> {
    let mut macs: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    for (name, links, ..) in raw {
        for l in links {
            if let Some(m) = &l.mac {
                macs.entry(m.clone())
                    .or_insert_with(|| format!("{name}:{}", l.name));
            }
        }
    }
    for hp in &lab.plan().hosts {
        for i in hp.ifaces.iter().filter(|i| i.mac.iter().any(|b| *b != 0)) {
            macs.entry(i.mac.to_vec())
                .or_insert_with(|| format!("{}:{}", hp.name, i.name));
        }
    }
    macs
}

/// Each link's state, compared with the plan where it says something.
fn link_states(
    links: &[Link],
    plan: Option<&crate::lab::HostPlan>,
    ifname: &dyn Fn(u32) -> String,
) -> BTreeMap<String, LinkState> {
    let mut out = BTreeMap::new();
    for l in links {
        let planned_mac = plan.and_then(|p| p.iface(&l.name)).map(|i| i.mac.to_vec());
        out.insert(
            l.name.clone(),
            LinkState {
                kind: l.kind.clone().unwrap_or_else(|| {
                    if l.name == "lo" {
                        "loopback".into()
                    } else {
                        "device".into()
                    }
                }),
                admin_up: l.admin_up,
                // Linkwatch reports a new veth as "unknown" for a while before "up": with
                // carrier, both mean up.
                oper: if l.is_oper_up() {
                    "up".to_string()
                } else {
                    l.oper.clone()
                },
                mtu: l.mtu,
                master: l.master.map(ifname),
                peer: None,
                mac: match (&planned_mac, &l.mac) {
                    // A zero MAC in the plan: a plugin chose it, nothing to compare.
                    (Some(p), Some(m)) if p != m && p.iter().any(|b| *b != 0) => "changed".into(),
                    _ => "planned".into(),
                },
                details: l.details.clone(),
            },
        );
    }
    out
}

/// The FDB entries a lab sets (static ones of its ports and vxlan devices), each with the
/// owner of its MAC.
fn fdb_lines(
    fdb: &[netlink::Fdb],
    by_index: &BTreeMap<u32, &Link>,
    macs: &BTreeMap<Vec<u8>, String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in fdb {
        let Some(dev) = by_index.get(&e.index) else {
            continue;
        };
        let is_vxlan = dev.kind.as_deref() == Some("vxlan");
        let own = dev.mac.as_deref() == Some(e.mac.as_slice())
            || e.master
                .and_then(|m| by_index.get(&m))
                .is_some_and(|b| b.mac.as_deref() == Some(e.mac.as_slice()));
        let keep = if is_vxlan {
            e.state != "dynamic"
        } else {
            !e.is_self && !own && e.state != "dynamic" && e.master.is_some()
        };
        if !keep || e.mac.first().is_some_and(|b| b & 1 == 1) {
            continue;
        }
        let owner = if e.mac.iter().all(|b| *b == 0) {
            "00:00:00:00:00:00".to_string()
        } else {
            macs.get(&e.mac)
                .cloned()
                .unwrap_or_else(|| "a MAC outside the lab".into())
        };
        let mut line = format!("{owner} dev {}", dev.name);
        if let Some(d) = e.dst {
            line.push_str(&format!(" dst {d}"));
        }
        if let Some(m) = e.master.and_then(|m| by_index.get(&m)) {
            line.push_str(&format!(" master {}", m.name));
        }
        line.push_str(&format!(" {}", e.state));
        out.insert(line);
    }
    out
}

type RawHost = (
    String,
    Vec<Link>,
    Vec<netlink::Addr>,
    Vec<netlink::Route>,
    Vec<netlink::Neighbour>,
    BTreeMap<String, String>,
    String,
    Vec<String>,
    Vec<netlink::Fdb>,
    Vec<netlink::Qdisc>,
    Raw6,
);

/// A host's IPv6 state: addresses, main-table routes, NDP entries (empty where IPv6 is off).
#[derive(Default)]
struct Raw6 {
    addrs: Vec<crate::nl6::Addr6>,
    routes: Vec<crate::nl6::Route6>,
    neigh: Vec<crate::nl6::Neighbour6>,
}

/// The IPv6 state of a host whose address dump holds `addrs` (routes and NDP entries are
/// asked for only where IPv6 has an address).
async fn read_host6(h: &LabHost, addrs: Vec<crate::nl6::Addr6>) -> Result<Raw6> {
    let (name, hd) = (&h.name, h.handle());
    if addrs.is_empty() {
        return Ok(Raw6::default());
    }
    let routes = crate::nl6::routes6(hd)
        .await
        .map_err(|e| nl_error(name, "listing IPv6 routes", e))?;
    let neigh = crate::nl6::neighbours6(hd)
        .await
        .map_err(|e| nl_error(name, "listing NDP entries", e))?;
    Ok(Raw6 {
        addrs,
        routes,
        neigh,
    })
}

async fn read_host(h: &LabHost) -> Result<RawHost> {
    let name = h.name.clone();
    let hd = h.handle();
    let links = netlink::links(hd)
        .await
        .map_err(|e| nl_error(&name, "listing links", e))?;
    let dump = netlink::address_dump(hd)
        .await
        .map_err(|e| nl_error(&name, "listing addresses", e))?;
    let addrs = dump.iter().filter_map(netlink::parse_addr).collect();
    let routes = netlink::routes(hd)
        .await
        .map_err(|e| nl_error(&name, "listing routes", e))?;
    let neigh = netlink::neighbours(hd)
        .await
        .map_err(|e| nl_error(&name, "listing neighbours", e))?;
    let ifnames: Vec<String> = links.iter().map(|l| l.name.clone()).collect();
    let sysctls =
        h.ns.run_async(move || read_sysctls(&ifnames))
            .await
            .map_err(|e| crate::Error::io(format!("{name}: reading sysctls"), e))?;
    let nft_text = nft::list_text(&h.ns, &name).await?;
    let rules = netlink::rules(hd)
        .await
        .map_err(|e| nl_error(&name, "listing rules", e))?;
    let fdb = netlink::fdb(hd)
        .await
        .map_err(|e| nl_error(&name, "listing the fdb", e))?;
    let qdiscs = netlink::qdiscs(hd)
        .await
        .map_err(|e| nl_error(&name, "listing qdiscs", e))?;
    let v6 = read_host6(h, dump.iter().filter_map(crate::nl6::parse_addr6).collect()).await?;
    Ok((
        name, links, addrs, routes, neigh, sysctls, nft_text, rules, fdb, qdiscs, v6,
    ))
}

/// Call inside the namespace.
pub fn read_sysctls(ifnames: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |key: String, path: String| {
        if let Ok(v) = std::fs::read_to_string(&path) {
            out.insert(key, v.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    };
    put(
        "net.ipv4.ip_forward".into(),
        netns::sysctl_path("net.ipv4.ip_forward"),
    );
    put(
        "net.bridge.bridge-nf-call-iptables".into(),
        netns::sysctl_path("net.bridge.bridge-nf-call-iptables"),
    );
    // IPv6's, where IPv6 is on (a dual-stack lab): an IPv4 lab's state reads as it always did.
    let v6_on = std::fs::read_to_string(netns::sysctl_path("net.ipv6.conf.all.disable_ipv6"))
        .is_ok_and(|v| v.trim() == "0");
    if v6_on {
        for k in [
            "net.ipv6.conf.all.forwarding",
            "net.ipv6.conf.all.disable_ipv6",
            "net.bridge.bridge-nf-call-ip6tables",
        ] {
            put(k.into(), netns::sysctl_path(k));
        }
    }
    for dev in ["all", "default"]
        .into_iter()
        .map(String::from)
        .chain(ifnames.iter().filter(|n| *n != "lo").cloned())
    {
        for k in IFACE_SYSCTLS {
            put(
                format!("net.ipv4.conf.{dev}.{k}"),
                format!("/proc/sys/net/ipv4/conf/{dev}/{k}"),
            );
        }
    }
    out
}

/// `dev eth0 root tbf rate 1000000bit`.
fn render_qdisc(q: &netlink::Qdisc, ifname: &impl Fn(u32) -> String) -> String {
    let mut line = format!("dev {} {} {}", ifname(q.index), q.parent, q.kind);
    if let Some(r) = q.rate {
        line.push_str(&format!(" rate {r}bit"));
    }
    line
}

fn render_route(r: &netlink::Route, ifname: &impl Fn(u32) -> String) -> String {
    let mut s = String::new();
    if r.kind != "unicast" {
        s.push_str(&r.kind);
        s.push(' ');
    }
    if r.dst.prefix_len() == 0 {
        s.push_str("default");
    } else {
        s.push_str(&r.dst.to_string());
    }
    if let Some(g) = r.gateway {
        s.push_str(&format!(" via {g}"));
    }
    if let Some(o) = r.oif {
        s.push_str(&format!(" dev {}", ifname(o)));
    }
    if r.protocol == "kernel" {
        s.push_str(" proto kernel");
    }
    if r.scope == "link" {
        s.push_str(" scope link");
    }
    if let Some(p) = r.prefsrc {
        s.push_str(&format!(" src {p}"));
    }
    if let Some(m) = r.metric.filter(|m| *m != 0) {
        s.push_str(&format!(" metric {m}"));
    }
    if r.table != 254 {
        s.push_str(&format!(" table {}", r.table));
    }
    s
}

/// Fills in veth peers as `host:ifname`, asking each namespace which id it gives the others.
pub async fn resolve_peers(lab: &Lab, state: &mut LabState) -> Result<()> {
    for (host, hs) in state.hosts.iter_mut() {
        let h = lab.host(host)?;
        let links = netlink::links(h.handle())
            .await
            .map_err(|e| nl_error(host, "listing links", e))?;
        for l in links.iter().filter(|l| l.kind.as_deref() == Some("veth")) {
            let peer = peer_of(lab, host, l).await?;
            if let Some(ls) = hs.links.get_mut(&l.name) {
                ls.peer = Some(peer.unwrap_or_else(|| "?".into()));
            }
        }
    }
    Ok(())
}

/// The other end of a veth as `host:ifname`, if it is in the lab.
pub async fn peer_of(lab: &Lab, host: &str, l: &Link) -> Result<Option<String>> {
    let Some(peer_index) = l.link else {
        return Ok(None);
    };
    let h = lab.host(host)?;
    let Some(nsid) = l.link_netnsid else {
        // Both ends in one namespace.
        let links = netlink::links(h.handle())
            .await
            .map_err(|e| nl_error(host, "listing links", e))?;
        return Ok(links
            .iter()
            .find(|x| x.index == peer_index)
            .map(|x| format!("{host}:{}", x.name)));
    };
    // Try the host the plan says first, then every other.
    let planned = lab
        .plan()
        .host(host)
        .and_then(|p| p.iface(&l.name))
        .and_then(|i| match &i.kind {
            IfaceKind::Veth { peer_host, .. } => Some(peer_host.clone()),
            _ => None,
        });
    let mut candidates: Vec<&LabHost> = Vec::new();
    if let Some(p) = planned.as_deref().and_then(|p| lab.host(p).ok()) {
        candidates.push(p);
    }
    candidates.extend(
        lab.hosts()
            .filter(|o| o.name != host && Some(&o.name) != planned.as_ref()),
    );
    for other in candidates {
        if netlink::netnsid_of(h.handle(), &other.ns)
            .await
            .map_err(|e| nl_error(host, "reading namespace ids", e))?
            == Some(nsid)
        {
            let links = netlink::links(other.handle())
                .await
                .map_err(|e| nl_error(&other.name, "listing links", e))?;
            return Ok(links
                .iter()
                .find(|x| x.index == peer_index)
                .map(|x| format!("{}:{}", other.name, x.name)));
        }
    }
    Ok(None)
}

/// What changed from `a` to `b`, one readable line per change, hosts in lab order.
pub fn diff(a: &LabState, b: &LabState) -> Vec<String> {
    let mut out = Vec::new();
    let empty = HostState::default();
    let mut names: Vec<&String> = a.hosts.iter().map(|(n, _)| n).collect();
    for (n, _) in &b.hosts {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    for name in names {
        let (x, y) = (a.host(name), b.host(name));
        match (x, y) {
            (Some(_), None) => out.push(format!("{name}: namespace gone")),
            (None, Some(_)) => out.push(format!("{name}: namespace appeared")),
            _ => {}
        }
        let (x, y) = (x.unwrap_or(&empty), y.unwrap_or(&empty));
        diff_host(name, x, y, &mut out);
    }
    out
}

fn diff_host(h: &str, a: &HostState, b: &HostState, out: &mut Vec<String>) {
    let mut changed_links: BTreeSet<&str> = BTreeSet::new();
    for (n, la) in &a.links {
        match b.links.get(n) {
            None => {
                out.push(format!("{h}: link {n} deleted (was {})", la.describe()));
                changed_links.insert(n);
            }
            Some(lb) if lb != la => {
                let mut parts = Vec::new();
                if la.kind != lb.kind {
                    parts.push(format!("kind {} → {}", la.kind, lb.kind));
                }
                if la.admin_up != lb.admin_up {
                    let s = |u: bool| if u { "up" } else { "down" };
                    parts.push(format!("admin {} → {}", s(la.admin_up), s(lb.admin_up)));
                }
                if la.oper != lb.oper {
                    parts.push(format!("oper {} → {}", la.oper, lb.oper));
                }
                if la.mtu != lb.mtu {
                    parts.push(format!("mtu {} → {}", la.mtu, lb.mtu));
                }
                if la.master != lb.master {
                    let s = |m: &Option<String>| m.clone().unwrap_or_else(|| "none".into());
                    parts.push(format!("master {} → {}", s(&la.master), s(&lb.master)));
                }
                if la.peer != lb.peer {
                    let s = |m: &Option<String>| m.clone().unwrap_or_else(|| "none".into());
                    parts.push(format!("peer {} → {}", s(&la.peer), s(&lb.peer)));
                }
                if la.mac != lb.mac {
                    parts.push(format!("mac {} → {}", la.mac, lb.mac));
                }
                if la.details != lb.details {
                    let show = |d: &Vec<String>| {
                        if d.is_empty() {
                            "(defaults)".to_string()
                        } else {
                            d.join(" ")
                        }
                    };
                    parts.push(format!("{} → {}", show(&la.details), show(&lb.details)));
                }
                out.push(format!("{h}: link {n} {}", parts.join(", ")));
            }
            _ => {}
        }
    }
    for (n, lb) in &b.links {
        if !a.links.contains_key(n) {
            out.push(format!("{h}: link {n} added ({})", lb.describe()));
            changed_links.insert(n);
        }
    }
    set_diff(h, "address", &a.addresses, &b.addresses, out);
    set_diff(h, "route", &a.routes, &b.routes, out);
    set_diff(h, "neighbour", &a.neighbours, &b.neighbours, out);
    set_diff(h, "rule", &a.rules, &b.rules, out);
    set_diff(h, "fdb", &a.fdb, &b.fdb, out);
    set_diff(h, "qdisc", &a.qdiscs, &b.qdiscs, out);
    diff_sysctls(h, a, b, &changed_links, out);
    diff_nft(h, a, b, out);
}

/// Sysctls: per-interface keys of added or deleted links are implied; equal transitions of one
/// setting across interfaces are grouped (writing ip_forward rewrites every conf.*.forwarding).
fn diff_sysctls(
    h: &str,
    a: &HostState,
    b: &HostState,
    changed_links: &BTreeSet<&str>,
    out: &mut Vec<String>,
) {
    let mut groups: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    let keys: BTreeSet<&String> = a.sysctls.keys().chain(b.sysctls.keys()).collect();
    for k in keys {
        let (va, vb) = (a.sysctls.get(k), b.sysctls.get(k));
        if va == vb {
            continue;
        }
        if let Some((dev, setting)) = iface_key(k) {
            if changed_links.contains(dev) {
                continue;
            }
            let t = (
                setting.to_string(),
                va.cloned().unwrap_or_else(|| "(none)".into()),
                vb.cloned().unwrap_or_else(|| "(none)".into()),
            );
            groups.entry(t).or_default().push(dev.to_string());
            continue;
        }
        out.push(format!(
            "{h}: sysctl {k} {} → {}",
            va.map(String::as_str).unwrap_or("(none)"),
            vb.map(String::as_str).unwrap_or("(none)")
        ));
    }
    for ((setting, va, vb), devs) in groups {
        let devs = if devs.len() == 1 {
            devs[0].clone()
        } else {
            format!("{{{}}}", devs.join(","))
        };
        out.push(format!(
            "{h}: sysctl net.ipv4.conf.{devs}.{setting} {va} → {vb}"
        ));
    }
}

/// nft: tables, chains (with their header), rules as multisets.
fn diff_nft(h: &str, a: &HostState, b: &HostState, out: &mut Vec<String>) {
    let tables: BTreeSet<&String> = a.nft.keys().chain(b.nft.keys()).collect();
    for t in tables {
        match (a.nft.get(t), b.nft.get(t)) {
            (Some(_), None) => out.push(format!("{h}: nft {t} deleted")),
            (None, Some(_)) => out.push(format!("{h}: nft {t} added")),
            _ => {}
        }
        let empty = BTreeMap::new();
        let (ca, cb) = (
            a.nft.get(t).unwrap_or(&empty),
            b.nft.get(t).unwrap_or(&empty),
        );
        let chains: BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
        for c in chains {
            let none = Vec::new();
            let (ra, rb) = (ca.get(c).unwrap_or(&none), cb.get(c).unwrap_or(&none));
            match (ca.contains_key(c), cb.contains_key(c)) {
                (true, false) => out.push(format!("{h}: nft {t} {c} deleted")),
                (false, true) => out.push(format!("{h}: nft {t} {c} added")),
                _ => {
                    if ra.first() != rb.first() {
                        out.push(format!(
                            "{h}: nft {t} {c}: {} → {}",
                            ra.first().map(String::as_str).unwrap_or(""),
                            rb.first().map(String::as_str).unwrap_or("")
                        ));
                    }
                }
            }
            let (rules_a, rules_b) = (ra.get(1..).unwrap_or(&[]), rb.get(1..).unwrap_or(&[]));
            for r in multiset_minus(rules_a, rules_b) {
                out.push(format!("{h}: nft {t} {c}: rule deleted: {r}"));
            }
            for r in multiset_minus(rules_b, rules_a) {
                out.push(format!("{h}: nft {t} {c}: rule added: {r}"));
            }
        }
    }
}

fn iface_key(k: &str) -> Option<(&str, &str)> {
    let rest = k.strip_prefix("net.ipv4.conf.")?;
    let (dev, setting) = rest.rsplit_once('.')?;
    Some((dev, setting))
}

fn set_diff(
    h: &str,
    what: &str,
    a: &BTreeSet<String>,
    b: &BTreeSet<String>,
    out: &mut Vec<String>,
) {
    for x in a.difference(b) {
        out.push(format!("{h}: {what} {x} removed"));
    }
    for x in b.difference(a) {
        out.push(format!("{h}: {what} {x} added"));
    }
}

fn multiset_minus<'a>(a: &'a [String], b: &[String]) -> Vec<&'a String> {
    let mut left: Vec<&String> = b.iter().collect();
    let mut out = Vec::new();
    for x in a {
        if let Some(i) = left.iter().position(|y| *y == x) {
            left.remove(i);
        } else {
            out.push(x);
        }
    }
    out
}

impl LabState {
    /// The whole state as text, for a dataplane snapshot: what netfault or a plugin built. Only
    /// per-interface sysctls that differ from the namespace's defaults are shown; `rename`
    /// rewrites names that change from run to run (a plugin's veth names, chain hashes).
    pub fn render(&self, rename: impl Fn(&str) -> String) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for (host, h) in &self.hosts {
            let _ = writeln!(s, "{host}:");
            let mut lines: Vec<String> = Vec::new();
            for (name, l) in &h.links {
                if name != "lo" {
                    lines.push(format!("link {name}: {}", l.describe()));
                }
            }
            lines.extend(h.addresses.iter().map(|a| format!("address {a}")));
            lines.extend(h.routes.iter().map(|r| format!("route {r}")));
            lines.extend(
                h.rules
                    .iter()
                    .filter(|r| {
                        ![
                            "0: from all lookup local",
                            "32766: from all lookup main",
                            "32767: from all lookup default",
                        ]
                        .contains(&r.as_str())
                    })
                    .map(|r| format!("rule {r}")),
            );
            lines.extend(h.neighbours.iter().map(|n| format!("neighbour {n}")));
            lines.extend(h.fdb.iter().map(|f| format!("fdb {f}")));
            let bridged = h.links.values().any(|l| l.kind == "bridge");
            for (k, v) in &h.sysctls {
                // br_netfilter's switch matters only where a bridge is.
                if k.starts_with("net.bridge.") && !bridged {
                    continue;
                }
                let default =
                    iface_key(k).map(|(_, setting)| format!("net.ipv4.conf.default.{setting}"));
                let differs = match &default {
                    Some(d) if !k.contains(".default.") && !k.contains(".all.") => {
                        h.sysctls.get(d) != Some(v)
                    }
                    _ => true,
                };
                if differs {
                    lines.push(format!("sysctl {k} = {v}"));
                }
            }
            for (t, chains) in &h.nft {
                for (c, rules) in chains {
                    let head = rules
                        .first()
                        .filter(|x| !x.is_empty())
                        .map(|x| format!(" ({x})"))
                        .unwrap_or_default();
                    lines.push(format!("nft {t} {c}{head}"));
                    for r in rules.iter().skip(1) {
                        lines.push(format!("nft {t} {c}: {r}"));
                    }
                }
            }
            let mut lines: Vec<String> = lines.into_iter().map(|l| rename(&l)).collect();
            lines.sort();
            for l in lines {
                let _ = writeln!(s, "  {l}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostState {
        let mut h = HostState::default();
        h.links.insert(
            "eth0".into(),
            LinkState {
                kind: "veth".into(),
                admin_up: true,
                oper: "up".into(),
                mtu: 1500,
                master: None,
                peer: Some("ext:eth0".into()),
                mac: "planned".into(),
                details: Vec::new(),
            },
        );
        h.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        for d in ["all", "eth0", "cni0"] {
            h.sysctls
                .insert(format!("net.ipv4.conf.{d}.forwarding"), "1".into());
        }
        h.nft.entry("table ip nat".into()).or_default().insert(
            "chain postrouting".into(),
            vec![
                "type nat hook postrouting priority srcnat; policy accept;".into(),
                "masquerade".into(),
            ],
        );
        h
    }

    #[test]
    fn diff_is_readable_and_grouped() {
        let a = LabState {
            hosts: vec![("node1".into(), host())],
        };
        let mut b = a.clone();
        let h = &mut b.hosts[0].1;
        h.links.get_mut("eth0").unwrap().admin_up = false;
        for v in h.sysctls.values_mut() {
            *v = "0".into();
        }
        h.nft
            .get_mut("table ip nat")
            .unwrap()
            .get_mut("chain postrouting")
            .unwrap()
            .pop();
        let d = diff(&a, &b);
        assert_eq!(
            d,
            [
                "node1: link eth0 admin up → down",
                "node1: sysctl net.ipv4.ip_forward 1 → 0",
                "node1: sysctl net.ipv4.conf.{all,cni0,eth0}.forwarding 1 → 0",
                "node1: nft table ip nat chain postrouting: rule deleted: masquerade",
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn deleted_link_implies_its_sysctls() {
        let a = LabState {
            hosts: vec![("n".into(), host())],
        };
        let mut b = a.clone();
        let h = &mut b.hosts[0].1;
        h.links.remove("eth0");
        h.sysctls.remove("net.ipv4.conf.eth0.forwarding");
        let d = diff(&a, &b);
        assert_eq!(
            d,
            ["n: link eth0 deleted (was veth up (oper up) mtu 1500 peer ext:eth0)"]
        );
    }
}
