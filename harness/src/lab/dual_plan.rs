//! Builds the IPv6 half of a dual-stack lab's plan beside the IPv4 plan, mirroring what the IPv4
//! plan builds; `Plan::from_topology` is both.
//!
//! Kernel choices (why, once):
//! - IPv6 is on (`disable_ipv6 = 0`) only in dual-stack labs: an IPv4 lab stays as quiet as before.
//! - No duplicate address detection (`accept_dad = 0`, and `nodad` on every address): the
//!   fixture's addresses are unique by validation, and DAD would keep each new address
//!   "tentative" (unusable as a source, unbindable) for about a second after every `up` and
//!   every heal. (An address that failed DAD, made by hand, is still diagnosed: `dadfailed`.)
//! - `keep_addr_on_down = 1`: IPv6 drops an interface's global addresses when it goes down
//!   (IPv4 keeps them), so a link set down and up again would come back without them.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use super::plan::{mac_for, HostPlan, IfaceKind, Plan};
use super::plan6::{Masq6Plan, Neigh6Plan, Route6Plan};
use crate::nl::Mac;
use crate::topology::{Neighbours, Network, Role, Topology};

impl Plan {
    /// The plan of a lab: the IPv4 plan, and the IPv6 half where the fixture is dual-stack.
    pub fn from_topology(t: &Topology) -> Plan {
        let mut p = Plan::ipv4(t);
        add_v6(t, &mut p.hosts);
        p
    }
}

/// The sysctls a dual-stack lab's namespaces get instead of IPv6 off (see the module's notes).
fn sysctls6(h: &mut HostPlan, forwarding: bool) {
    h.sysctls.retain(|(k, _)| !k.starts_with("net.ipv6."));
    for scope in ["all", "default"] {
        for (k, v) in [
            ("disable_ipv6", "0"),
            ("accept_dad", "0"),
            ("keep_addr_on_down", "1"),
        ] {
            h.sysctls
                .push((format!("net.ipv6.conf.{scope}.{k}"), v.to_string()));
        }
    }
    if forwarding {
        h.sysctls
            .push(("net.ipv6.conf.all.forwarding".into(), "1".into()));
    }
}

/// Adds the IPv6 half to a dual-stack topology's plan (nothing for an IPv4 lab).
fn add_v6(t: &Topology, hosts: &mut [HostPlan]) {
    if !t.dual_stack() {
        return;
    }
    for h in hosts.iter_mut() {
        let node = t.host(&h.name).and_then(|x| x.as_node()).is_some();
        sysctls6(h, node);
    }
    for (name, node) in t.nodes() {
        node_side(t, hosts, name, node);
    }
    // With [cni] the plugin builds the pod side in both families (its bridge's gateways, the
    // pods' addresses and routes from host-local's ranges, ipMasq in ip6tables too).
    for (name, pod) in t.pods().filter(|_| t.cni.is_none()) {
        pod_side(t, hosts, name, pod);
    }
    between_nodes(t, hosts);
    for h in &t.hosts {
        if let Role::External(e) = &h.role {
            if let Some(a) = e.addr6 {
                at(hosts, &h.name).v6.addresses.push((e.ifname.clone(), a));
            }
        }
    }
    uplink_neighbours(t, hosts);
    if t.cluster.neighbours == Neighbours::Dynamic {
        // As the IPv4 plan leaves entries to ARP: all but the overlay's, to NDP.
        for h in hosts.iter_mut() {
            let vxlans: Vec<String> = h
                .ifaces
                .iter()
                .filter(|i| matches!(i.kind, IfaceKind::Vxlan { .. }))
                .map(|i| i.name.clone())
                .collect();
            h.v6.neighbours.retain(|n| vxlans.contains(&n.dev));
        }
    }
}

fn at<'a>(hosts: &'a mut [HostPlan], name: &str) -> &'a mut HostPlan {
    hosts
        .iter_mut()
        .find(|h| h.name == name)
        .expect("host in plan")
}

fn node_side(t: &Topology, hosts: &mut [HostPlan], name: &str, node: &crate::topology::NodeSpec) {
    let Some(v6) = node.v6 else { return };
    let h = at(hosts, name);
    if t.has_bridge() && t.cni.is_none() {
        let gw = Ipv6Net::new(v6.gateway, v6.pod_cidr.prefix_len()).expect("valid prefix");
        h.v6.addresses.push((node.bridge.clone(), gw));
    }
    h.v6.addresses.push((node.uplink_ifname.clone(), v6.uplink));
    if let Some(cidr) = t.k8s.service_cidr6 {
        // As the IPv4 service CIDR: the node's own connections to a ClusterIP need a route
        // before kube-proxy's DNAT.
        h.v6.routes.push(Route6Plan {
            dst: cidr,
            gateway: None,
            dev: node.uplink_ifname.clone(),
            onlink: false,
        });
    }
    if let (true, true, Some(cluster)) = (node.masquerade, t.cni.is_none(), t.cluster.cidr6) {
        h.v6.masquerade = Some(Masq6Plan {
            pod_cidr: v6.pod_cidr,
            cluster_cidr: cluster,
            uplink: node.uplink_ifname.clone(),
        });
    }
}

/// A pod's IPv6 address, its default route via the bridge's IPv6 gateway, and the permanent
/// NDP entries its IPv4 twin has ARP entries for.
fn pod_side(t: &Topology, hosts: &mut [HostPlan], name: &str, pod: &crate::topology::PodSpec) {
    let (Some(ip6), Some(node)) = (pod.ip6, t.host(&pod.node).and_then(|h| h.as_node())) else {
        return;
    };
    let Some(v6) = node.v6 else { return };
    let pod_mac = mac_for(name, &pod.ifname);
    {
        let n = at(hosts, &pod.node);
        n.v6.neighbours.push(Neigh6Plan {
            dev: node.bridge.clone(),
            ip: ip6,
            mac: pod_mac,
        });
    }
    let peers: Vec<(String, Ipv6Addr, Mac)> = t
        .pods_of(&pod.node)
        .filter(|(other, _)| *other != name)
        .filter_map(|(other, op)| Some((other.to_string(), op.ip6?, mac_for(other, &op.ifname))))
        .collect();
    let p = at(hosts, name);
    p.v6.addresses.push((
        pod.ifname.clone(),
        Ipv6Net::new(ip6, v6.pod_cidr.prefix_len()).expect("valid prefix"),
    ));
    p.v6.routes.push(Route6Plan {
        dst: "::/0".parse().expect("default"),
        gateway: Some(v6.gateway),
        dev: pod.ifname.clone(),
        onlink: false,
    });
    p.v6.neighbours.push(Neigh6Plan {
        dev: pod.ifname.clone(),
        ip: v6.gateway,
        mac: mac_for(&pod.node, &node.bridge),
    });
    // The pods the IPv4 plan gives this pod ARP entries for (a bounded matrix: not all).
    let talks: Vec<Ipv4Addr> = p.neighbours.iter().map(|n| n.ip).collect();
    for (other, ip, mac) in peers {
        let v4 = t.host(&other).map(|h| h.address());
        if v4.is_some_and(|a| talks.contains(&a)) {
            p.v6.neighbours.push(Neigh6Plan {
                dev: pod.ifname.clone(),
                ip,
                mac,
            });
        }
    }
}

/// host-gw: a route to each other node's IPv6 pod CIDR via its IPv6 uplink address. vxlan: the
/// overlay device carries IPv6 too (one device, both families), its IPv6 VTEP address the
/// first of the node's IPv6 pod CIDR, as the IPv4 one is.
fn between_nodes(t: &Topology, hosts: &mut [HostPlan]) {
    let nodes: Vec<(&str, &crate::topology::NodeSpec)> = t.nodes().collect();
    for (name, node) in &nodes {
        let Some(v6) = node.v6 else { continue };
        let h = at(hosts, name);
        if let Network::Vxlan(v) = &t.cluster.network {
            h.v6.addresses.push((
                v.device.clone(),
                Ipv6Net::new(v6.pod_cidr.network(), 128).expect("vtep address"),
            ));
        }
        for (other, o) in &nodes {
            let Some(o6) = o.v6.filter(|_| other != name) else {
                continue;
            };
            match &t.cluster.network {
                Network::HostGw => h.v6.routes.push(Route6Plan {
                    dst: o6.pod_cidr,
                    gateway: Some(o6.uplink.addr()),
                    dev: node.uplink_ifname.clone(),
                    onlink: false,
                }),
                Network::Vxlan(v) => {
                    let vtep = o6.pod_cidr.network();
                    h.v6.routes.push(Route6Plan {
                        dst: o6.pod_cidr,
                        gateway: Some(vtep),
                        dev: v.device.clone(),
                        onlink: true,
                    });
                    h.v6.neighbours.push(Neigh6Plan {
                        dev: v.device.clone(),
                        ip: vtep,
                        mac: mac_for(other, &v.device),
                    });
                }
                _ => {}
            }
        }
    }
}

/// Permanent NDP entries between the uplink's members, as their ARP entries.
fn uplink_neighbours(t: &Topology, hosts: &mut [HostPlan]) {
    let Some(seg) = &t.uplink else { return };
    for (m, mi) in &seg.members {
        for (o, oi) in &seg.members {
            let Some(ip) = t.host(o).and_then(|h| h.address6()).filter(|_| o != m) else {
                continue;
            };
            at(hosts, m).v6.neighbours.push(Neigh6Plan {
                dev: mi.clone(),
                ip,
                mac: mac_for(o, oi),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lab::plan::Plan;
    use crate::topology::{parse_fixture, Source};

    #[test]
    fn a_dual_stack_plan_mirrors_the_ipv4_one() {
        let t = parse_fixture(&Source::new(
            "dual-stack.toml",
            include_str!("../../../fixtures/dual-stack.toml"),
        ))
        .unwrap();
        let p = Plan::from_topology(&t);
        let n = p.host("node1").unwrap();
        assert!(n
            .sysctls
            .contains(&("net.ipv6.conf.all.forwarding".into(), "1".into())));
        assert!(n
            .sysctls
            .contains(&("net.ipv6.conf.all.disable_ipv6".into(), "0".into())));
        assert_eq!(n.v6.masquerade.as_ref().unwrap().uplink, "eth0");
        let a = p.host("pod-a").unwrap();
        assert_eq!(
            a.v6.routes[0].gateway,
            Some("fd00:10:244:1::1".parse().unwrap())
        );
        assert_eq!(
            a.v6.route_for("2001:db8::10".parse().unwrap()).map(|r| r.0),
            Some("eth0")
        );
        // The gateway's and pod-b's NDP entries, as the IPv4 plan has ARP entries.
        assert_eq!(a.v6.neighbours.len(), 2);
        let e = p.host("ext").unwrap();
        assert!(e.v6.routes.is_empty(), "ext must not route to pod CIDRs");
    }
}
