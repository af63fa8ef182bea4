//! Pods attached by real CNI plugins: ADD, CHECK, DEL, STATUS and GC on a lab's pods, and the
//! record of what each attachment returned.

use super::live::{CniState, Lab};
use super::plan::Plan;
use crate::cni;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

impl Lab {
    /// Attaches every pod with the fixture's conflist (per node, pods in order: host-local
    /// allocates round-robin, so addresses come from the results, never assumed), then records
    /// what the plugins built in the topology and the plan.
    pub(super) async fn attach_cni_pods(&mut self, unattached: &[&str]) -> Result<()> {
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
            let v6 = ns.v6.map(|v| (v.pod_cidr, v.gateway));
            let text =
                crate::topology::parse::fill_conflist(&spec.template, node, ns.pod_cidr, gw, v6);
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
        let rc = self.runtime_config();
        Ok(st
            .runtime
            .check(&self.host(&node)?.ns, &st.lists[&node], att, &rc)
            .await)
    }

    /// Runs the conflist's DEL for a pod (attached now or before; the cached result goes to the
    /// plugins as the spec says).
    pub async fn cni_del(&self, pod: &str) -> Result<std::result::Result<(), cni::CniError>> {
        let (st, node, att) = self.cni_parts(pod)?;
        let rc = self.runtime_config();
        Ok(st
            .runtime
            .del(&self.host(&node)?.ns, &st.lists[&node], att, &rc)
            .await)
    }

    /// The fixture's `[cni] runtime_config` (null without one).
    fn runtime_config(&self) -> serde_json::Value {
        self.topo
            .cni
            .as_ref()
            .map(|c| c.runtime_config.clone())
            .unwrap_or_default()
    }

    pub(super) fn cni_parts(&self, pod: &str) -> Result<(&CniState, String, &cni::Attachment)> {
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

    pub(super) fn cni_state(&self) -> Result<&CniState> {
        self.cni
            .as_ref()
            .ok_or_else(|| Error::other("the lab's pods are not attached by CNI"))
    }

    /// Takes a pod's address, gateway and host veth from its CNI result into the topology.
    pub(super) fn record_cni_pod(&mut self, pod: &str, att: &cni::Attachment) -> Result<()> {
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
                    // A dual-stack range gives the pod an IPv6 address too (host-local's
                    // second range); without one the pod is probed over IPv4 only.
                    p.ip6 = sum.address6.map(|a| a.addr());
                    p.host_veth = host_veth.clone();
                }
                crate::topology::Role::Node(n) if h.name == node_name => {
                    if let Some(g) = sum.gateway {
                        n.gateway = g;
                    }
                    if let (Some(v6), Some(g)) = (n.v6.as_mut(), sum.gateway6) {
                        v6.gateway = g;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}
