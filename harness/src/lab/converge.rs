//! Changing a running lab the way the API changes a cluster: a new topology that differs from
//! the lab's in its Kubernetes layer and its pods' labels and addresses. Links stay (so do
//! sockets and established flows); a pod given a new address loses its old one, as a pod
//! that was deleted and re-created does; the neighbours the plan pins follow it; kube-proxy's
//! and the policies' tables, resolv.conf and the DNS server's records are rendered afresh.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::live::Lab;
use super::plan::{HostPlan, Plan};
use crate::error::{netlink_errno, nl_error, Result};
use crate::nl as netlink;
use crate::topology::Topology;

/// One host's address or pinned neighbour, either family: what a change adds or removes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Address(String, ipnet::IpNet),
    Neighbour(String, IpAddr, [u8; 6]),
}

fn items(hp: &HostPlan) -> BTreeSet<Item> {
    let addrs = hp
        .addresses
        .iter()
        .map(|(d, n)| Item::Address(d.clone(), (*n).into()))
        .chain(
            hp.v6
                .addresses
                .iter()
                .map(|(d, n)| Item::Address(d.clone(), (*n).into())),
        );
    let neighs = hp
        .neighbours
        .iter()
        .map(|n| Item::Neighbour(n.dev.clone(), n.ip.into(), n.mac))
        .chain(
            hp.v6
                .neighbours
                .iter()
                .map(|n| Item::Neighbour(n.dev.clone(), n.ip.into(), n.mac)),
        );
    addrs.chain(neighs).collect()
}

impl Lab {
    /// Brings the running lab to `next`: address and neighbour differences applied host by
    /// host (the old ones removed first, so a re-created pod never holds both), every planned
    /// route put back where removing an address took it, then the Kubernetes layer rendered
    /// from `next`. The lab's topology and plan become `next`'s.
    pub async fn converge(&mut self, next: Topology) -> Result<()> {
        let plan = Plan::from_topology(&next);
        for new in &plan.hosts {
            let Some(old) = self.plan.host(&new.name) else {
                continue;
            };
            let (was, now) = (items(old), items(new));
            if was == now {
                continue;
            }
            for gone in was.difference(&now) {
                self.remove_item(&new.name, gone).await?;
            }
            for came in now.difference(&was) {
                if let Item::Address(dev, net) = came {
                    self.add_address(&new.name, dev, *net).await?;
                }
            }
            // New neighbours go in with the planned ones a removed address flushed.
            self.restore_planned(new).await?;
        }
        let records_changed = self.topo.dns_records() != next.dns_records()
            || super::k8s::dns_endpoint(&self.topo) != super::k8s::dns_endpoint(&next);
        self.topo = next;
        self.plan = plan;
        self.render_k8s().await?;
        if records_changed && self.stop_dns() {
            self.start_dns()?;
        }
        Ok(())
    }

    async fn remove_item(&self, host: &str, item: &Item) -> Result<()> {
        let l = self.host(host)?;
        let h = l.handle();
        let (Item::Address(dev, _) | Item::Neighbour(dev, _, _)) = item;
        let ix = l.index(dev).await?;
        let r = match item {
            Item::Address(_, ipnet::IpNet::V4(n)) => netlink::del_address(h, ix, *n).await,
            Item::Address(_, ipnet::IpNet::V6(n)) => crate::nl6::del_address6(h, ix, *n).await,
            Item::Neighbour(_, IpAddr::V4(a), _) => netlink::del_neighbour(h, ix, *a).await,
            Item::Neighbour(_, IpAddr::V6(a), _) => crate::nl6::del_neighbour6(h, ix, *a).await,
        };
        r.map_err(|e| nl_error(host, format!("removing {item:?}"), e))
    }

    async fn add_address(&self, host: &str, dev: &str, net: ipnet::IpNet) -> Result<()> {
        let l = self.host(host)?;
        let (h, ix) = (l.handle(), l.index(dev).await?);
        let r = match net {
            ipnet::IpNet::V4(n) => netlink::add_address(h, ix, n).await,
            ipnet::IpNet::V6(n) => crate::nl6::add_address6(h, ix, n).await,
        };
        r.map_err(|e| nl_error(host, format!("adding {net} to {dev}"), e))
    }

    /// Every planned route and pinned neighbour of `hp` added again where missing: removing a
    /// device's last address takes the routes that used it and flushes its neighbour table,
    /// permanent entries included.
    async fn restore_planned(&self, hp: &HostPlan) -> Result<()> {
        let h = self.host(&hp.name)?.handle();
        let links = netlink::links(h)
            .await
            .map_err(|e| nl_error(&hp.name, "listing links", e))?;
        let index = |dev: &str| {
            links
                .iter()
                .find(|l| l.name == dev)
                .map(|l| l.index)
                .ok_or_else(|| {
                    crate::error::Error::NotFound(format!("{}: no interface {dev}", hp.name))
                })
        };
        let neighbours = hp
            .neighbours
            .iter()
            .map(|n| (&n.dev, IpAddr::from(n.ip), n.mac));
        let neighbours6 = hp
            .v6
            .neighbours
            .iter()
            .map(|n| (&n.dev, IpAddr::from(n.ip), n.mac));
        for (dev, ip, mac) in neighbours.chain(neighbours6) {
            let ix = index(dev)?;
            netlink::add_permanent_neighbour(h, ix, ip, &mac)
                .await
                .map_err(|e| nl_error(&hp.name, format!("adding neighbour {ip}"), e))?;
        }
        let exists = |e: &rtnetlink::Error| netlink_errno(e) == Some(libc::EEXIST);
        let (direct, via): (Vec<_>, Vec<_>) = hp.routes.iter().partition(|r| r.gateway.is_none());
        for r in direct.into_iter().chain(via) {
            let ix = index(&r.dev)?;
            match netlink::add_route_onlink(h, r.dst, r.gateway, ix, r.onlink).await {
                Err(e) if !exists(&e) => {
                    return Err(nl_error(&hp.name, format!("adding route {}", r.dst), e))
                }
                _ => {}
            }
        }
        for r in &hp.v6.routes {
            let ix = index(&r.dev)?;
            match crate::nl6::add_route6(h, r.dst, r.gateway, ix, r.onlink).await {
                Err(e) if !exists(&e) => {
                    return Err(nl_error(&hp.name, format!("adding route {}", r.dst), e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}
