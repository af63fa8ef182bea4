//! Netlink, one connection per namespace: open it inside the namespace, drive it from tokio.
//!
//! Thin helpers over rtnetlink that return plain structs (links, addresses, routes, neighbours)
//! for the lab builder, the faults, state capture and diagnosis.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{FromRawFd, IntoRawFd};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::AddressFamily;
use netlink_sys::{protocols::NETLINK_ROUTE, TokioSocket};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use crate::netns::Netns;

/// A netlink connection opened inside one namespace. Dropping it closes the socket, which
/// otherwise keeps the namespace alive.
pub struct NlConn {
    pub handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NlConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a netlink socket inside `ns` and spawns its connection on the current runtime.
pub async fn connect(ns: &Netns) -> io::Result<NlConn> {
    let sock = ns
        .run_async(|| netlink_sys::Socket::new(NETLINK_ROUTE))
        .await??;
    Ok(from_socket(sock))
}

/// Wraps a netlink socket (opened inside some namespace) as a connection on the current runtime.
pub fn from_socket(sock: netlink_sys::Socket) -> NlConn {
    let fd = sock.into_raw_fd();
    // SAFETY: `fd` was just released by an owned netlink socket; TokioSocket takes it over.
    let ts = unsafe { TokioSocket::from_raw_fd(fd) };
    let (conn, handle, _) = rtnetlink::from_socket(ts);
    let task = tokio::spawn(conn);
    NlConn { handle, task }
}

pub type Mac = [u8; 6];

pub fn mac_string(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A link as netlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    /// Administratively up (IFF_UP).
    pub admin_up: bool,
    /// Operational state: "up", "down", "lowerlayerdown", "unknown", ...
    pub oper: String,
    /// Carrier (IFF_LOWER_UP).
    pub lower_up: bool,
    /// IFF_NOARP: the device neither sends nor answers ARP.
    pub noarp: bool,
    pub mtu: u32,
    pub master: Option<u32>,
    pub mac: Option<Vec<u8>>,
    /// IFLA_LINK: for a veth, the peer's ifindex (in `link_netnsid`'s namespace if set).
    pub link: Option<u32>,
    pub link_netnsid: Option<i32>,
    /// Kind-specific facts worth comparing: a vxlan's VNI, port, local and remote address; a
    /// bridge port's non-default flags (hairpin on, learning or flooding off).
    pub details: Vec<String>,
    /// A vxlan's underlying device index, if set.
    pub vxlan_dev: Option<u32>,
}

impl Link {
    pub fn is_oper_up(&self) -> bool {
        self.oper == "up" || (self.oper == "unknown" && self.lower_up)
    }
}

fn parse_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        admin_up: m.header.flags.contains(LinkFlags::Up),
        oper: "unknown".into(),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        noarp: m.header.flags.contains(LinkFlags::Noarp),
        mtu: 0,
        master: None,
        mac: None,
        link: None,
        link_netnsid: None,
        details: Vec::new(),
        vxlan_dev: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(x) => l.mtu = *x,
            LinkAttribute::Controller(x) => l.master = Some(*x),
            LinkAttribute::Address(x) => l.mac = Some(x.clone()),
            LinkAttribute::Link(x) => l.link = Some(*x),
            LinkAttribute::LinkNetNsId(x) => l.link_netnsid = Some(*x),
            LinkAttribute::OperState(s) => {
                l.oper = match s {
                    State::Up => "up",
                    State::Down => "down",
                    State::LowerLayerDown => "lowerlayerdown",
                    State::NotPresent => "notpresent",
                    State::Dormant => "dormant",
                    State::Testing => "testing",
                    _ => "unknown",
                }
                .into()
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            use netlink_packet_route::link::InfoVxlan;
                            for x in v {
                                match x {
                                    InfoVxlan::Id(id) => l.details.push(format!("vni {id}")),
                                    InfoVxlan::Port(p) => l.details.push(format!("dstport {p}")),
                                    InfoVxlan::Local(a) => l.details.push(format!("local {a}")),
                                    InfoVxlan::Group(a) => l.details.push(format!("remote {a}")),
                                    InfoVxlan::Learning(false) => {
                                        l.details.push("nolearning".into())
                                    }
                                    InfoVxlan::Link(d) => l.vxlan_dev = Some(*d),
                                    _ => {}
                                }
                            }
                        }
                        LinkInfo::PortData(
                            netlink_packet_route::link::InfoPortData::BridgePort(v),
                        ) => {
                            use netlink_packet_route::link::InfoBridgePort;
                            for x in v {
                                match x {
                                    InfoBridgePort::HairpinMode(true) => {
                                        l.details.push("hairpin on".into())
                                    }
                                    InfoBridgePort::Learning(false) => {
                                        l.details.push("learning off".into())
                                    }
                                    InfoBridgePort::UnicastFlood(false) => {
                                        l.details.push("flood off".into())
                                    }
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

pub async fn links(h: &Handle) -> Result<Vec<Link>, rtnetlink::Error> {
    let msgs: Vec<LinkMessage> = h.link().get().execute().try_collect().await?;
    Ok(msgs.iter().map(parse_link).collect())
}

/// The link called `name`, or None when there is none.
pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<Link>, rtnetlink::Error> {
    let r: Result<Vec<LinkMessage>, _> = h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_collect()
        .await;
    match r {
        Ok(v) => Ok(v.first().map(parse_link)),
        Err(e) if crate::error::netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub net: Ipv4Net,
}

pub async fn addresses(h: &Handle) -> Result<Vec<Addr>, rtnetlink::Error> {
    Ok(address_dump(h)
        .await?
        .iter()
        .filter_map(parse_addr)
        .collect())
}

/// Every address of the namespace, both families, as the kernel sends them (one dump serves
/// `parse_addr` and `nl6::parse_addr6`).
pub async fn address_dump(h: &Handle) -> Result<Vec<AddressMessage>, rtnetlink::Error> {
    h.address().get().execute().try_collect().await
}

/// An IPv4 address of a dump.
pub fn parse_addr(m: &AddressMessage) -> Option<Addr> {
    if m.header.family != AddressFamily::Inet {
        return None;
    }
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    let ip = local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        })
    })?;
    Some(Addr {
        index: m.header.index,
        net: Ipv4Net::new(ip, m.header.prefix_len).ok()?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub kind: String,
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub prefsrc: Option<Ipv4Addr>,
    pub scope: String,
    pub protocol: String,
    pub metric: Option<u32>,
}

fn v4(a: &RouteAddress) -> Option<Ipv4Addr> {
    match a {
        RouteAddress::Inet(ip) => Some(*ip),
        _ => None,
    }
}

fn route_kind(k: RouteType) -> String {
    match k {
        RouteType::Unicast => "unicast",
        RouteType::Local => "local",
        RouteType::Broadcast => "broadcast",
        RouteType::Anycast => "anycast",
        RouteType::Multicast => "multicast",
        RouteType::BlackHole => "blackhole",
        RouteType::Unreachable => "unreachable",
        RouteType::Prohibit => "prohibit",
        RouteType::Throw => "throw",
        RouteType::Nat => "nat",
        _ => "other",
    }
    .into()
}

pub fn parse_route(m: &RouteMessage) -> Option<Route> {
    if m.header.address_family != AddressFamily::Inet {
        return None;
    }
    let mut r = Route {
        table: u32::from(m.header.table),
        kind: route_kind(m.header.kind),
        dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).ok()?,
        gateway: None,
        oif: None,
        prefsrc: None,
        scope: format!("{:?}", m.header.scope).to_lowercase(),
        protocol: format!("{:?}", m.header.protocol).to_lowercase(),
        metric: None,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                if let Some(ip) = v4(d) {
                    r.dst = Ipv4Net::new(ip, m.header.destination_prefix_length).ok()?;
                }
            }
            RouteAttribute::Gateway(g) => r.gateway = v4(g),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::PrefSource(s) => r.prefsrc = v4(s),
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Priority(p) => r.metric = Some(*p),
            _ => {}
        }
    }
    Some(r)
}

/// Every IPv4 route in every table.
pub async fn routes(h: &Handle) -> Result<Vec<Route>, rtnetlink::Error> {
    let mut msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
    msg.header.table = 0; // RT_TABLE_UNSPEC: dump all tables
    let msgs: Vec<RouteMessage> = h.route().get(msg).execute().try_collect().await?;
    Ok(msgs
        .iter()
        .filter(|m| !is_cached(m))
        .filter_map(parse_route)
        .collect())
}

/// A cached exception in a route dump (a learned path MTU, a redirect): state the kernel
/// learns, like an ARP entry, not a route anyone configured (`ip route show` leaves them out).
/// An `ip route get` answer carries the same flag; only dumps are filtered.
fn is_cached(m: &RouteMessage) -> bool {
    m.header
        .flags
        .contains(netlink_packet_route::route::RouteFlags::Cloned)
}

/// What `ip route get DST [from SRC] [iif IF]` answers: the route, or the kernel's refusal.
pub async fn route_get(
    h: &Handle,
    dst: Ipv4Addr,
    src: Option<Ipv4Addr>,
    iif: Option<u32>,
) -> Result<Route, RouteGetError> {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst, 32);
    if let Some(s) = src {
        b = b.source_prefix(s, 32);
    }
    if let Some(i) = iif {
        b = b.input_interface(i);
    }
    route_get_answer(h, b.build(), parse_route).await
}

/// Sends a route `get` and reads its answer with `parse` (either family), or the refusal.
pub(crate) async fn route_get_answer<T>(
    h: &Handle,
    msg: RouteMessage,
    parse: impl Fn(&RouteMessage) -> Option<T>,
) -> Result<T, RouteGetError> {
    let r: Result<Vec<RouteMessage>, _> = h.route().get(msg).execute().try_collect().await;
    match r {
        Ok(v) => v.first().and_then(parse).ok_or(RouteGetError {
            errno: 0,
            message: "no answer".into(),
        }),
        Err(e) => Err(RouteGetError {
            errno: crate::error::netlink_errno(&e).unwrap_or(0),
            message: crate::error::netlink_message(&e),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGetError {
    pub errno: i32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub mac: Option<Vec<u8>>,
    pub state: String,
}

pub async fn neighbours(h: &Handle) -> Result<Vec<Neighbour>, rtnetlink::Error> {
    let msgs: Vec<_> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute()
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for m in msgs {
        let mut ip = None;
        let mut mac = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) => ip = Some(*x),
                NeighbourAttribute::LinkLayerAddress(x) => mac = Some(x.clone()),
                _ => {}
            }
        }
        let state = state_name(m.header.state);
        if let Some(ip) = ip {
            out.push(Neighbour {
                index: m.header.ifindex,
                ip,
                mac,
                state: state.into(),
            });
        }
    }
    Ok(out)
}

/// Deletes every neighbour entry, of either family, still being resolved (`incomplete`): the
/// packets queued on it go with it, without the ICMP errors its failure would send. Returns how
/// many it deleted (one gone meanwhile is not counted).
pub async fn forget_resolving_neighbours(h: &Handle) -> Result<usize, rtnetlink::Error> {
    use netlink_packet_route::neighbour::NeighbourMessage;
    let msgs: Vec<NeighbourMessage> = h.neighbours().get().execute().try_collect().await?;
    let mut deleted = 0;
    for m in msgs
        .into_iter()
        .filter(|m| m.header.state == NeighbourState::Incomplete)
    {
        let mut del = NeighbourMessage::default();
        del.header.family = m.header.family;
        del.header.ifindex = m.header.ifindex;
        del.attributes = m
            .attributes
            .into_iter()
            .filter(|a| matches!(a, NeighbourAttribute::Destination(_)))
            .collect();
        match h.neighbours().del(del).execute().await {
            Ok(()) => deleted += 1,
            Err(e) if crate::error::netlink_errno(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// A neighbour entry's state as `ip neigh` names it.
pub(crate) fn state_name(s: NeighbourState) -> &'static str {
    match s {
        NeighbourState::Permanent => "permanent",
        NeighbourState::Reachable => "reachable",
        NeighbourState::Stale => "stale",
        NeighbourState::Delay => "delay",
        NeighbourState::Probe => "probe",
        NeighbourState::Failed => "failed",
        NeighbourState::Incomplete => "incomplete",
        NeighbourState::Noarp => "noarp",
        _ => "other",
    }
}

/// A permanent neighbour entry: ARP for an IPv4 address, NDP for an IPv6 one.
pub async fn add_permanent_neighbour(
    h: &Handle,
    index: u32,
    ip: impl Into<IpAddr>,
    mac: &[u8],
) -> Result<(), rtnetlink::Error> {
    h.neighbours()
        .add(index, ip.into())
        .link_layer_address(mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
}

pub async fn add_address(h: &Handle, index: u32, net: Ipv4Net) -> Result<(), rtnetlink::Error> {
    h.address()
        .add(index, IpAddr::V4(net.addr()), net.prefix_len())
        .execute()
        .await
}

pub async fn add_route(
    h: &Handle,
    dst: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    oif: u32,
) -> Result<(), rtnetlink::Error> {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .output_interface(oif);
    match gateway {
        Some(g) => b = b.gateway(g),
        None => b = b.scope(netlink_packet_route::route::RouteScope::Link),
    }
    h.route().add(b.build()).execute().await
}

pub async fn set_up(h: &Handle, index: u32, up: bool) -> Result<(), rtnetlink::Error> {
    let b = LinkUnspec::new_with_index(index);
    let b = if up { b.up() } else { b.down() };
    h.link().set(b.build()).execute().await
}

/// Creates a veth pair: `name` here (with `mac`, optionally enslaved to `master`, up) and its
/// peer `peer_name` (with `peer_mac`) placed straight into `peer_ns`. The peer is left down: a
/// veth peer cannot be created up; bring it up from inside its namespace.
pub struct VethSpec<'a> {
    pub name: &'a str,
    pub mac: Mac,
    pub mtu: Option<u32>,
    pub master: Option<u32>,
    pub up: bool,
    pub peer_name: &'a str,
    pub peer_mac: Mac,
    pub peer_mtu: Option<u32>,
    pub peer_ns: &'a Netns,
}

/// Why veths get their indexes from us: linkwatch applies a carrier change at once only to a
/// device whose ifindex differs from its iflink — for a veth, the peer's index in the peer's
/// namespace. Ends that happen to share an index (eth0 4 in one namespace, its peer 4 in the
/// other: common in fresh namespaces) wait up to a second before their qdisc attaches and they
/// pass traffic. One counter above the small numbers the kernel hands out gives two ends that
/// never match.
static NEXT_VETH_INDEX: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(FIRST_VETH_INDEX);
const FIRST_VETH_INDEX: u32 = 1 << 20;

pub async fn add_veth(h: &Handle, v: VethSpec<'_>) -> Result<(), rtnetlink::Error> {
    for _ in 0..8 {
        use std::sync::atomic::Ordering;
        let ix = NEXT_VETH_INDEX.fetch_add(2, Ordering::Relaxed);
        if ix >= i32::MAX as u32 - 2 {
            NEXT_VETH_INDEX.store(FIRST_VETH_INDEX, Ordering::Relaxed);
        }
        match add_veth_at(h, &v, ix).await {
            // An index already taken in one of the two namespaces (EEXIST here, EBUSY in the
            // peer's) — or a name taken, which the last try, with the kernel's indexes, reports.
            Err(rtnetlink::Error::NetlinkError(e))
                if [-libc::EBUSY, -libc::EEXIST].contains(&e.raw_code()) =>
            {
                continue
            }
            r => return r,
        }
    }
    add_veth_at(h, &v, 0).await
}

/// `index` 0 lets the kernel choose both ends' indexes.
async fn add_veth_at(h: &Handle, v: &VethSpec<'_>, index: u32) -> Result<(), rtnetlink::Error> {
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .index(if index == 0 { 0 } else { index + 1 })
        .name(v.peer_name.to_string())
        .address(v.peer_mac.to_vec())
        .setns_by_fd(v.peer_ns.raw_fd());
    if let Some(m) = v.peer_mtu {
        peer = peer.mtu(m);
    }
    let mut b = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .index(index)
        .name(v.name.to_string())
        .address(v.mac.to_vec())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    if let Some(m) = v.mtu {
        b = b.mtu(m);
    }
    if let Some(master) = v.master {
        b = b.controller(master);
    }
    if v.up {
        b = b.up();
    }
    h.link().add(b.build()).execute().await
}

pub async fn add_bridge(
    h: &Handle,
    name: &str,
    mac: Mac,
    mtu: Option<u32>,
) -> Result<(), rtnetlink::Error> {
    let mut b = rtnetlink::LinkBridge::new(name).address(mac.to_vec()).up();
    if let Some(m) = mtu {
        b = b.mtu(m);
    }
    h.link().add(b.build()).execute().await
}

pub async fn set_master(
    h: &Handle,
    index: u32,
    master: Option<u32>,
) -> Result<(), rtnetlink::Error> {
    let b = LinkUnspec::new_with_index(index);
    let b = match master {
        Some(m) => b.controller(m),
        None => b.nocontroller(),
    };
    h.link().set(b.build()).execute().await
}

/// Turns a bridge port's hairpin mode on or off (frames may leave by the port they came in).
pub async fn set_hairpin(h: &Handle, index: u32, on: bool) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::link::{InfoBridgePort, InfoPortData, InfoPortKind, LinkInfo};
    let mut msg = LinkUnspec::new_with_index(index).build();
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )])),
    ]));
    // Port data is read by RTM_NEWLINK only (as `ip link set ... type bridge_slave` sends it).
    h.link().set_port(msg).execute().await
}

pub async fn del_link(h: &Handle, index: u32) -> Result<(), rtnetlink::Error> {
    h.link().del(index).execute().await
}

/// The id namespace `of` has inside the namespace `h` talks to, if one is assigned.
pub async fn netnsid_of(h: &Handle, of: &Netns) -> Result<Option<i32>, rtnetlink::Error> {
    use futures::StreamExt;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
    use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
    use netlink_packet_route::RouteNetlinkMessage;
    let mut msg = NsidMessage::default();
    msg.attributes = vec![NsidAttribute::Fd(of.raw_fd() as u32)];
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut h = h.clone();
    let mut resp = h.request(req)?;
    while let Some(m) = resp.next().await {
        match m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(n)) => {
                for a in n.attributes {
                    if let NsidAttribute::Id(id) = a {
                        return Ok(if id < 0 { None } else { Some(id) });
                    }
                }
            }
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(rtnetlink::Error::NetlinkError(e))
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Polls until every named link is operationally up, or `timeout` passes. Returns the names
/// still not up.
pub async fn wait_oper_up(
    h: &Handle,
    names: &[String],
    timeout: std::time::Duration,
) -> Result<Vec<String>, rtnetlink::Error> {
    wait_oper(h, names, true, timeout).await
}

/// Waits until none of `names` is operationally up (or gone): the kernel's linkwatch updates a
/// veth peer's state after the fact. Returns the names still up at the deadline.
pub async fn wait_oper_down(
    h: &Handle,
    names: &[String],
    timeout: std::time::Duration,
) -> Result<Vec<String>, rtnetlink::Error> {
    wait_oper(h, names, false, timeout).await
}

async fn wait_oper(
    h: &Handle,
    names: &[String],
    up: bool,
    timeout: std::time::Duration,
) -> Result<Vec<String>, rtnetlink::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = std::time::Duration::from_micros(200);
    loop {
        let all = links(h).await?;
        let pending: Vec<String> = names
            .iter()
            .filter(|n| {
                let is_up = all.iter().any(|l| &l.name == *n && l.is_oper_up());
                is_up != up
            })
            .cloned()
            .collect();
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(pending);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_millis(20));
    }
}

/// Gives namespace `of` an id inside the namespace `h` talks to (`ip netns set`). An id does not
/// keep `of` alive: the kernel drops it when `of` is freed, which makes ids a way to watch
/// namespaces die.
pub async fn assign_nsid(h: &Handle, of: &Netns) -> Result<(), rtnetlink::Error> {
    use futures::StreamExt;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
    use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
    use netlink_packet_route::RouteNetlinkMessage;
    let mut msg = NsidMessage::default();
    msg.attributes = vec![NsidAttribute::Fd(of.raw_fd() as u32), NsidAttribute::Id(-1)];
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNsId(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut h = h.clone();
    let mut resp = h.request(req)?;
    while let Some(m) = resp.next().await {
        if let NetlinkPayload::Error(e) = m.payload {
            if e.code.is_some() {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
    }
    Ok(())
}

/// Every namespace id assigned inside the namespace `h` talks to (`ip netns list-id`).
pub async fn list_nsids(h: &Handle) -> Result<Vec<i32>, rtnetlink::Error> {
    use futures::StreamExt;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
    use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
    use netlink_packet_route::RouteNetlinkMessage;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(NsidMessage::default()));
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut h = h.clone();
    let mut resp = h.request(req)?;
    let mut out = Vec::new();
    while let Some(m) = resp.next().await {
        match m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(n)) => {
                for a in n.attributes {
                    if let NsidAttribute::Id(id) = a {
                        out.push(id);
                    }
                }
            }
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(rtnetlink::Error::NetlinkError(e))
            }
            _ => {}
        }
    }
    Ok(out)
}

pub async fn del_address(h: &Handle, index: u32, net: Ipv4Net) -> Result<(), rtnetlink::Error> {
    let msg = rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new()
        .index(index)
        .address(net.addr(), net.prefix_len())
        .build();
    h.address().del(msg).execute().await
}

pub async fn del_route(
    h: &Handle,
    dst: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    oif: Option<u32>,
) -> Result<(), rtnetlink::Error> {
    let mut b =
        RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst.addr(), dst.prefix_len());
    if let Some(g) = gateway {
        b = b.gateway(g);
    }
    if let Some(o) = oif {
        b = b.output_interface(o);
    }
    h.route().del(b.build()).execute().await
}

pub async fn set_mtu(h: &Handle, index: u32, mtu: u32) -> Result<(), rtnetlink::Error> {
    h.link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
}

/// One bridge or vxlan forwarding database entry (`bridge fdb show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fdb {
    pub index: u32,
    pub mac: Vec<u8>,
    /// The remote VTEP of a vxlan entry.
    pub dst: Option<Ipv4Addr>,
    pub master: Option<u32>,
    pub state: String,
    /// An entry of the device itself (NTF_SELF), rather than of its bridge.
    pub is_self: bool,
}

pub async fn fdb(h: &Handle) -> Result<Vec<Fdb>, rtnetlink::Error> {
    use netlink_packet_route::neighbour::NeighbourFlags;
    let msgs: Vec<_> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for m in msgs {
        let mut e = Fdb {
            index: m.header.ifindex,
            mac: Vec::new(),
            dst: None,
            master: None,
            // As `bridge fdb show` reads the state bits: iproute2 adds entries as
            // NOARP|PERMANENT, netlink users (flannel, netfault) as PERMANENT; both are permanent.
            state: {
                let bits = u16::from(m.header.state);
                if bits & 0x80 != 0 {
                    "permanent"
                } else if bits & 0x40 != 0 {
                    "static"
                } else if bits & 0x06 != 0 {
                    "dynamic"
                } else {
                    "other"
                }
            }
            .into(),
            is_self: m.header.flags.contains(NeighbourFlags::Own),
        };
        for a in &m.attributes {
            match a {
                NeighbourAttribute::LinkLayerAddress(x) => e.mac = x.clone(),
                NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) => e.dst = Some(*x),
                // In AF_BRIDGE messages the VTEP address comes unparsed.
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) if b.len() == 4 => {
                    e.dst = Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                }
                NeighbourAttribute::Controller(x) => e.master = Some(*x),
                _ => {}
            }
        }
        out.push(e);
    }
    Ok(out)
}

/// `ip rule` lines: "PRIORITY: [from SRC] [to DST] [iif IF] [oif IF] [fwmark M] lookup TABLE".
/// Every IPv4 policy routing rule, as the kernel sends it.
async fn rule_messages(
    h: &Handle,
) -> Result<Vec<netlink_packet_route::rule::RuleMessage>, rtnetlink::Error> {
    h.rule()
        .get(rtnetlink::IpVersion::V4)
        .execute()
        .try_collect()
        .await
}

/// Deletes every IPv4 policy routing rule but the kernel's three (0: local, 32766: main,
/// 32767: default); returns how many it deleted.
pub async fn del_extra_rules(h: &Handle) -> Result<usize, rtnetlink::Error> {
    use netlink_packet_route::rule::RuleAttribute;
    let msgs = rule_messages(h).await?;
    let mut deleted = 0;
    for m in msgs {
        let prio = m.attributes.iter().find_map(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        });
        let table = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RuleAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(m.header.table));
        let selectors = m.header.src_len + m.header.dst_len > 0
            || m.attributes.iter().any(|a| {
                matches!(
                    a,
                    RuleAttribute::Iifname(_)
                        | RuleAttribute::Oifname(_)
                        | RuleAttribute::FwMark(_)
                )
            });
        let kernels = !selectors
            && matches!(
                (prio.unwrap_or(0), table),
                (0, 255) | (32766, 254) | (32767, 253)
            );
        if !kernels {
            h.rule().del(m).execute().await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

pub async fn rules(h: &Handle) -> Result<Vec<String>, rtnetlink::Error> {
    use netlink_packet_route::rule::{RuleAction, RuleAttribute};
    let msgs = rule_messages(h).await?;
    let mut out = Vec::new();
    for m in msgs {
        let mut prio = 0;
        let mut table = u32::from(m.header.table);
        let mut parts = Vec::new();
        for a in &m.attributes {
            match a {
                RuleAttribute::Priority(p) => prio = *p,
                RuleAttribute::Table(t) => table = *t,
                RuleAttribute::Source(s) => parts.push(format!("from {s}/{}", m.header.src_len)),
                RuleAttribute::Destination(d) => parts.push(format!("to {d}/{}", m.header.dst_len)),
                RuleAttribute::Iifname(i) => parts.push(format!("iif {i}")),
                RuleAttribute::Oifname(o) => parts.push(format!("oif {o}")),
                RuleAttribute::FwMark(f) => parts.push(format!("fwmark {f:#x}")),
                _ => {}
            }
        }
        if parts.is_empty() {
            parts.push("from all".into());
        }
        let table = match table {
            255 => "local".to_string(),
            254 => "main".to_string(),
            253 => "default".to_string(),
            t => t.to_string(),
        };
        let action = match m.header.action {
            RuleAction::ToTable => format!("lookup {table}"),
            other => format!("{other:?}").to_lowercase(),
        };
        out.push(format!("{prio}: {} {action}", parts.join(" ")));
    }
    Ok(out)
}

/// Creates a vxlan device over `dev_index` (learning off, as flannel), up.
#[allow(clippy::too_many_arguments)]
pub async fn add_vxlan(
    h: &Handle,
    name: &str,
    vni: u32,
    port: u16,
    local: Ipv4Addr,
    dev_index: u32,
    mac: Mac,
    mtu: Option<u32>,
) -> Result<(), rtnetlink::Error> {
    let mut b = rtnetlink::LinkVxlan::new(name, vni)
        .port(port)
        .local(local)
        .dev(dev_index)
        .learning(false)
        .address(mac.to_vec())
        .up();
    if let Some(m) = mtu {
        b = b.mtu(m);
    }
    h.link().add(b.build()).execute().await
}

/// `bridge fdb append MAC dev DEV dst DST self permanent` (a vxlan's remote VTEP).
pub async fn add_fdb(
    h: &Handle,
    index: u32,
    mac: &[u8],
    dst: Ipv4Addr,
) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::neighbour::NeighbourFlags;
    h.neighbours()
        .add_bridge(index, mac)
        .flags(NeighbourFlags::Own)
        .destination(IpAddr::V4(dst))
        .state(NeighbourState::Permanent)
        .execute()
        .await
}

/// Deletes an FDB entry of a device itself (a vxlan's) or of its bridge.
pub async fn del_fdb(h: &Handle, e: &Fdb) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourMessage};
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = e.index;
    m.header.flags = if e.is_self {
        NeighbourFlags::Own
    } else {
        NeighbourFlags::Controller
    };
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(e.mac.clone()));
    if let Some(d) = e.dst {
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(d)));
    }
    h.neighbours().del(m).execute().await
}

/// Adds a route, optionally onlink (the gateway needs no address on the link).
pub async fn add_route_onlink(
    h: &Handle,
    dst: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    oif: u32,
    onlink: bool,
) -> Result<(), rtnetlink::Error> {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .output_interface(oif);
    match gateway {
        Some(g) => b = b.gateway(g),
        // A route straight onto a link has link scope, as `ip route add DST dev IF` gives it.
        None => b = b.scope(netlink_packet_route::route::RouteScope::Link),
    }
    if onlink {
        b = b.onlink();
    }
    h.route().add(b.build()).execute().await
}

/// Whether this kernel can create a link of `kind` (tries in the namespace `h` talks to).
pub async fn link_kind_supported(h: &Handle, kind: &str) -> Result<bool, rtnetlink::Error> {
    use netlink_packet_route::link::InfoKind;
    let info = match kind {
        "ipip" => InfoKind::IpIp,
        "geneve" => InfoKind::Geneve,
        "wireguard" => InfoKind::Wireguard,
        "vlan" => InfoKind::Vlan,
        "dummy" => InfoKind::Dummy,
        other => InfoKind::Other(other.to_string()),
    };
    let name = "nf-probe0";
    let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(info)
        .name(name.to_string())
        .build();
    match h.link().add(msg).execute().await {
        Ok(()) => {
            if let Ok(Some(l)) = link_by_name(h, name).await {
                let _ = del_link(h, l.index).await;
            }
            Ok(true)
        }
        Err(e) => match crate::error::netlink_errno(&e) {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOENT) | Some(libc::EINVAL) => Ok(false),
            _ => Err(e),
        },
    }
}

/// Every IPv4 route as the kernel sent it, for putting one back exactly.
pub async fn routes_raw(h: &Handle) -> Result<Vec<RouteMessage>, rtnetlink::Error> {
    let mut msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
    msg.header.table = 0;
    let all: Vec<RouteMessage> = h.route().get(msg).execute().try_collect().await?;
    Ok(all.into_iter().filter(|m| !is_cached(m)).collect())
}

/// Re-adds a route captured with [`routes_raw`]. The kernel's own state flags go: a route read
/// while its link had no carrier says `linkdown` (or `dead`), which the kernel refuses to be
/// given (EINVAL) and sets again itself if the link is still down.
pub async fn readd_route(h: &Handle, mut m: RouteMessage) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::route::RouteFlags;
    m.header
        .flags
        .remove(RouteFlags::Linkdown | RouteFlags::Dead);
    h.route().add(m).execute().await
}

/// Deletes a route captured with [`routes_raw`].
pub async fn del_route_msg(h: &Handle, m: RouteMessage) -> Result<(), rtnetlink::Error> {
    h.route().del(m).execute().await
}

/// Adds a static, sticky entry to a bridge's FDB: frames for `mac` leave by port `index`.
pub async fn add_bridge_fdb(h: &Handle, index: u32, mac: &[u8]) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::neighbour::NeighbourFlags;
    // Replace: the bridge may have learnt the MAC on another port already; sticky: learning
    // must not move it back.
    h.neighbours()
        .add_bridge(index, mac)
        .flags(NeighbourFlags::Controller | NeighbourFlags::Sticky)
        .state(NeighbourState::Noarp)
        .replace()
        .execute()
        .await
}

/// Removes a neighbour entry.
pub async fn del_neighbour(h: &Handle, index: u32, ip: Ipv4Addr) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::neighbour::NeighbourMessage;
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = index;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    h.neighbours().del(m).execute().await
}

const TCA_OPTIONS: u16 = 2;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_BURST: u16 = 6;

/// A `tc_ratespec` for `rate` bytes per second (link layer ethernet, no rate table needed).
fn ratespec(rate: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[1] = 1; // TC_LINKLAYER_ETHERNET
    b[8..12].copy_from_slice(&rate.to_ne_bytes());
    b
}

/// `tc qdisc add dev IF root tbf rate RATE burst BURST limit LIMIT`.
pub async fn add_tbf(
    h: &Handle,
    index: u32,
    rate_bits: u64,
    burst: u32,
    limit: u32,
) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::tc::{TcAttribute, TcOption};
    let rate = (rate_bits / 8).min(u64::from(u32::MAX)) as u32;
    let mut qopt = Vec::with_capacity(36);
    qopt.extend_from_slice(&ratespec(rate));
    qopt.extend_from_slice(&[0u8; 12]); // no peak rate
    qopt.extend_from_slice(&limit.to_ne_bytes());
    // buffer: the time to send `burst` at `rate`, in psched ticks (64 ns).
    let buffer = ((u64::from(burst) * 1_000_000_000 / u64::from(rate.max(1))) >> 6)
        .min(u64::from(u32::MAX)) as u32;
    qopt.extend_from_slice(&buffer.to_ne_bytes());
    qopt.extend_from_slice(&0u32.to_ne_bytes());
    let mut m = root_qdisc_message(index);
    m.attributes.push(TcAttribute::Kind("tbf".into()));
    m.attributes.push(TcAttribute::Options(vec![
        TcOption::Other(netlink_packet_core::DefaultNla::new(TCA_TBF_PARMS, qopt)),
        TcOption::Other(netlink_packet_core::DefaultNla::new(
            TCA_TBF_BURST,
            burst.to_ne_bytes().to_vec(),
        )),
    ]));
    new_qdisc(h, m).await
}

/// `tc qdisc add dev IF root netem delay MS`; fails where the kernel has no netem.
pub async fn add_netem(h: &Handle, index: u32, delay_ms: u32) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::tc::TcAttribute;
    // struct tc_netem_qopt { latency, limit, loss, gap, duplicate, jitter } (latency in ticks).
    let mut qopt = Vec::with_capacity(24);
    let ticks = ((u64::from(delay_ms) * 1_000_000) >> 6).min(u64::from(u32::MAX)) as u32;
    for v in [ticks, 1000, 0, 0, 0, 0] {
        qopt.extend_from_slice(&v.to_ne_bytes());
    }
    let mut m = root_qdisc_message(index);
    m.attributes.push(TcAttribute::Kind("netem".into()));
    m.attributes
        .push(TcAttribute::Other(netlink_packet_core::DefaultNla::new(
            TCA_OPTIONS,
            qopt,
        )));
    new_qdisc(h, m).await
}

fn root_qdisc_message(index: u32) -> netlink_packet_route::tc::TcMessage {
    let mut m = netlink_packet_route::tc::TcMessage::default();
    m.header.index = index as i32;
    m.header.parent = netlink_packet_route::tc::TcHandle::ROOT;
    m.header.handle = netlink_packet_route::tc::TcHandle { major: 1, minor: 0 };
    m
}

async fn new_qdisc(
    h: &Handle,
    m: netlink_packet_route::tc::TcMessage,
) -> Result<(), rtnetlink::Error> {
    use futures::StreamExt;
    use netlink_packet_core::{
        NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
    };
    use netlink_packet_route::RouteNetlinkMessage;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(m));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    let mut h = h.clone();
    let mut resp = h.request(req)?;
    while let Some(msg) = resp.next().await {
        if let NetlinkPayload::Error(e) = msg.payload {
            if e.code.is_some() {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
    }
    Ok(())
}

/// Deletes the root qdisc of a link (the kernel puts the default back).
pub async fn del_root_qdisc(h: &Handle, index: u32) -> Result<(), rtnetlink::Error> {
    let mut req = h.clone().qdisc().del(index as i32);
    req.message_mut().header.parent = netlink_packet_route::tc::TcHandle::ROOT;
    req.execute().await
}

/// One qdisc as `tc qdisc show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub index: u32,
    /// `root`, `ingress`, or the parent's handle as `MAJOR:MINOR` (hex).
    pub parent: String,
    pub kind: String,
    /// For tbf: its rate in bits per second.
    pub rate: Option<u64>,
    /// Packets it dropped since it was made (a full queue, a policer).
    pub drops: u64,
}

/// Every qdisc of the namespace `h` talks to.
pub async fn qdiscs(h: &Handle) -> Result<Vec<Qdisc>, rtnetlink::Error> {
    let msgs: Vec<_> = h.clone().qdisc().get().execute().try_collect().await?;
    Ok(msgs.iter().filter_map(qdisc_of).collect())
}

fn qdisc_of(m: &netlink_packet_route::tc::TcMessage) -> Option<Qdisc> {
    use netlink_packet_route::tc::{TcAttribute, TcHandle};
    let kind = m.attributes.iter().find_map(|a| match a {
        TcAttribute::Kind(k) => Some(k.clone()),
        _ => None,
    })?;
    let rate = m.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(opts) => tbf_rate(opts),
        _ => None,
    });
    let drops = m.attributes.iter().find_map(|a| match a {
        TcAttribute::Stats2(s) => s.iter().find_map(|x| match x {
            netlink_packet_route::tc::TcStats2::Queue(q) => Some(u64::from(q.drops)),
            _ => None,
        }),
        TcAttribute::Stats(s) => Some(u64::from(s.drops)),
        _ => None,
    });
    let p = m.header.parent;
    let parent = if p == TcHandle::ROOT {
        "root".to_string()
    } else if p == TcHandle::INGRESS {
        "ingress".to_string()
    } else {
        format!("{:x}:{:x}", p.major, p.minor)
    };
    Some(Qdisc {
        index: m.header.index as u32,
        parent,
        kind,
        rate,
        drops: drops.unwrap_or(0),
    })
}

/// tbf's rate from its options. The crate keeps TCA_OPTIONS of kinds it does not know whole:
/// the tbf attributes are nested inside.
fn tbf_rate(opts: &[netlink_packet_route::tc::TcOption]) -> Option<u64> {
    use netlink_packet_route::tc::TcOption;
    for o in opts {
        if let TcOption::Other(n) = o {
            let mut buf = vec![0u8; netlink_packet_core::Nla::value_len(n)];
            netlink_packet_core::Nla::emit_value(n, &mut buf);
            for nla in netlink_packet_core::NlasIterator::new(&buf[..]).flatten() {
                let v = nla.value();
                if nla.kind() == TCA_TBF_PARMS && v.len() >= 12 {
                    let r = u32::from_ne_bytes([v[8], v[9], v[10], v[11]]);
                    return Some(u64::from(r) * 8);
                }
            }
        }
    }
    None
}

/// The root qdisc of a link (its kind, for tbf its rate, its drops).
pub async fn root_qdisc(h: &Handle, index: u32) -> Result<Option<Qdisc>, rtnetlink::Error> {
    let msgs: Vec<_> = h
        .clone()
        .qdisc()
        .get()
        .index(index as i32)
        .execute()
        .try_collect()
        .await?;
    Ok(msgs
        .iter()
        .filter_map(qdisc_of)
        .find(|q| q.index == index && q.parent == "root"))
}

/// Adds (or replaces) permanent IPv4 neighbour entries `(ifindex, address, MAC)` in the calling
/// thread's namespace, many per `sendmsg` on a netlink socket of its own: thousands of entries
/// (a big bridge's all-pairs table) cost one round trip per batch, not per entry. Returns the
/// entries the kernel refused, with its error.
///
/// Why only a batch's last message asks for an ack: the kernel queues every ack on our socket
/// while it handles the batch, each charged at a whole skb's truesize (~1 KiB); a few hundred
/// acks overflow the default receive buffer and the socket reports ENOBUFS (the 300-pod lab
/// failed so). A refused message is answered without being asked, and messages are handled in
/// order, so the last one's ack means the batch is done.
pub fn add_permanent_neighbours_batched(
    entries: &[(u32, IpAddr, Mac)],
) -> std::io::Result<Vec<(IpAddr, std::io::Error)>> {
    use netlink_packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE,
        NLM_F_REQUEST,
    };
    use netlink_packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
    };
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

    const BATCH: usize = 512;
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut failed = Vec::new();
    let mut rbuf = vec![0u8; 1 << 16];
    for (c, chunk) in entries.chunks(BATCH).enumerate() {
        let mut buf = Vec::with_capacity(chunk.len() * 64);
        for (i, (ix, ip, mac)) in chunk.iter().enumerate() {
            let mut m = NeighbourMessage::default();
            let (family, dst) = match ip {
                IpAddr::V4(a) => (AddressFamily::Inet, NeighbourAddress::Inet(*a)),
                IpAddr::V6(a) => (AddressFamily::Inet6, NeighbourAddress::Inet6(*a)),
            };
            m.header.family = family;
            m.header.ifindex = *ix;
            m.header.state = NeighbourState::Permanent;
            m.header.kind = netlink_packet_route::route::RouteType::Unspec;
            m.attributes.push(NeighbourAttribute::Destination(dst));
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
            if i + 1 == chunk.len() {
                header.flags |= NLM_F_ACK;
            }
            header.sequence_number = (c * BATCH + i + 1) as u32;
            let mut msg = NetlinkMessage::new(
                header,
                NetlinkPayload::from(RouteNetlinkMessage::NewNeighbour(m)),
            );
            msg.finalize();
            let start = buf.len();
            buf.resize(start + msg.buffer_len(), 0);
            msg.serialize(&mut buf[start..]);
        }
        sock.send(&buf, 0)?;
        // An error per refused message, then the last message's ack (or error).
        let last = (c * BATCH + chunk.len()) as u32;
        let mut done = false;
        while !done {
            let n = sock.recv(&mut &mut rbuf[..], 0)?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..n])
                    .map_err(|e| std::io::Error::other(format!("netlink: {e}")))?;
                let len = msg.header.length as usize;
                if let NetlinkPayload::Error(e) = &msg.payload {
                    done |= msg.header.sequence_number == last;
                    if let Some(code) = e.code {
                        let seq = msg.header.sequence_number as usize;
                        if let Some((_, ip, _)) = seq.checked_sub(1).and_then(|s| entries.get(s)) {
                            failed.push((*ip, std::io::Error::from_raw_os_error(-code.get())));
                        }
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
    Ok(failed)
}
