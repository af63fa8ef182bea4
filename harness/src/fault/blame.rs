//! Where a fault may rightly be blamed: the hosts and components a diagnosis can name for it
//! without being wrong. Exploration judges every culprit against the union of these over the
//! faults it injected; a culprit outside it is a wrong diagnosis.
//!
//! The hosts come from the fault's parameters (a node, a host, a pod and the node it runs on);
//! a Kubernetes-layer fault is carried out by every node's kube-proxy and policy rules, so every
//! node may show it. The components are the kind's own and the ones it declares besides.

use serde::Serialize;

use crate::diagnose::{Component, Culprit};
use crate::topology::Topology;

/// The hosts and components a fault may be blamed as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blamable {
    pub hosts: Vec<String>,
    pub components: Vec<Component>,
}

impl Blamable {
    /// Whether the culprit names one of the hosts as one of the components.
    pub fn allows(&self, c: &Culprit) -> bool {
        self.hosts.contains(&c.host) && self.components.contains(&c.component)
    }
}

/// The hosts a fault's parameters name, with each named pod's node; with every node for a
/// Kubernetes-layer fault.
pub fn hosts_named(
    params: &(impl Serialize + ?Sized),
    t: &Topology,
    kubernetes: bool,
) -> Vec<String> {
    let v = serde_json::to_value(params).unwrap_or_default();
    let mut hosts: Vec<String> = Vec::new();
    let mut add = |h: &str| {
        if !hosts.iter().any(|x| x == h) {
            hosts.push(h.to_string());
        }
    };
    for value in v.as_object().into_iter().flat_map(|o| o.values()) {
        let Some(host) = value.as_str().and_then(|s| t.host(s)) else {
            continue;
        };
        add(&host.name);
        if let Some(p) = host.as_pod() {
            add(&p.node);
        }
    }
    if kubernetes {
        for (n, _) in t.nodes() {
            add(n);
        }
    }
    hosts
}

/// A component as the catalog spells it.
pub(super) fn component(name: &str) -> Component {
    Component::ALL
        .into_iter()
        .find(|c| c.as_str() == name)
        .unwrap_or(Component::Unexplained)
}
