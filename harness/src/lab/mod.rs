//! A live lab: one anonymous namespace per host, wired by netlink as the plan says.
//!
//! `Lab::up` returns only when every link is operationally up; if any step fails, everything
//! built so far is dropped (and so freed by the kernel) before the error returns. Dropping a
//! `Lab` closes its namespace fds and netlink sockets: the kernel then removes every namespace and
//! interface of the lab. Named labs (`up_named`) are also pinned under /run/netns and outlive the
//! process until `Lab::down_named`.

pub mod k8s;
mod learn;
pub mod plan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::try_join_all;

use crate::cni;
use crate::error::{nl_error, Error, Result};
use crate::netns::{self, Netns};
use crate::nl::{self as netlink, NlConn, VethSpec};
use crate::registry::{self, LabRecord, RecordState};
use crate::topology::Topology;
pub use plan::{HostPlan, IfaceKind, Plan};

/// One namespace of a lab, with its netlink connection.
pub struct LabHost {
    pub name: String,
    pub ns: Netns,
    pub nl: NlConn,
}

impl LabHost {
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.nl.handle
    }

    /// The ifindex of a link in this host, or an error naming host and link.
    pub async fn index(&self, ifname: &str) -> Result<u32> {
        match netlink::link_by_name(self.handle(), ifname).await {
            Ok(Some(l)) => Ok(l.index),
            Ok(None) => Err(Error::NotFound(format!(
                "{}: no interface {ifname}",
                self.name
            ))),
            Err(e) => Err(nl_error(&self.name, format!("looking up {ifname}"), e)),
        }
    }
}

pub struct Lab {
    topo: Topology,
    plan: Plan,
    hosts: BTreeMap<String, LabHost>,
    name: Option<String>,
    cni: Option<CniState>,
    k8s: k8s::K8sRuntime,
}

/// The CNI side of a lab whose pods real plugins attached.
pub struct CniState {
    pub runtime: cni::Runtime,
    /// The conflist each node's plugins run with (placeholders filled in).
    pub lists: BTreeMap<String, cni::ConfList>,
    /// Each attached pod's attachment, with the cached result.
    pub attachments: BTreeMap<String, cni::Attachment>,
    /// Whether dropping the lab removes the IPAM and tuning state (not for a pinned lab).
    owns_dir: bool,
}

impl Drop for CniState {
    fn drop(&mut self) {
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.runtime.data_dir);
        }
    }
}

/// How long `up` waits for carriers before it calls the lab broken. Normally milliseconds; the
/// kernel updates operational state under the rtnl lock, which a busy machine tearing down
/// other namespaces can hold for seconds.
const OPER_UP_TIMEOUT: Duration = Duration::from_secs(30);

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
        if let Some(w) = plan::neighbour_warning(topo) {
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

    /// Builds a lab and pins every host at /run/netns/<name>-<host>; it outlives this process
    /// until `netfault down <name>`.
    pub async fn up_named(topo: &Topology, name: &str, fixture: Option<PathBuf>) -> Result<Lab> {
        Lab::up_named_as(topo, name, fixture, RecordState::Up).await
    }

    /// Like `up_named`, but the record stays "building" (what `gc` reaps if this process dies)
    /// until the caller, done with its own steps (a DNS daemon), calls `registry::mark_up`.
    pub async fn up_named_building(
        topo: &Topology,
        name: &str,
        fixture: Option<PathBuf>,
    ) -> Result<Lab> {
        Lab::up_named_as(topo, name, fixture, RecordState::Building).await
    }

    /// Builds and pins a named lab; its record ends in `state`.
    async fn up_named_as(
        topo: &Topology,
        name: &str,
        fixture: Option<PathBuf>,
        state: RecordState,
    ) -> Result<Lab> {
        let mut rec = LabRecord::new(name, fixture, topo);
        registry::reserve(&rec)?;
        crate::testhook::pause("up:reserved");
        let built = async {
            let mut lab = Lab::up(topo).await?;
            for (host, pin) in &rec.pins {
                lab.host(host)?
                    .ns
                    .pin(pin)
                    .map_err(|e| Error::io(format!("pinning {host}"), e))?;
                crate::testhook::pause("up:pinned");
            }
            lab.name = Some(name.to_string());
            // Pods' resolv.conf files, for `netfault exec` to mount over /etc/resolv.conf.
            let dir = crate::paths::resolv_dir(name);
            k8s::write_resolv_confs(&lab.topo, &dir)?;
            lab.k8s.resolv_dir = Some(dir);
            crate::testhook::pause("up:resolv");
            Ok::<Lab, Error>(lab)
        }
        .await;
        match built {
            Ok(mut lab) => {
                rec.state = state;
                // What CNI plugins assigned, and their state, belong to the pinned lab now.
                rec.topology = lab.topo.clone();
                if let Some(c) = lab.cni.as_mut() {
                    c.owns_dir = false;
                    rec.cni_dir = Some(c.runtime.data_dir.clone());
                    rec.cni_lists = c.lists.clone();
                    rec.cni_attachments = c.attachments.clone();
                }
                if let Err(e) = registry::update(&rec) {
                    let _ = registry::remove(&rec);
                    return Err(e);
                }
                crate::testhook::pause("up:recorded");
                Ok(lab)
            }
            Err(e) => {
                let _ = registry::remove(&rec);
                Err(e)
            }
        }
    }

    /// Opens a named lab another process (or an earlier run) brought up.
    pub async fn attach(name: &str) -> Result<Lab> {
        Lab::attach_inner(name, false).await
    }

    /// Opens a named lab whose builder is still at work (the DNS daemon it starts).
    pub async fn attach_building(name: &str) -> Result<Lab> {
        Lab::attach_inner(name, true).await
    }

    async fn attach_inner(name: &str, building: bool) -> Result<Lab> {
        let rec = registry::load(name)?;
        if rec.state != RecordState::Up && !(building && rec.owner_alive()) {
            return Err(Error::NotFound(format!(
                "lab {name} is still being built{}",
                if rec.owner_alive() {
                    ""
                } else {
                    " by a process that died: netfault gc removes it"
                }
            )));
        }
        let plan = Plan::from_topology(&rec.topology);
        let mut hosts = BTreeMap::new();
        for (host, pin) in &rec.pins {
            let ns = Netns::open(pin).map_err(|e| {
                Error::NotFound(format!(
                    "lab {name}: cannot open {} ({}); the lab is damaged: netfault down {name}",
                    pin.display(),
                    crate::topology::source::plain_io_error(&e)
                ))
            })?;
            let conn = netlink::connect(&ns)
                .await
                .map_err(|e| Error::io(format!("{host}: opening netlink"), e))?;
            hosts.insert(
                host.clone(),
                LabHost {
                    name: host.clone(),
                    ns,
                    nl: conn,
                },
            );
        }
        let cni = match (&rec.topology.cni, &rec.cni_dir) {
            (Some(spec), Some(dir)) => Some(CniState {
                runtime: cni::Runtime {
                    path: cni::PluginPath::resolve(&spec.path),
                    data_dir: dir.clone(),
                    exec_path: None,
                },
                lists: rec.cni_lists.clone(),
                attachments: rec.cni_attachments.clone(),
                owns_dir: false,
            }),
            _ => None,
        };
        Ok(Lab {
            topo: rec.topology,
            plan,
            hosts,
            name: Some(name.to_string()),
            cni,
            k8s: k8s::K8sRuntime {
                resolv_dir: Some(crate::paths::resolv_dir(name)),
                ..Default::default()
            },
        })
    }

    /// Removes a named lab's pins and record. The namespaces go once nothing else holds them.
    pub fn down_named(name: &str) -> Result<Vec<PathBuf>> {
        let rec = registry::load(name)?;
        registry::remove(&rec)
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The lab's name if it is pinned.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn host(&self, name: &str) -> Result<&LabHost> {
        self.hosts
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("no host {name} in this lab")))
    }

    /// Every namespace of the lab (hosts and switch), by name.
    pub fn hosts(&self) -> impl Iterator<Item = &LabHost> {
        self.hosts.values()
    }

    /// Inode numbers of the lab's namespaces: their identity on this machine.
    pub fn namespace_inodes(&self) -> Vec<(String, u64)> {
        self.hosts
            .values()
            .map(|h| (h.name.clone(), h.ns.inode()))
            .collect()
    }

    async fn wire(&self) -> Result<()> {
        // nft runs in parallel with netlink: a masquerade rule only names the uplink.
        let nft = try_join_all(self.plan.hosts.iter().filter_map(|hp| {
            let m = hp.masquerade.as_ref()?;
            let host = self.hosts.get(&hp.name)?;
            let comment = format!(
                "netfault: masquerade pods of {} leaving {}",
                hp.name, m.uplink
            );
            let batch =
                crate::nft::masquerade_batch(m.pod_cidr, m.cluster_cidr, &m.uplink, &comment);
            Some(async move { crate::nft::apply(&host.ns, &hp.name, batch).await })
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
    async fn create_links(&self, hp: &HostPlan) -> Result<()> {
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
                        .unwrap_or(plan::mac_for(peer_host, peer_name)),
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
    async fn configure(&self, hp: &HostPlan) -> Result<()> {
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
        try_join_all(hp.addresses.iter().map(|(dev, net)| async move {
            netlink::add_address(h, index(dev)?, *net)
                .await
                .map_err(|e| nl_error(&hp.name, format!("adding {net} to {dev}"), e))
        }))
        .await?;
        // Host routes first: other routes may need them to reach their gateway.
        let (host_routes, others): (Vec<_>, Vec<_>) =
            hp.routes.iter().partition(|r| r.gateway.is_none());
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
        if !hp.neighbours.is_empty() {
            let entries = hp
                .neighbours
                .iter()
                .map(|n| Ok((index(&n.dev)?, n.ip, n.mac)))
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
    async fn hello(&self, pod: &str) -> Result<()> {
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
        let src = plan::mac_for(pod, &p.ifname);
        let dst = plan::mac_for(&p.node, &node.bridge);
        host.ns
            .run_async(move || learn::hello(ix, src, dst))
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("{pod}: a first frame to its bridge"), e))
    }

    async fn wait_up(&self, hp: &HostPlan) -> Result<()> {
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

    /// The Kubernetes layer: hairpin on pod bridge ports, kube-proxy's and the policies' nft
    /// tables on every node, each pod's resolv.conf, the cluster DNS server.
    async fn wire_k8s(&mut self) -> Result<()> {
        let t = self.topo.clone();
        if t.k8s.is_empty() {
            return Ok(());
        }
        for (node, port) in k8s::hairpin_ports(&t) {
            let h = self.host(&node)?;
            let ix = h.index(&port).await?;
            netlink::set_hairpin(h.handle(), ix, true)
                .await
                .map_err(|e| nl_error(&node, format!("hairpin on {port}"), e))?;
        }
        try_join_all(
            t.nodes()
                .map(|(node, _)| self.apply_k8s_tables(node, &t.k8s)),
        )
        .await?;
        crate::testhook::pause("up:k8s");
        for (pod, _) in t.pods() {
            if let Some(text) = t.resolv_conf(pod) {
                self.k8s.set_resolv_conf(pod, &text)?;
            }
        }
        self.start_dns()?;
        Ok(())
    }

    /// Renders kube-proxy's and the policies' tables for `node` from `spec` and replaces the
    /// live ones (one nft transaction).
    pub async fn apply_k8s_tables(&self, node: &str, spec: &crate::topology::K8s) -> Result<()> {
        self.nft_script(node, k8s::node_script(&self.topo, spec, node))
            .await
    }

    /// Runs an nft script inside a host.
    pub async fn nft_script(&self, host: &str, script: String) -> Result<()> {
        let h = self.host(host)?;
        let name = host.to_string();
        h.ns.run_async(move || crate::tools::run_tool("nft", &["-f", "-"], Some(&script)))
            .await
            .and_then(|r| r)
            .map(|_| ())
            .map_err(|e| Error::io(format!("{name}: nft -f"), e))
    }

    /// Starts the cluster DNS server in its pod (if the fixture has one and it is not running).
    pub fn start_dns(&self) -> Result<()> {
        let Some((pod, addr)) = k8s::dns_endpoint(&self.topo) else {
            return Ok(());
        };
        let mut slot = self
            .k8s
            .dns
            .lock()
            .map_err(|_| Error::other("DNS server lock poisoned"))?;
        if slot.is_none() {
            let d = self.topo.k8s.dns.as_ref().expect("dns");
            *slot = Some(k8s::DnsServer::start(
                &self.host(&pod)?.ns,
                addr,
                self.topo.dns_records(),
                d.domain.clone(),
            )?);
        }
        Ok(())
    }

    /// Stops the cluster DNS server; whether it was running.
    pub fn stop_dns(&self) -> bool {
        self.k8s
            .dns
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .is_some()
    }

    /// Whether the cluster DNS server runs (in this process).
    pub fn dns_running(&self) -> bool {
        self.k8s.dns.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// A pod's resolv.conf as the lab has it now.
    pub fn resolv_conf(&self, pod: &str) -> Option<String> {
        self.k8s.resolv_conf(pod)
    }

    pub fn set_resolv_conf(&self, pod: &str, text: &str) -> Result<()> {
        self.k8s.set_resolv_conf(pod, text)
    }

    /// The CNI side of the lab, if real plugins attached its pods.
    pub fn cni(&self) -> Option<&CniState> {
        self.cni.as_ref()
    }

    /// The `CNI_NETNS` path of a host's namespace: an fd of this process.
    pub fn netns_path(&self, host: &str) -> Result<String> {
        Ok(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.host(host)?.ns.raw_fd()
        ))
    }

    /// Attaches every pod with the fixture's conflist (per node, pods in order: host-local
    /// allocates round-robin, so addresses come from the results, never assumed), then records
    /// what the plugins built in the topology and the plan.
    async fn attach_cni_pods(&mut self, unattached: &[&str]) -> Result<()> {
        let spec = self.topo.cni.clone().expect("cni fixture");
        let dir = cni::state_dir().map_err(|e| Error::io("creating the CNI state directory", e))?;
        let runtime = cni::Runtime {
            path: cni::PluginPath::resolve(&spec.path),
            data_dir: dir,
            exec_path: None,
        };
        let mut state = CniState {
            runtime,
            lists: BTreeMap::new(),
            attachments: BTreeMap::new(),
            owns_dir: true,
        };
        let nodes: Vec<(String, crate::topology::NodeSpec)> = self
            .topo
            .nodes()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect();
        for (node, ns) in &nodes {
            let gw = ns.pod_cidr.hosts().next().expect("pod cidr has hosts");
            let text = crate::topology::parse::fill_conflist(&spec.template, node, ns.pod_cidr, gw);
            let list =
                cni::ConfList::parse(&crate::topology::Source::new(&spec.conflist_path, text))
                    .map_err(crate::topology::ConfigErrors::from)?;
            state.lists.insert(node.clone(), list);
        }
        let pods: Vec<(String, String, String)> = self
            .topo
            .pods()
            .map(|(n, p)| (n.to_string(), p.node.clone(), p.ifname.clone()))
            .collect();
        // Store the state first: an error below drops the lab and with it the state directory.
        self.cni = Some(state);
        for (pod, node, ifname) in pods.iter().filter(|p| !unattached.contains(&p.0.as_str())) {
            let netns = self.netns_path(pod)?;
            let st = self.cni.as_ref().expect("set");
            let list = st.lists[node].clone();
            let att = st
                .runtime
                .add(
                    &self.host(node)?.ns,
                    &list,
                    &format!("netfault-{pod}"),
                    &netns,
                    ifname,
                    &spec.runtime_config,
                )
                .await
                .map_err(Error::Cni)?;
            self.record_cni_pod(pod, &att)?;
            self.cni
                .as_mut()
                .expect("set")
                .attachments
                .insert(pod.clone(), att);
        }
        self.plan = Plan::from_topology(&self.topo);
        for hp in self.plan.hosts.clone() {
            self.wait_up(&hp).await?;
        }
        Ok(())
    }

    /// Runs the conflist's ADD for a pod now (records the result like `up` does).
    pub async fn cni_add(&mut self, pod: &str) -> Result<()> {
        let (node, ifname) = self
            .topo
            .host(pod)
            .and_then(|h| h.as_pod())
            .map(|p| (p.node.clone(), p.ifname.clone()))
            .ok_or_else(|| Error::NotFound(format!("{pod} is not a pod")))?;
        let netns = self.netns_path(pod)?;
        let spec = self
            .topo
            .cni
            .clone()
            .ok_or_else(|| Error::other("the lab's pods are not attached by CNI"))?;
        let st = self
            .cni
            .as_ref()
            .ok_or_else(|| Error::other("no CNI state"))?;
        let list = st.lists[&node].clone();
        let att = st
            .runtime
            .add(
                &self.host(&node)?.ns,
                &list,
                &format!("netfault-{pod}"),
                &netns,
                &ifname,
                &spec.runtime_config,
            )
            .await?;
        self.record_cni_pod(pod, &att)?;
        self.cni
            .as_mut()
            .expect("state")
            .attachments
            .insert(pod.to_string(), att);
        self.plan = Plan::from_topology(&self.topo);
        for hp in self.plan.hosts.clone() {
            if hp.name == pod || hp.name == node {
                self.wait_up(&hp).await?;
            }
        }
        Ok(())
    }

    /// Runs the conflist's CHECK for an attached pod.
    pub async fn cni_check(&self, pod: &str) -> Result<std::result::Result<(), cni::CniError>> {
        let (st, node, att) = self.cni_parts(pod)?;
        let rc = self
            .topo
            .cni
            .as_ref()
            .map(|c| c.runtime_config.clone())
            .unwrap_or_default();
        Ok(st
            .runtime
            .check(&self.host(&node)?.ns, &st.lists[&node], att, &rc)
            .await)
    }

    /// Runs the conflist's DEL for a pod (attached now or before; the cached result goes to the
    /// plugins as the spec says).
    pub async fn cni_del(&self, pod: &str) -> Result<std::result::Result<(), cni::CniError>> {
        let (st, node, att) = self.cni_parts(pod)?;
        let rc = self
            .topo
            .cni
            .as_ref()
            .map(|c| c.runtime_config.clone())
            .unwrap_or_default();
        Ok(st
            .runtime
            .del(&self.host(&node)?.ns, &st.lists[&node], att, &rc)
            .await)
    }

    fn cni_parts(&self, pod: &str) -> Result<(&CniState, String, &cni::Attachment)> {
        let st = self.cni_state()?;
        let att = st
            .attachments
            .get(pod)
            .ok_or_else(|| Error::NotFound(format!("{pod} was never attached")))?;
        let node = self
            .topo
            .host(pod)
            .and_then(|h| h.as_pod())
            .map(|p| p.node.clone())
            .expect("pod");
        Ok((st, node, att))
    }

    /// STATUS on every node's conflist: `(node, replies)`.
    pub async fn cni_status(&self) -> Result<Vec<(String, Vec<cni::PluginReply>)>> {
        let st = self.cni_state()?;
        let mut out = Vec::new();
        for (node, list) in &st.lists {
            let r = st.runtime.status(&self.host(node)?.ns, list).await;
            out.push((node.clone(), r));
        }
        Ok(out)
    }

    /// GC on every node's conflist, with the node's attached pods as the valid attachments:
    /// a plugin that speaks 1.1.0 releases whatever else it holds.
    pub async fn cni_gc(&self) -> Result<Vec<(String, Vec<cni::PluginReply>)>> {
        let st = self.cni_state()?;
        let mut out = Vec::new();
        for (node, list) in &st.lists {
            let valid: Vec<cni::Attachment> = self
                .topo
                .pods_of(node)
                .filter_map(|(pod, _)| st.attachments.get(pod).cloned())
                .collect();
            let r = st.runtime.gc(&self.host(node)?.ns, list, &valid).await;
            out.push((node.clone(), r));
        }
        Ok(out)
    }

    fn cni_state(&self) -> Result<&CniState> {
        self.cni
            .as_ref()
            .ok_or_else(|| Error::other("the lab's pods are not attached by CNI"))
    }

    /// The CNI state, mutable (to change the plugin path or PATH for a check).
    pub fn cni_mut(&mut self) -> Option<&mut CniState> {
        self.cni.as_mut()
    }

    /// Takes a pod's address, gateway and host veth from its CNI result into the topology.
    fn record_cni_pod(&mut self, pod: &str, att: &cni::Attachment) -> Result<()> {
        let sum = cni::summarize(&att.result);
        let addr = sum
            .address
            .ok_or_else(|| Error::other(format!("{pod}: the CNI result has no IPv4 address")))?;
        let host_veth = sum
            .interfaces
            .iter()
            .find(|(name, _, sandbox)| {
                !sandbox
                    && Some(name.as_str())
                        != self.topo.cni.as_ref().and_then(|c| c.bridge.as_deref())
            })
            .map(|(n, _, _)| n.clone())
            .ok_or_else(|| {
                Error::other(format!(
                    "{pod}: the CNI result names no host-side interface"
                ))
            })?;
        let node_name = self
            .topo
            .host(pod)
            .and_then(|h| h.as_pod())
            .map(|p| p.node.clone())
            .expect("pod");
        for h in self.topo.hosts.iter_mut() {
            match &mut h.role {
                crate::topology::Role::Pod(p) if h.name == pod => {
                    p.ip = addr.addr();
                    p.host_veth = host_veth.clone();
                }
                crate::topology::Role::Node(n) if h.name == node_name => {
                    if let Some(g) = sum.gateway {
                        n.gateway = g;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Forgets a host: closes this process's namespace fds (the namespace goes, and with it its
    /// side of every veth). For checking what a runtime must survive (DEL after the pod is gone).
    pub fn forget_host(&mut self, name: &str) -> bool {
        self.hosts.remove(name).is_some()
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
async fn tunnel_unsupported(kind: &str) -> Error {
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
async fn create_namespaces(plan: &Plan) -> Result<BTreeMap<String, LabHost>> {
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
