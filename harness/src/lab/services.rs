//! The lab's Kubernetes layer: kube-proxy's tables on each node and the cluster DNS server.

use std::net::IpAddr;

use super::k8s;
use super::live::Lab;
use crate::error::{nl_error, Error, Result};
use crate::nl as netlink;
use futures::future::try_join_all;

impl Lab {
    /// The Kubernetes layer: hairpin on pod bridge ports, kube-proxy's and the policies' nft
    /// tables on every node, each pod's resolv.conf, the cluster DNS server.
    pub(super) async fn wire_k8s(&mut self) -> Result<()> {
        if self.topo.k8s.is_empty() {
            return Ok(());
        }
        self.render_k8s().await?;
        self.start_dns()
    }

    /// What kube-proxy, the policy controller and the kubelet keep rendering: hairpin on pod
    /// bridge ports, the nodes' nft tables, each pod's resolv.conf (not the DNS server).
    pub(super) async fn render_k8s(&self) -> Result<()> {
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
        Ok(())
    }

    /// Deletes the node's UDP conntrack entries to a Service whose translation leads to no
    /// endpoint it has (an old endpoint, a wrong port), or that met no translation at all (sent
    /// while kube-proxy's rules were missing): those flows would keep going there. kube-proxy
    /// deletes such UDP entries when a Service's endpoints change, for the same reason. How
    /// many.
    pub async fn forget_stale_udp(&self, node: &str) -> Result<usize> {
        let t = &self.topo;
        let services: Vec<(Sockets, Sockets)> = t
            .k8s
            .services
            .iter()
            .map(|s| (service_fronts(t, s), service_endpoints(t, s)))
            .collect();
        let stale = move |f: &crate::conntrack::UdpFlow| {
            services
                .iter()
                .any(|(fronts, eps)| fronts.contains(&f.dst) && !eps.contains(&f.to))
        };
        self.host(node)?
            .ns
            .run_async(move || crate::conntrack::delete_udp_where(stale))
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("{node}: deleting conntrack entries"), e))
    }

    /// Renders kube-proxy's and the policies' tables for `node` from `spec` and replaces the
    /// live ones (one nft transaction; in iptables mode, kube-proxy's chains then go in with
    /// iptables-nft-restore).
    pub async fn apply_k8s_tables(&self, node: &str, spec: &crate::topology::K8s) -> Result<()> {
        self.apply_k8s_view(&self.topo, spec, node).await
    }

    /// As `apply_k8s_tables`, rendered over `view` (the lab's topology, or one where a pod
    /// moved).
    pub async fn apply_k8s_view(
        &self,
        view: &crate::topology::Topology,
        spec: &crate::topology::K8s,
        node: &str,
    ) -> Result<()> {
        self.nft_script(node, k8s::node_script(view, spec, node))
            .await?;
        if spec.proxy_mode != crate::topology::k8s::ProxyMode::Iptables {
            return Ok(());
        }
        // No table yet: nothing of kube-proxy's either.
        let list = |table| async move {
            let text = self.nft_table_text(node, "ip", table).await?;
            let chains = text.map(|t| super::kube_proxy_iptables::LiveChains::read(&t));
            Ok::<_, Error>(chains.unwrap_or_default())
        };
        let live = super::kube_proxy_iptables::LiveChains {
            nat: list("nat").await?,
            filter: list("filter").await?,
        };
        let script = super::kube_proxy_iptables::iptables_script(view, spec, node, &live);
        let h = self.host(node)?;
        h.ns.run_async(move || {
            crate::tools::run_tool("iptables-nft-restore", &["--noflush"], Some(&script))
        })
        .await
        .and_then(|r| r)
        .map(|_| ())
        .map_err(|e| Error::io(format!("{node}: iptables-nft-restore"), e))
    }

    /// `nft list table FAMILY TABLE` inside a host; None when the host has no such table.
    pub async fn nft_table_text(
        &self,
        host: &str,
        family: &'static str,
        table: &'static str,
    ) -> Result<Option<String>> {
        let h = self.host(host)?;
        let r =
            h.ns.run_async(move || {
                crate::tools::run_tool("nft", &["list", "table", family, table], None)
            })
            .await
            .map_err(|e| Error::io(format!("{host}: nft"), e))?;
        Ok(r.ok())
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
}

/// Addresses with ports.
type Sockets = Vec<(IpAddr, u16)>;

/// Where a Service is reached: its ClusterIPs, load balancer and external IPs at its port, and
/// every node's address at its NodePort.
fn service_fronts(t: &crate::topology::Topology, s: &crate::topology::k8s::Service) -> Sockets {
    let mut out = vec![(IpAddr::from(s.cluster_ip), s.port)];
    out.extend(s.cluster_ip6.map(|ip| (IpAddr::from(ip), s.port)));
    out.extend(
        s.fronts()
            .into_iter()
            .map(|(a, _)| (IpAddr::from(a), s.port)),
    );
    if let Some(np) = s.node_port {
        let nodes = t.nodes().filter_map(|(n, _)| t.host(n));
        out.extend(nodes.map(|h| (IpAddr::from(h.address()), np)));
    }
    out
}

/// Where kube-proxy sends a Service's flows: each endpoint pod's addresses at its port, and the
/// stale endpoints the fixture declares.
fn service_endpoints(t: &crate::topology::Topology, s: &crate::topology::k8s::Service) -> Sockets {
    let mut out: Vec<(IpAddr, u16)> = s
        .stale
        .iter()
        .map(|(a, p)| (IpAddr::from(*a), *p))
        .collect();
    for e in &s.endpoints {
        if let Some(h) = t.host(&e.pod) {
            out.push((IpAddr::from(h.address()), e.port));
            out.extend(h.address6().map(|a| (IpAddr::from(a), e.port)));
        }
    }
    out
}
