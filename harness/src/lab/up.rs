//! Bringing a lab up: its namespaces created in parallel, every link made, configured and
//! waited for; on any error everything built so far drops (and the kernel frees it).

use super::live::{Lab, LabHost};
use super::plan::{HostPlan, IfaceKind, Plan};
use crate::error::{nl_error, Error, Result};
use crate::netns::{self, Netns};
use crate::nl::{self as netlink, VethSpec};
use crate::topology::Topology;
use futures::future::try_join_all;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long `up` waits for carriers before it calls the lab broken. Normally milliseconds; the
/// kernel updates operational state under the rtnl lock, which a busy machine tearing down
/// other namespaces can hold for seconds.
pub(super) const OPER_UP_TIMEOUT: Duration = Duration::from_secs(30);

impl Lab {
    /// Builds an anonymous lab: gone when the `Lab` drops or the process dies.
    pub async fn up(topo: &Topology) -> Result<Lab> {
        Lab::up_with(topo, &[]).await
    }

    /// Builds an anonymous lab, leaving the named CNI pods unattached (their namespaces exist;
    /// `cni_add` attaches them later).
    pub async fn up_with(topo: &Topology, unattached: &[&str]) -> Result<Lab> {
        if let crate::topology::Network::Tunnel { kind } = &topo.cluster.network {
            return Err(tunnel_unsupported(kind).await);
        }
        if let Some(w) = super::plan::neighbour_warning(topo) {
            eprintln!("netfault: warning: {w}");
        }
        let t0 = std::time::Instant::now();
        let plan = Plan::from_topology(topo);
        let t_plan = t0.elapsed();
        let hosts = create_namespaces(&plan).await?;
        let t_ns = t0.elapsed();
        crate::testhook::pause("up:namespaces");
        let mut lab = Lab {
            topo: topo.clone(),
            plan,
            hosts,
            name: None,
            cni: None,
            k8s: Default::default(),
        };
        // On error `lab` drops here, closing every fd: nothing is left behind.
        lab.wire().await?;
        crate::testhook::pause("up:wired");
        if std::env::var_os("NETFAULT_PROFILE").is_some() {
            eprintln!(
                "profile: plan {t_plan:?}, namespaces {t_ns:?}, wired {:?}",
                t0.elapsed()
            );
        }
        if topo.cni.is_some() {
            lab.attach_cni_pods(unattached).await?;
        }
        lab.wire_k8s().await?;
        Ok(lab)
    }

    pub(super) async fn wire(&self) -> Result<()> {
        // nft runs in parallel with netlink: a masquerade rule only names the uplink.
        let nft = try_join_all(self.plan.hosts.iter().flat_map(|hp| {
            let v4 = hp
                .masquerade
                .as_ref()
                .map(|m| (m.pod_cidr.into(), m.cluster_cidr.into(), &m.uplink));
            let v6 = hp
                .v6
                .masquerade
                .as_ref()
                .map(|m| (m.pod_cidr.into(), m.cluster_cidr.into(), &m.uplink));
            let host = self.hosts.get(&hp.name);
            [v4, v6]
                .into_iter()
                .flatten()
                .filter_map(move |(pod, cluster, uplink)| {
                    let host = host?;
                    let comment =
                        format!("netfault: masquerade pods of {} leaving {uplink}", hp.name);
                    let batch = crate::nft::masquerade_batch(pod, cluster, uplink, &comment);
                    Some(async move { crate::nft::apply(&host.ns, &hp.name, batch).await })
                })
        }));
        let links = async {
            let t0 = std::time::Instant::now();
            try_join_all(self.plan.hosts.iter().map(|hp| async move {
                self.create_links(hp).await?;
                crate::testhook::pause("up:links");
                Ok::<(), Error>(())
            }))
            .await?;
            let a = t0.elapsed();
            try_join_all(self.plan.hosts.iter().map(|hp| async move {
                self.configure(hp).await?;
                crate::testhook::pause("up:configured");
                Ok::<(), Error>(())
            }))
            .await?;
            let b = t0.elapsed();
            let r = try_join_all(self.plan.hosts.iter().map(|hp| self.wait_up(hp))).await;
            let r = match r {
                Ok(_) => try_join_all(self.topo.pods().map(|(pod, _)| self.hello(pod))).await,
                Err(e) => Err(e),
            };
            if std::env::var_os("NETFAULT_PROFILE").is_some() {
                eprintln!(
                    "profile: links {a:?}, configured {b:?}, up {:?}",
                    t0.elapsed()
                );
            }
            r
        };
        let (a, b) = tokio::join!(nft, links);
        a?;
        b?;
        Ok(())
    }

    /// Bridges, then the veth pairs this host creates (peers land in their namespaces).
    pub(super) async fn create_links(&self, hp: &HostPlan) -> Result<()> {
        let host = self.host(&hp.name)?;
        let h = host.handle();
        for i in &hp.ifaces {
            if matches!(i.kind, IfaceKind::Bridge) {
                netlink::add_bridge(h, &i.name, i.mac, i.mtu)
                    .await
                    .map_err(|e| nl_error(&hp.name, format!("creating bridge {}", i.name), e))?;
            }
        }
        let mut masters: BTreeMap<&str, u32> = BTreeMap::new();
        for i in &hp.ifaces {
            if let Some(m) = &i.master {
                if !masters.contains_key(m.as_str()) {
                    masters.insert(m, host.index(m).await?);
                }
            }
        }
        let masters = &masters;
        try_join_all(hp.ifaces.iter().filter_map(|i| match &i.kind {
            IfaceKind::Veth {
                peer_host,
                peer_name,
                create: true,
            } => Some(async move {
                let peer = self.host(peer_host)?;
                let peer_plan = self.plan.host(peer_host).and_then(|p| p.iface(peer_name));
                let spec = VethSpec {
                    name: &i.name,
                    mac: i.mac,
                    mtu: i.mtu,
                    master: i.master.as_deref().and_then(|m| masters.get(m).copied()),
                    up: true,
                    peer_name,
                    peer_mac: peer_plan
                        .map(|p| p.mac)
                        .unwrap_or(super::plan::mac_for(peer_host, peer_name)),
                    peer_mtu: peer_plan.and_then(|p| p.mtu),
                    peer_ns: &peer.ns,
                };
                netlink::add_veth(h, spec).await.map_err(|e| {
                    nl_error(
                        &hp.name,
                        format!("creating veth {} ⇄ {peer_host}:{peer_name}", i.name),
                        e,
                    )
                })
            }),
            _ => None,
        }))
        .await?;
        Ok(())
    }

    /// Inside each host: lo and veth peers up, addresses, routes, static neighbours.
    pub(super) async fn configure(&self, hp: &HostPlan) -> Result<()> {
        let host = self.host(&hp.name)?;
        let h = host.handle();
        // Overlay devices need their underlay interface, which may come from another host.
        for i in &hp.ifaces {
            if let IfaceKind::Vxlan {
                vni,
                port,
                local,
                dev,
            } = &i.kind
            {
                let dev_ix = host.index(dev).await?;
                netlink::add_vxlan(h, &i.name, *vni, *port, *local, dev_ix, i.mac, i.mtu)
                    .await
                    .map_err(|e| nl_error(&hp.name, format!("creating vxlan {}", i.name), e))?;
            }
        }
        let all = netlink::links(h)
            .await
            .map_err(|e| nl_error(&hp.name, "listing links", e))?;
        let index = |name: &str| {
            all.iter()
                .find(|l| l.name == name)
                .map(|l| l.index)
                .ok_or_else(|| {
                    Error::other(format!("{}: interface {name} was not created", hp.name))
                })
        };
        let mut ups = vec![index("lo")?];
        for i in &hp.ifaces {
            if matches!(i.kind, IfaceKind::Veth { create: false, .. }) {
                ups.push(index(&i.name)?);
            }
        }
        try_join_all(ups.into_iter().map(|ix| async move {
            netlink::set_up(h, ix, true)
                .await
                .map_err(|e| nl_error(&hp.name, "bringing a link up", e))
        }))
        .await?;
        let v4 = try_join_all(hp.addresses.iter().map(|(dev, net)| async move {
            netlink::add_address(h, index(dev)?, *net)
                .await
                .map_err(|e| nl_error(&hp.name, format!("adding {net} to {dev}"), e))
        }));
        // A dual-stack host's IPv6 addresses at the same time (nodad: see `dual_plan`).
        let v6 = try_join_all(hp.v6.addresses.iter().map(|(dev, net)| async move {
            crate::nl6::add_address6(h, index(dev)?, *net)
                .await
                .map_err(|e| nl_error(&hp.name, format!("adding {net} to {dev}"), e))
        }));
        tokio::try_join!(v4, v6)?;
        // Host routes first: other routes may need them to reach their gateway. IPv6 routes
        // (gateways on their addresses' subnets, or onlink) beside them.
        let (host_routes, others): (Vec<_>, Vec<_>) =
            hp.routes.iter().partition(|r| r.gateway.is_none());
        let v4 = async {
            for batch in [host_routes, others] {
                try_join_all(batch.into_iter().map(|r| async move {
                    netlink::add_route_onlink(h, r.dst, r.gateway, index(&r.dev)?, r.onlink)
                        .await
                        .map_err(|e| {
                            nl_error(&hp.name, format!("adding route {} dev {}", r.dst, r.dev), e)
                        })
                }))
                .await?;
            }
            Ok::<(), Error>(())
        };
        let v6 = try_join_all(hp.v6.routes.iter().map(|r| async move {
            crate::nl6::add_route6(h, r.dst, r.gateway, index(&r.dev)?, r.onlink)
                .await
                .map_err(|e| nl_error(&hp.name, format!("adding route {} dev {}", r.dst, r.dev), e))
        }));
        tokio::try_join!(v4, v6)?;
        try_join_all(hp.fdb.iter().map(|f| async move {
            netlink::add_fdb(h, index(&f.dev)?, &f.mac, f.dst)
                .await
                .map_err(|e| {
                    nl_error(
                        &hp.name,
                        format!("adding fdb entry on {} to {}", f.dev, f.dst),
                        e,
                    )
                })
        }))
        .await?;
        if !hp.iface_sysctls.is_empty() {
            let sysctls = hp.iface_sysctls.clone();
            host.ns
                .run_async(move || {
                    for (k, v) in &sysctls {
                        netns::write_sysctl(k, v)?;
                    }
                    Ok::<(), std::io::Error>(())
                })
                .await
                .and_then(|r| r)
                .map_err(|e| Error::io(format!("{}: interface sysctls", hp.name), e))?;
        }
        // Permanent neighbours (N² of them on a big bridge) go in batches on a socket of their own.
        if !hp.neighbours.is_empty() || !hp.v6.neighbours.is_empty() {
            let v4 = hp.neighbours.iter().map(|n| (&n.dev, n.ip.into(), n.mac));
            let v6 = hp
                .v6
                .neighbours
                .iter()
                .map(|n| (&n.dev, n.ip.into(), n.mac));
            let entries = v4
                .chain(v6)
                .map(|(dev, ip, mac)| Ok((index(dev)?, ip, mac)))
                .collect::<Result<Vec<_>>>()?;
            let failed = host
                .ns
                .run_async(move || netlink::add_permanent_neighbours_batched(&entries))
                .await
                .and_then(|r| r)
                .map_err(|e| Error::io(format!("{}: adding neighbours", hp.name), e))?;
            if let Some((ip, e)) = failed.into_iter().next() {
                return Err(Error::io(format!("{}: adding neighbour {ip}", hp.name), e));
            }
        }
        Ok(())
    }

    /// A bridged pod's first frame, so its bridge knows its port (see `learn`).
    pub(super) async fn hello(&self, pod: &str) -> Result<()> {
        let t = &self.topo;
        let Some(p) = t.host(pod).and_then(|h| h.as_pod()) else {
            return Ok(());
        };
        let Some(node) = t.host(&p.node).and_then(|h| h.as_node()) else {
            return Ok(());
        };
        // Real CNI plugins attach their pods later, and their pods ARP.
        if !t.has_bridge() || t.cni.is_some() {
            return Ok(());
        }
        let host = self.host(pod)?;
        let ix = host.index(&p.ifname).await?;
        let src = super::plan::mac_for(pod, &p.ifname);
        let dst = super::plan::mac_for(&p.node, &node.bridge);
        host.ns
            .run_async(move || super::learn::hello(ix, src, dst))
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("{pod}: a first frame to its bridge"), e))
    }

    pub(super) async fn wait_up(&self, hp: &HostPlan) -> Result<()> {
        let host = self.host(&hp.name)?;
        let pending = netlink::wait_oper_up(host.handle(), &hp.must_be_up(), OPER_UP_TIMEOUT)
            .await
            .map_err(|e| nl_error(&hp.name, "reading link state", e))?;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(Error::other(format!(
                "{}: {} not operationally up after {} s",
                hp.name,
                pending.join(", "),
                OPER_UP_TIMEOUT.as_secs()
            )))
        }
    }

    /// Waits until the named links of a host are operationally up (after a heal, say).
    pub async fn wait_links_up(&self, host: &str, names: &[String]) -> Result<()> {
        let h = self.host(host)?;
        let pending = netlink::wait_oper_up(h.handle(), names, OPER_UP_TIMEOUT)
            .await
            .map_err(|e| nl_error(host, "reading link state", e))?;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(Error::other(format!(
                "{host}: {} not operationally up",
                pending.join(", ")
            )))
        }
    }
}

/// Why a tunnel mode cannot be built: the kernel lacks it (checked in a scratch namespace), or
/// netfault does not build it yet.
pub(super) async fn tunnel_unsupported(kind: &str) -> Error {
    let check = async {
        let ns = Netns::create().map_err(|e| Error::io("creating a scratch namespace", e))?;
        let conn = netlink::connect(&ns)
            .await
            .map_err(|e| Error::io("scratch namespace netlink", e))?;
        netlink::link_kind_supported(&conn.handle, kind)
            .await
            .map_err(|e| nl_error("scratch", format!("creating a {kind} link"), e))
    };
    match check.await {
        Ok(false) => Error::Unsupported(format!(
            "network = \"{kind}\" needs {kind} links, which this kernel does not have (creating one fails)"
        )),
        Ok(true) => Error::NotImplemented(format!(
            "network = \"{kind}\": this kernel has {kind} links, but netfault does not build {kind} labs yet"
        )),
        Err(e) => e,
    }
}

/// Creates every namespace of a plan in parallel, each with its sysctls set and a netlink socket
/// opened inside it.
pub(super) async fn create_namespaces(plan: &Plan) -> Result<BTreeMap<String, LabHost>> {
    // The kernel refuses groups the user namespace does not map (a rootless run maps one).
    let groups = crate::privilege::mapped_groups();
    let specs: Vec<(String, Vec<(String, String)>)> = plan
        .hosts
        .iter()
        .map(|h| {
            let sysctls = h.sysctls.iter().map(|(k, v)| match k.as_str() {
                "net.ipv4.ping_group_range" => (k.clone(), groups.clone()),
                _ => (k.clone(), v.clone()),
            });
            (h.name.clone(), sysctls.collect())
        })
        .collect();
    // A few threads, each creating namespaces one after another (the kernel serialises most
    // of the work anyway; a thread per namespace only adds scheduling).
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
        .min(specs.len().max(1));
    let created = tokio::task::spawn_blocking(move || {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut out: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((name, sysctls)) = specs.get(i) else {
                                break;
                            };
                            let r = Netns::create_here_with(|| {
                                for (k, v) in sysctls {
                                    netns::write_sysctl(k, v)?;
                                }
                                netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)
                            })
                            .map(|(ns, sock)| (name.clone(), ns, sock))
                            .map_err(|e| (name.clone(), e));
                            mine.push((i, r));
                        }
                        mine
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("namespace thread"))
                .collect()
        });
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Error::other(format!("creating namespaces: {e}")))?;
    let mut hosts = BTreeMap::new();
    let mut first_err = None;
    for r in created {
        match r {
            Ok((name, ns, sock)) => {
                hosts.insert(
                    name.clone(),
                    LabHost {
                        name,
                        ns,
                        nl: netlink::from_socket(sock),
                    },
                );
            }
            Err((name, e)) => {
                first_err.get_or_insert_with(|| {
                    if e.kind() == std::io::ErrorKind::PermissionDenied {
                        Error::Unsupported(format!("{name}: {e}"))
                    } else {
                        Error::io(format!("{name}: creating namespace"), e)
                    }
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(hosts),
    }
}
