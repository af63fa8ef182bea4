//! The IPv6 half of a host's plan in a dual-stack lab (data): addresses, routes, permanent NDP
//! neighbours and the ip6 masquerade. `dual_plan` builds it; `up` wires it beside the IPv4 half.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::nl::Mac;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan6 {
    pub addresses: Vec<(String, Ipv6Net)>,
    pub routes: Vec<Route6Plan>,
    pub neighbours: Vec<Neigh6Plan>,
    pub masquerade: Option<Masq6Plan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route6Plan {
    pub dst: Ipv6Net,
    pub gateway: Option<Ipv6Addr>,
    pub dev: String,
    pub onlink: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Neigh6Plan {
    pub dev: String,
    pub ip: Ipv6Addr,
    pub mac: Mac,
}

#[derive(Debug, Clone, Serialize)]
pub struct Masq6Plan {
    pub pod_cidr: Ipv6Net,
    pub cluster_cidr: Ipv6Net,
    pub uplink: String,
}

impl Plan6 {
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.routes.is_empty() && self.neighbours.is_empty()
    }

    /// The route the plan gives `dst`: its interface and gateway (longest prefix among the
    /// host's connected IPv6 subnets and routes).
    pub fn route_for(&self, dst: Ipv6Addr) -> Option<(&str, Option<Ipv6Addr>)> {
        let connected = self
            .addresses
            .iter()
            .map(|(dev, n)| (dev.as_str(), n.trunc(), None));
        let routed = self
            .routes
            .iter()
            .map(|r| (r.dev.as_str(), r.dst, r.gateway));
        longest_match(connected.chain(routed), |n| {
            n.contains(&dst).then(|| n.prefix_len())
        })
    }
}

/// Of (interface, network, gateway) entries, the one whose network covers the destination with
/// the longest prefix (`covers`: the prefix length where it covers it): a route lookup over a
/// host's planned routes and connected subnets, in either family.
pub(crate) fn longest_match<'a, N, G>(
    entries: impl Iterator<Item = (&'a str, N, Option<G>)>,
    covers: impl Fn(&N) -> Option<u8>,
) -> Option<(&'a str, Option<G>)> {
    entries
        .filter_map(|(dev, net, gw)| covers(&net).map(|len| (len, dev, gw)))
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, dev, gw)| (dev, gw))
}
