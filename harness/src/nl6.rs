//! IPv6 over rtnetlink: what the dual-stack walk reads (addresses with their DAD state, routes,
//! `ip -6 route get`, NDP entries) and what the IPv6 faults write, beside `nl`'s IPv4 twins.

use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::Ipv6Net;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

pub use crate::nl::RouteGetError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr6 {
    pub index: u32,
    pub net: Ipv6Net,
    /// Duplicate address detection found another holder: the kernel will not use it.
    pub dadfailed: bool,
    /// Still being checked by DAD: not usable as a source yet.
    pub tentative: bool,
}

impl Addr6 {
    pub fn is_link_local(&self) -> bool {
        self.net.addr().is_unicast_link_local()
    }
}

/// Every IPv6 address of the namespace `h` talks to.
pub async fn addresses6(h: &Handle) -> Result<Vec<Addr6>, rtnetlink::Error> {
    Ok(crate::nl::address_dump(h)
        .await?
        .iter()
        .filter_map(parse_addr6)
        .collect())
}

/// An IPv6 address of a dump (`nl::address_dump`), with its DAD state.
pub fn parse_addr6(m: &AddressMessage) -> Option<Addr6> {
    if m.header.family != AddressFamily::Inet6 {
        return None;
    }
    let mut flags = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
    let mut ip = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Address(IpAddr::V6(x)) => ip = Some(*x),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    Some(Addr6 {
        index: m.header.index,
        net: Ipv6Net::new(ip?, m.header.prefix_len).ok()?,
        dadfailed: flags.contains(AddressFlags::Dadfailed),
        tentative: flags.contains(AddressFlags::Tentative),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6 {
    pub kind: String,
    pub dst: Ipv6Net,
    pub gateway: Option<Ipv6Addr>,
    pub oif: Option<u32>,
    /// The source the kernel picks (a `route get` answer carries it).
    pub prefsrc: Option<Ipv6Addr>,
}

fn v6(a: &RouteAddress) -> Option<Ipv6Addr> {
    match a {
        RouteAddress::Inet6(ip) => Some(*ip),
        _ => None,
    }
}

pub fn parse_route6(m: &RouteMessage) -> Option<Route6> {
    if m.header.address_family != AddressFamily::Inet6 {
        return None;
    }
    let kind = format!("{:?}", m.header.kind).to_lowercase();
    let mut r = Route6 {
        kind,
        dst: Ipv6Net::new(Ipv6Addr::UNSPECIFIED, 0).ok()?,
        gateway: None,
        oif: None,
        prefsrc: None,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                r.dst = Ipv6Net::new(v6(d)?, m.header.destination_prefix_length).ok()?;
            }
            RouteAttribute::Gateway(g) => r.gateway = v6(g),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::PrefSource(s) => r.prefsrc = v6(s),
            _ => {}
        }
    }
    Some(r)
}

/// Every IPv6 route of the main table (cached exceptions left out, as `ip -6 route` does).
pub async fn routes6(h: &Handle) -> Result<Vec<Route6>, rtnetlink::Error> {
    Ok(routes_raw6(h)
        .await?
        .iter()
        .filter_map(parse_route6)
        .collect())
}

/// What `ip -6 route get DST [iif IF]` answers: the route, or the kernel's refusal.
pub async fn route_get6(
    h: &Handle,
    dst: Ipv6Addr,
    iif: Option<u32>,
) -> Result<Route6, RouteGetError> {
    let mut b = RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(dst, 128);
    if let Some(i) = iif {
        b = b.input_interface(i);
    }
    crate::nl::route_get_answer(h, b.build(), parse_route6).await
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour6 {
    pub index: u32,
    pub ip: Ipv6Addr,
    pub mac: Option<Vec<u8>>,
    pub state: String,
}

/// Every NDP entry.
pub async fn neighbours6(h: &Handle) -> Result<Vec<Neighbour6>, rtnetlink::Error> {
    let msgs: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet6)
        .execute()
        .try_collect()
        .await?;
    Ok(msgs
        .iter()
        .filter_map(|m| {
            let ip = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(x)) => Some(*x),
                _ => None,
            })?;
            let mac = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(x) => Some(x.clone()),
                _ => None,
            });
            Some(Neighbour6 {
                index: m.header.ifindex,
                ip,
                mac,
                state: crate::nl::state_name(m.header.state).into(),
            })
        })
        .collect())
}

/// Adds an IPv6 address without duplicate address detection (`nodad`): the lab's addresses are
/// unique by construction, and DAD would only keep each "tentative" (unusable) for a second.
pub async fn add_address6(h: &Handle, index: u32, net: Ipv6Net) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::address::{AddressFlags, AddressHeaderFlags};
    let mut req = h
        .address()
        .add(index, IpAddr::V6(net.addr()), net.prefix_len());
    let m = req.message_mut();
    m.header.flags |= AddressHeaderFlags::Nodad;
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    req.execute().await
}

/// Adds an IPv6 route, optionally onlink (the gateway needs no address on the link).
pub async fn add_route6(
    h: &Handle,
    dst: Ipv6Net,
    gateway: Option<Ipv6Addr>,
    oif: u32,
    onlink: bool,
) -> Result<(), rtnetlink::Error> {
    let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .output_interface(oif);
    if let Some(g) = gateway {
        b = b.gateway(g);
    }
    if onlink {
        b = b.onlink();
    }
    h.route().add(b.build()).execute().await
}

pub async fn del_neighbour6(h: &Handle, index: u32, ip: Ipv6Addr) -> Result<(), rtnetlink::Error> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet6;
    m.header.ifindex = index;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)));
    h.neighbours().del(m).execute().await
}

pub async fn del_route6(
    h: &Handle,
    dst: Ipv6Net,
    gateway: Option<Ipv6Addr>,
    oif: u32,
) -> Result<(), rtnetlink::Error> {
    let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .output_interface(oif);
    if let Some(g) = gateway {
        b = b.gateway(g);
    }
    h.route().del(b.build()).execute().await
}

/// Every IPv6 route of the main table, as the kernel sends them (to delete and re-add exactly).
pub async fn routes_raw6(h: &Handle) -> Result<Vec<RouteMessage>, rtnetlink::Error> {
    let msg = RouteMessageBuilder::<Ipv6Addr>::new().build();
    let all: Vec<RouteMessage> = h.route().get(msg).execute().try_collect().await?;
    Ok(all
        .into_iter()
        .filter(|m| {
            u32::from(m.header.table) == 254
                && !m
                    .header
                    .flags
                    .contains(netlink_packet_route::route::RouteFlags::Cloned)
        })
        .collect())
}

/// The main table's IPv6 routes someone added (not the kernel's own prefix routes), on one
/// interface or all: what a fault that takes IPv6 off an interface must put back.
pub async fn added_routes6(
    h: &Handle,
    oif: Option<u32>,
) -> Result<Vec<RouteMessage>, rtnetlink::Error> {
    use netlink_packet_route::route::RouteProtocol;
    Ok(routes_raw6(h)
        .await?
        .into_iter()
        .filter(|m| m.header.protocol != RouteProtocol::Kernel)
        .filter(|m| {
            oif.is_none_or(|ix| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(o) if *o == ix))
            })
        })
        .collect())
}

pub async fn del_address6(h: &Handle, index: u32, net: Ipv6Net) -> Result<(), rtnetlink::Error> {
    let msg = rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new()
        .index(index)
        .address(net.addr(), net.prefix_len())
        .build();
    h.address().del(msg).execute().await
}
