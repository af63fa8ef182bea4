//! The faults a fixture offers: each kind of the catalog with every combination of parameter
//! values the fixture gives (its hosts by role, their interfaces, its networks, Services,
//! namespaces), kept where the kind's own check accepts them. Exploration draws from these.
//!
//! Candidates are found by parameter name, so a new kind whose parameters are named as the
//! catalog's are is explored without more code; a parameter named otherwise has no candidates
//! and its kind is never drawn (a test keeps every kind of the catalog drawable somewhere).

use std::net::{IpAddr, Ipv4Addr};

use toml::Value;

use super::registry::{Fault, CATALOG};
use crate::lab::Plan;
use crate::topology::{Proto, Role, Topology};

/// Every fault the fixture offers, by kind in catalog order (kinds it offers none of left out).
pub fn variants(t: &Topology) -> Vec<(&'static str, Vec<Fault>)> {
    let plan = Plan::from_topology(t);
    CATALOG
        .iter()
        .map(|k| (k.name, of_kind(k.name, k.params, t, &plan)))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// The faults of one kind: the product of its parameters' candidates, each completed table
/// read as a fault and checked against the fixture.
fn of_kind(name: &str, params: &[(&str, &str)], t: &Topology, plan: &Plan) -> Vec<Fault> {
    let mut tables = vec![toml::Table::from_iter([(
        "type".to_string(),
        Value::String(name.into()),
    )])];
    for (param, _) in params {
        tables = tables
            .into_iter()
            .flat_map(|table| {
                candidates(param, &table, t, plan)
                    .into_iter()
                    .map(move |v| {
                        let mut next = table.clone();
                        if let Some(v) = v {
                            next.insert(param.to_string(), v);
                        }
                        next
                    })
            })
            .collect();
    }
    let mut out: Vec<Fault> = Vec::new();
    for table in tables {
        let Ok(f) = Value::Table(table).try_into::<Fault>() else {
            continue;
        };
        if f.check(t).is_ok() && !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// The values a parameter may take given the ones chosen before it; `None` leaves an
/// optional parameter out.
fn candidates(param: &str, so_far: &toml::Table, t: &Topology, plan: &Plan) -> Vec<Option<Value>> {
    let s = |v: &str| Some(Value::String(v.to_string()));
    let n = |v: u32| Some(Value::Integer(v.into()));
    let names = |role: &str| -> Vec<Option<Value>> {
        t.hosts
            .iter()
            .filter(|h| role == "host" || h.role_name() == role)
            .map(|h| s(&h.name))
            .collect()
    };
    match param {
        "pod" | "of" => names("pod"),
        "node" | "peer" => names("node"),
        "host" | "from" => names("host"),
        "interface" => interfaces(so_far, plan).iter().map(|i| s(i)).collect(),
        "proto" => [None, s("icmp"), s("tcp"), s("udp")].into(),
        // A destination port, a vxlan port, a wrong target port, or a bridge port by name:
        // the kind's type and check keep the ones that fit.
        "port" => {
            let mut v: Vec<Option<Value>> = [Proto::Tcp, Proto::Udp]
                .into_iter()
                .filter_map(|p| t.probe.port(p))
                .chain([4790])
                .map(|p| n(p.into()))
                .collect();
            v.dedup();
            v.extend(interfaces(so_far, plan).iter().map(|i| s(i)));
            v.push(None);
            v
        }
        "allow_port" => vec![None, n(53)],
        "to" => destinations(t).iter().map(|d| s(d)).collect(),
        "via" => gateways(t).iter().map(|a| s(&a.to_string())).collect(),
        "vtep" => vacant_uplink_address(t)
            .map(|a| s(&a.to_string()))
            .into_iter()
            .collect(),
        "mtu" => vec![n(1500)],
        "percent" => vec![n(30), n(100)],
        "rate" => vec![s("1mbit")],
        "ms" => vec![n(100)],
        "service" => t.k8s.services.iter().map(|x| s(&x.name)).collect(),
        // Kubernetes namespaces, as the pods have them.
        "namespace" => {
            let mut v: Vec<&str> = t.pods().map(|(_, p)| p.namespace.as_str()).collect();
            v.sort();
            v.dedup();
            v.into_iter().map(s).collect()
        }
        // A mistaken nameserver: another Service's address.
        "nameserver" => t
            .k8s
            .services
            .iter()
            .filter(|x| !x.dns)
            .map(|x| s(&x.cluster_ip.to_string()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The interfaces of the host the fault's `node` or `host` parameter names.
fn interfaces(so_far: &toml::Table, plan: &Plan) -> Vec<String> {
    let host = so_far
        .get("node")
        .or_else(|| so_far.get("host"))
        .and_then(Value::as_str);
    host.and_then(|h| plan.host(h))
        .map(|h| h.ifaces.iter().map(|i| i.name.clone()).collect())
        .unwrap_or_default()
}

/// Networks a route may lead to: each node's pod CIDRs and each pod's own address.
fn destinations(t: &Topology) -> Vec<String> {
    let mut v = Vec::new();
    for (_, n) in t.nodes() {
        v.push(n.pod_cidr.to_string());
        v.extend(n.v6.map(|x| x.pod_cidr.to_string()));
    }
    for (_, p) in t.pods() {
        v.push(format!("{}/32", p.ip));
        v.extend(p.ip6.map(|a| format!("{a}/128")));
    }
    v
}

/// Addresses a route may go via: every node's and external host's on the uplink.
fn gateways(t: &Topology) -> Vec<IpAddr> {
    let mut v = Vec::new();
    for h in &t.hosts {
        match &h.role {
            Role::Node(n) => {
                v.push(IpAddr::V4(n.uplink.addr()));
                v.extend(n.v6.map(|x| IpAddr::V6(x.uplink.addr())));
            }
            Role::External(e) => {
                v.push(IpAddr::V4(e.addr.addr()));
                v.extend(e.addr6.map(|a| IpAddr::V6(a.addr())));
            }
            Role::Pod(_) => {}
        }
    }
    v
}

/// An address on the uplink's network that no host holds (a VTEP that went away).
fn vacant_uplink_address(t: &Topology) -> Option<Ipv4Addr> {
    let cidr = t.uplink.as_ref()?.cidr;
    cidr.hosts().skip(9).find(|a| t.owner_of(*a).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Topology {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name);
        crate::topology::load_fixture(&p).unwrap()
    }

    /// Every kind of the catalog is offered by some fixture of the repository: a kind whose
    /// parameters have no candidates would never be explored.
    #[test]
    fn every_kind_is_offered_by_some_fixture() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let mut offered = std::collections::BTreeSet::new();
        for e in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".toml") {
                continue;
            }
            let Ok(t) = crate::topology::load_fixture(&e.path()) else {
                continue;
            };
            offered.extend(variants(&t).into_iter().map(|(k, _)| k));
        }
        let never: Vec<&str> = CATALOG
            .iter()
            .map(|k| k.name)
            .filter(|k| !offered.contains(k))
            .collect();
        assert!(never.is_empty(), "never offered: {never:?}");
    }

    /// The offer follows the fixture: single-node has no vxlan faults, names only its own
    /// hosts, and every fault offered passes its kind's check.
    #[test]
    fn a_fixture_offers_its_own_hosts_and_kinds() {
        let t = fixture("single-node.toml");
        let v = variants(&t);
        let kinds: Vec<&str> = v.iter().map(|(k, _)| *k).collect();
        assert!(kinds.contains(&"delete-masquerade"), "{kinds:?}");
        assert!(!kinds.contains(&"delete-vxlan-fdb"), "{kinds:?}");
        let all: Vec<&Fault> = v.iter().flat_map(|(_, f)| f).collect();
        assert!(all.iter().all(|f| f.check(&t).is_ok()));
        let veths: Vec<String> = all
            .iter()
            .filter(|f| f.name() == "delete-veth")
            .map(|f| f.spec())
            .collect();
        assert_eq!(veths, ["delete-veth:pod=pod-a", "delete-veth:pod=pod-b"]);
        let rejects = all.iter().filter(|f| f.name() == "nft-reject").count();
        assert!(rejects > 4, "optional proto and port vary too: {rejects}");
    }
}
