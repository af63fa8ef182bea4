//! A live lab: its hosts (each a namespace with its netlink connection), the plan it realises,
//! and what it holds besides (CNI state, the Kubernetes layer); what asking it costs nothing.

use super::k8s;
use super::plan::Plan;
use crate::cni;
use crate::error::{nl_error, Error, Result};
use crate::netns::Netns;
use crate::nl::{self as netlink, NlConn};
use crate::topology::Topology;
use std::collections::BTreeMap;

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
    pub(super) topo: Topology,
    pub(super) plan: Plan,
    pub(super) hosts: BTreeMap<String, LabHost>,
    pub(super) name: Option<String>,
    pub(super) cni: Option<CniState>,
    pub(super) k8s: k8s::K8sRuntime,
}

/// The CNI side of a lab whose pods real plugins attached.
pub struct CniState {
    pub runtime: cni::Runtime,
    /// The conflist each node's plugins run with (placeholders filled in).
    pub lists: BTreeMap<String, cni::ConfList>,
    /// Each attached pod's attachment, with the cached result.
    pub attachments: BTreeMap<String, cni::Attachment>,
    /// Whether dropping the lab removes the IPAM and tuning state (not for a pinned lab).
    pub(super) owns_dir: bool,
}

impl Drop for CniState {
    fn drop(&mut self) {
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.runtime.data_dir);
        }
    }
}

impl Lab {
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

    /// The CNI state, mutable (to change the plugin path or PATH for a check).
    pub fn cni_mut(&mut self) -> Option<&mut CniState> {
        self.cni.as_mut()
    }

    /// Forgets a host: closes this process's namespace fds (the namespace goes, and with it its
    /// side of every veth). For checking what a runtime must survive (DEL after the pod is gone).
    pub fn forget_host(&mut self, name: &str) -> bool {
        self.hosts.remove(name).is_some()
    }
}
