//! Faults of the Kubernetes layer: Services (kube-proxy's rules and endpoints), hairpin,
//! NetworkPolicies, cluster DNS and br_netfilter.
//!
//! Endpoint and policy faults change the spec and re-render kube-proxy's and the policies'
//! tables on every node, as kube-proxy or a network plugin re-syncs after an API change; heal
//! renders the fixture's spec again. Rule deletions and flushes act on the live ruleset.

use std::net::Ipv4Addr;

use super::check::{perr, ParamError};
use super::undo::Undo;
use crate::error::Result;
use crate::lab::Lab;
use crate::topology::k8s::K8s;
use crate::topology::Topology;

pub(super) fn service_names(t: &Topology) -> String {
    let v: Vec<&str> = t
        .k8s
        .services
        .iter()
        .filter(|s| !s.dns)
        .map(|s| s.name.as_str())
        .collect();
    if v.is_empty() {
        format!("the fixture {} declares no Service", t.name)
    } else {
        format!("Services in {}: {}", t.name, v.join(", "))
    }
}

pub(super) fn check_service(t: &Topology, name: &str) -> std::result::Result<(), ParamError> {
    match t.k8s.service(name) {
        Some(_) => Ok(()),
        None => Err(perr(
            "service",
            format!("unknown Service \"{name}\""),
            service_names(t),
        )),
    }
}

pub(super) fn check_endpoint(
    t: &Topology,
    svc: &str,
    pod: &str,
) -> std::result::Result<(), ParamError> {
    check_service(t, svc)?;
    let s = t.k8s.service(svc).expect("checked");
    if s.endpoints.iter().any(|e| e.pod == pod) {
        return Ok(());
    }
    let eps: Vec<&str> = s.endpoints.iter().map(|e| e.pod.as_str()).collect();
    Err(perr(
        "pod",
        format!("{pod} is no endpoint of Service {svc}"),
        if eps.is_empty() {
            format!("Service {svc} has no endpoints")
        } else {
            format!("endpoints of {svc}: {}", eps.join(", "))
        },
    ))
}

pub(super) fn check_role(
    t: &Topology,
    field: &'static str,
    name: &str,
    want: &str,
) -> std::result::Result<(), ParamError> {
    match t.host(name) {
        Some(h) if h.role_name() == want => Ok(()),
        _ => {
            let of: Vec<&str> = t
                .hosts
                .iter()
                .filter(|h| h.role_name() == want)
                .map(|h| h.name.as_str())
                .collect();
            Err(perr(
                field,
                format!("\"{name}\" is not a {want}"),
                format!("{want}s in {}: {}", t.name, of.join(", ")),
            ))
        }
    }
}

pub(super) fn needs_k8s(t: &Topology, what: &str) -> std::result::Result<(), ParamError> {
    if t.k8s.services.is_empty() {
        return Err(perr(
            "type",
            format!("{what} needs a fixture with Services"),
            "declare [service.NAME] tables (see fixtures/k8s.toml)",
        ));
    }
    Ok(())
}

/// A fault that edits kube-proxy's nftables table needs kube-proxy in nftables mode.
pub(super) fn needs_nftables_mode(t: &Topology, what: &str) -> std::result::Result<(), ParamError> {
    if t.k8s.proxy_mode == crate::topology::k8s::ProxyMode::Iptables {
        return Err(perr(
            "type",
            format!("{what} edits kube-proxy's nftables table, and this fixture runs kube-proxy in iptables mode"),
            "Kubernetes faults that change the spec (remove-endpoint, stale-endpoint-ip, no-endpoints, ...) work in both modes; or break the KUBE-* chains by hand",
        ));
    }
    Ok(())
}

pub(super) fn needs_dns(t: &Topology) -> std::result::Result<(), ParamError> {
    if t.k8s.dns.is_none() {
        return Err(perr(
            "type",
            "the fixture has no cluster DNS",
            "declare [dns] with the DNS pod (see fixtures/k8s.toml)",
        ));
    }
    Ok(())
}

/// Replaces kube-proxy's and the policies' tables on every node with a rendering of `spec`
/// over `view` (the lab's topology, or one where a pod moved); the undo renders the fixture's
/// spec again.
pub(super) async fn rerender(lab: &Lab, view: &Topology, spec: &K8s) -> Result<Vec<Undo>> {
    let t = lab.topology();
    let mut undo = Vec::new();
    for (node, _) in t.nodes() {
        lab.apply_k8s_view(view, spec, node).await?;
        undo.push(Undo::K8sTables {
            host: node.to_string(),
        });
    }
    Ok(undo)
}

/// An address in `pod`'s pod CIDR that no pod and no gateway holds: a deleted pod's.
pub(super) fn vacant_ip(t: &Topology, pod: &str) -> Option<Ipv4Addr> {
    let p = t.host(pod)?.as_pod()?;
    let n = t.host(&p.node)?.as_node()?;
    n.pod_cidr
        .hosts()
        .rev()
        .find(|ip| t.owner_of(*ip).is_none() && *ip != n.gateway)
}

/// Where the Service named `name` stands in the spec's list (checked to exist before).
pub(super) fn service_index(spec: &K8s, name: &str) -> usize {
    spec.services
        .iter()
        .position(|s| s.name == name)
        .expect("checked")
}
