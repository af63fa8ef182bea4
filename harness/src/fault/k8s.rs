//! Faults of the Kubernetes layer: Services (kube-proxy's rules and endpoints), hairpin,
//! NetworkPolicies, cluster DNS and br_netfilter.
//!
//! Endpoint and policy faults change the spec and re-render kube-proxy's and the policies'
//! tables on every node, as kube-proxy or a network plugin re-syncs after an API change; heal
//! renders the fixture's spec again. Rule deletions and flushes act on the live ruleset.

use std::net::Ipv4Addr;

use super::kind::{perr, Fault, ParamError};
use super::undo::{NftUndo, Undo};
use crate::error::{nl, Error, Result};
use crate::lab::k8s::{kube_proxy_script, node_script, KUBE_PROXY_TABLE};
use crate::lab::Lab;
use crate::nft;
use crate::nl as netlink;
use crate::topology::k8s::{K8s, Policy, PolicyPort, PolicyRule};
use crate::topology::{Proto, Topology};

pub fn is_k8s(f: &Fault) -> bool {
    matches!(
        f,
        Fault::DeleteServiceRule { .. }
            | Fault::RemoveEndpoint { .. }
            | Fault::WrongEndpointPort { .. }
            | Fault::StaleEndpointIp { .. }
            | Fault::NoEndpoints { .. }
            | Fault::HairpinOff { .. }
            | Fault::DefaultDenyEgress { .. }
            | Fault::DnsServerDown
            | Fault::WrongNameserver { .. }
            | Fault::BridgeNfOff { .. }
            | Fault::FlushKubeProxy { .. }
            | Fault::StaleConntrack { .. }
    )
}

fn service_names(t: &Topology) -> String {
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

fn check_service(t: &Topology, name: &str) -> std::result::Result<(), ParamError> {
    match t.k8s.service(name) {
        Some(_) => Ok(()),
        None => Err(perr(
            "service",
            format!("unknown Service \"{name}\""),
            service_names(t),
        )),
    }
}

fn check_endpoint(t: &Topology, svc: &str, pod: &str) -> std::result::Result<(), ParamError> {
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

fn check_role(
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

fn needs_k8s(t: &Topology, what: &str) -> std::result::Result<(), ParamError> {
    if t.k8s.services.is_empty() {
        return Err(perr(
            "type",
            format!("{what} needs a fixture with Services"),
            "declare [service.NAME] tables (see fixtures/k8s.toml)",
        ));
    }
    Ok(())
}

fn needs_dns(t: &Topology) -> std::result::Result<(), ParamError> {
    if t.k8s.dns.is_none() {
        return Err(perr(
            "type",
            "the fixture has no cluster DNS",
            "declare [dns] with the DNS pod (see fixtures/k8s.toml)",
        ));
    }
    Ok(())
}

pub fn check(f: &Fault, t: &Topology) -> std::result::Result<(), ParamError> {
    match f {
        Fault::DeleteServiceRule { node, service } => {
            check_role(t, "node", node, "node")?;
            check_service(t, service)
        }
        Fault::RemoveEndpoint { service, pod } | Fault::StaleEndpointIp { service, pod } => {
            check_endpoint(t, service, pod)
        }
        Fault::StaleConntrack { service, pod } => {
            check_endpoint(t, service, pod)?;
            if t.k8s
                .service(service)
                .is_some_and(|s| s.protocol != Proto::Udp || s.dns)
            {
                return Err(perr(
                    "service",
                    format!("Service {service} does not speak UDP"),
                    "stale conntrack entries outlive endpoints for UDP Services (kube-proxy flushes them); pick a UDP Service",
                ));
            }
            Ok(())
        }
        Fault::WrongEndpointPort { service, port } => {
            check_service(t, service)?;
            let s = t.k8s.service(service).expect("checked");
            if s.endpoints.is_empty() {
                return Err(perr(
                    "service",
                    format!("Service {service} has no endpoints"),
                    service_names(t),
                ));
            }
            if *port == 0 || s.endpoints.iter().all(|e| e.port == *port) {
                return Err(perr(
                    "port",
                    format!("port {port} is not a wrong port for {service}"),
                    format!("its endpoints listen on {}", s.endpoints[0].port),
                ));
            }
            Ok(())
        }
        Fault::NoEndpoints { service } => check_service(t, service),
        Fault::HairpinOff { pod } => {
            check_role(t, "pod", pod, "pod")?;
            if !t.has_bridge() {
                return Err(perr(
                    "pod",
                    "hairpin is a bridge port's setting",
                    "use a fixture whose pods sit on a bridge",
                ));
            }
            Ok(())
        }
        Fault::DefaultDenyEgress {
            namespace,
            allow_port,
        } => {
            needs_k8s(t, "default-deny-egress")?;
            if !t.pods().any(|(_, p)| &p.namespace == namespace) {
                let mut nss: Vec<&str> = t.pods().map(|(_, p)| p.namespace.as_str()).collect();
                nss.sort();
                nss.dedup();
                return Err(perr(
                    "namespace",
                    format!("no pod lives in namespace \"{namespace}\""),
                    format!("namespaces with pods: {}", nss.join(", ")),
                ));
            }
            if *allow_port == Some(0) {
                return Err(perr("allow_port", "port 0 is not a port", "use 1..65535"));
            }
            Ok(())
        }
        Fault::DnsServerDown => needs_dns(t),
        Fault::WrongNameserver { pod, .. } => {
            needs_dns(t)?;
            check_role(t, "pod", pod, "pod")
        }
        Fault::BridgeNfOff { node } => {
            check_role(t, "node", node, "node")?;
            if !t.has_bridge() {
                return Err(perr(
                    "node",
                    format!("{node} has no bridge"),
                    "use a fixture whose pods sit on a bridge",
                ));
            }
            Ok(())
        }
        Fault::FlushKubeProxy { node } => {
            needs_k8s(t, "flush-kube-proxy")?;
            check_role(t, "node", node, "node")
        }
        _ => Ok(()),
    }
}

/// Replaces kube-proxy's and the policies' tables on every node with a rendering of `spec`
/// over `view` (the lab's topology, or one where a pod moved); the undo renders the fixture's
/// spec again.
async fn rerender(lab: &Lab, view: &Topology, spec: &K8s) -> Result<Vec<Undo>> {
    let t = lab.topology();
    let mut undo = Vec::new();
    for (node, _) in t.nodes() {
        lab.nft_script(node, node_script(view, spec, node)).await?;
        undo.push(Undo::NftScript {
            host: node.to_string(),
            script: node_script(t, &t.k8s, node),
        });
    }
    Ok(undo)
}

/// An address in `pod`'s pod CIDR that no pod and no gateway holds: a deleted pod's.
fn vacant_ip(t: &Topology, pod: &str) -> Option<Ipv4Addr> {
    let p = t.host(pod)?.as_pod()?;
    let n = t.host(&p.node)?.as_node()?;
    n.pod_cidr
        .hosts()
        .rev()
        .find(|ip| t.owner_of(*ip).is_none() && *ip != n.gateway)
}

pub async fn inject(f: &Fault, lab: &Lab) -> Result<Vec<Undo>> {
    let t = lab.topology().clone();
    let mut spec = t.k8s.clone();
    let svc = |spec: &mut K8s, name: &str| -> usize {
        spec.services
            .iter()
            .position(|s| s.name == name)
            .expect("checked")
    };
    match f {
        Fault::DeleteServiceRule { node, service } => {
            let s = t.k8s.service(service).expect("checked");
            let h = lab.host(node)?;
            let set = nft::list(&h.ns, node).await?;
            let needle = format!("\"{}\"", s.cluster_ip);
            let mut index = 0usize;
            let mut native = Vec::new();
            for r in nft::rules(&set) {
                if r.table != KUBE_PROXY_TABLE || r.chain != "services" {
                    continue;
                }
                let text = serde_json::to_string(&r.expr).unwrap_or_default();
                if text.contains(&needle) {
                    native.push((r.clone(), index));
                }
                index += 1;
            }
            if native.is_empty() {
                return Err(Error::NotApplicable(format!(
                    "{node}: kube-proxy has no rule for {} ({}:{})",
                    service, s.cluster_ip, s.port
                )));
            }
            let doomed: Vec<_> = native.iter().map(|(r, _)| r.clone()).collect();
            nft::apply(&h.ns, node, nft::delete_batch(&doomed)).await?;
            Ok(vec![Undo::NftRules(NftUndo {
                host: node.clone(),
                native,
                iptables: Vec::new(),
            })])
        }
        Fault::RemoveEndpoint { service, pod } => {
            let i = svc(&mut spec, service);
            spec.services[i].endpoints.retain(|e| &e.pod != pod);
            rerender(lab, &t, &spec).await
        }
        Fault::WrongEndpointPort { service, port } => {
            let i = svc(&mut spec, service);
            for e in &mut spec.services[i].endpoints {
                e.port = *port;
            }
            rerender(lab, &t, &spec).await
        }
        Fault::StaleEndpointIp { service, pod } => {
            let i = svc(&mut spec, service);
            let ip = vacant_ip(&t, pod).ok_or_else(|| {
                Error::NotApplicable(format!("{pod}'s pod CIDR has no vacant address"))
            })?;
            let s = &mut spec.services[i];
            let port = s
                .endpoints
                .iter()
                .find(|e| &e.pod == pod)
                .map(|e| e.port)
                .expect("checked");
            s.endpoints.retain(|e| &e.pod != pod);
            s.stale.push((ip, port));
            rerender(lab, &t, &spec).await
        }
        Fault::NoEndpoints { service } => {
            let i = svc(&mut spec, service);
            if spec.services[i].endpoints.is_empty() {
                return Err(Error::NotApplicable(format!(
                    "Service {service} has no endpoints already"
                )));
            }
            spec.services[i].endpoints.clear();
            rerender(lab, &t, &spec).await
        }
        Fault::DefaultDenyEgress {
            namespace,
            allow_port,
        } => {
            spec.policies.push(Policy {
                name: "default-deny-egress".into(),
                namespace: namespace.clone(),
                pod_selector: Default::default(),
                ingress: None,
                egress: Some(
                    allow_port
                        .map(|p| PolicyRule {
                            peers: Vec::new(),
                            ports: vec![PolicyPort {
                                protocol: Proto::Udp,
                                port: Some(p),
                            }],
                        })
                        .into_iter()
                        .collect(),
                ),
            });
            rerender(lab, &t, &spec).await
        }
        Fault::HairpinOff { pod } => {
            let p = t.host(pod).and_then(|h| h.as_pod()).expect("checked");
            let h = lab.host(&p.node)?;
            let ix = h.index(&p.host_veth).await?;
            netlink::set_hairpin(h.handle(), ix, false)
                .await
                .map_err(|e| nl(&p.node, format!("hairpin off on {}", p.host_veth), e))?;
            Ok(vec![Undo::Hairpin {
                host: p.node.clone(),
                ifname: p.host_veth.clone(),
                on: true,
            }])
        }
        Fault::DnsServerDown => {
            if !lab.stop_dns() {
                return Err(Error::NotApplicable(
                    "the cluster DNS server does not run in this process (a pinned lab's is not netfault's to stop)".into(),
                ));
            }
            Ok(vec![Undo::StartDns])
        }
        Fault::WrongNameserver { pod, nameserver } => {
            let before = lab
                .resolv_conf(pod)
                .ok_or_else(|| Error::NotApplicable(format!("{pod} has no resolv.conf")))?;
            let after: String = before
                .lines()
                .map(|l| {
                    if l.starts_with("nameserver") {
                        format!("nameserver {nameserver}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            lab.set_resolv_conf(pod, &after)?;
            Ok(vec![Undo::Resolv {
                pod: pod.clone(),
                text: before,
            }])
        }
        Fault::BridgeNfOff { node } => {
            super::ops::set_sysctls_pub(
                lab,
                node,
                vec![("net/bridge/bridge-nf-call-iptables".into(), "0".into())],
            )
            .await
        }
        Fault::StaleConntrack { service, pod } => {
            // Clients' flows exist before the change (as long-lived UDP clients' would).
            let target = crate::topology::k8s::Target::Service(service.clone()).name();
            let specs: Vec<_> = crate::probe::target_probes(&t)
                .into_iter()
                .filter(|s| s.to == target)
                .collect();
            crate::probe::run(
                lab,
                &specs,
                std::time::Duration::from_millis(t.probe.timeout_ms),
            )
            .await?;
            // The pod comes back with a new address; kube-proxy follows it everywhere.
            let old = t
                .host(pod)
                .and_then(|h| h.as_pod())
                .cloned()
                .expect("checked");
            let new = vacant_ip(&t, pod).ok_or_else(|| {
                Error::NotApplicable(format!("{pod}'s pod CIDR has no vacant address"))
            })?;
            let prefix = t
                .host(&old.node)
                .and_then(|h| h.as_node())
                .map(|n| n.pod_cidr.prefix_len())
                .expect("a pod's node");
            let old_net = ipnet::Ipv4Net::new(old.ip, prefix).expect("prefix");
            let new_net = ipnet::Ipv4Net::new(new, prefix).expect("prefix");
            // The new address keeps the pod's routes when the old one goes.
            let mut undo = super::ops::set_sysctls_pub(
                lab,
                pod,
                vec![(
                    format!("net/ipv4/conf/{}/promote_secondaries", old.ifname),
                    "1".into(),
                )],
            )
            .await?;
            let h = lab.host(pod)?;
            let ix = h.index(&old.ifname).await?;
            netlink::add_address(h.handle(), ix, new_net)
                .await
                .map_err(|e| nl(pod, format!("adding {new_net}"), e))?;
            undo.push(Undo::RemoveAddress {
                host: pod.clone(),
                ifname: old.ifname.clone(),
                net: new_net,
            });
            netlink::del_address(h.handle(), ix, old_net)
                .await
                .map_err(|e| nl(pod, format!("removing {old_net}"), e))?;
            undo.push(Undo::Address {
                host: pod.clone(),
                ifname: old.ifname.clone(),
                net: old_net,
            });
            let mut moved = t.clone();
            for hst in &mut moved.hosts {
                if let crate::topology::Role::Pod(p) = &mut hst.role {
                    if hst.name == *pod {
                        p.ip = new;
                    }
                }
            }
            undo.extend(rerender(lab, &moved, &moved.k8s).await?);
            // No conntrack flush: that is the fault.
            Ok(undo)
        }
        Fault::FlushKubeProxy { node } => {
            lab.nft_script(node, format!("flush table ip {KUBE_PROXY_TABLE}\n"))
                .await?;
            Ok(vec![Undo::NftScript {
                host: node.clone(),
                script: kube_proxy_script(&t, &t.k8s),
            }])
        }
        _ => unreachable!("not a Kubernetes fault"),
    }
}
