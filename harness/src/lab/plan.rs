//! What a lab consists of, computed from a [`Topology`] without any syscall: per namespace the
//! sysctls, bridges, veth pairs, addresses, routes, static neighbours and masquerade rules.
//!
//! `Lab::up` realises a plan; faults and diagnosis read it as the lab's intended wiring.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::plan6::Plan6;
use crate::nl::Mac;
use crate::topology::{Neighbours, Network, Role, Topology, SWITCH_BRIDGE, SWITCH_HOST};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub hosts: Vec<HostPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub name: String,
    pub sysctls: Vec<(String, String)>,
    pub ifaces: Vec<IfacePlan>,
    pub addresses: Vec<(String, Ipv4Net)>,
    pub routes: Vec<RoutePlan>,
    pub neighbours: Vec<NeighPlan>,
    /// Forwarding database entries (a vxlan's remote VTEPs).
    pub fdb: Vec<FdbPlan>,
    /// Per-interface sysctls, set once the interfaces exist (proxy_arp on routed host veths).
    pub iface_sysctls: Vec<(String, String)>,
    pub masquerade: Option<MasqPlan>,
    /// The IPv6 half of a dual-stack lab (empty in an IPv4 one).
    #[serde(skip_serializing_if = "Plan6::is_empty")]
    pub v6: Plan6,
}

#[derive(Debug, Clone, Serialize)]
pub enum IfaceKind {
    Bridge,
    /// One end of a veth pair; `create` is true on the end whose host creates the pair.
    Veth {
        peer_host: String,
        peer_name: String,
        create: bool,
    },
    /// A vxlan device over `dev`, sourcing from `local`.
    Vxlan {
        vni: u32,
        port: u16,
        local: Ipv4Addr,
        dev: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct IfacePlan {
    pub name: String,
    pub kind: IfaceKind,
    pub mac: Mac,
    pub master: Option<String>,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoutePlan {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub dev: String,
    /// The gateway is on the link though no address says so (flannel's vxlan routes).
    pub onlink: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FdbPlan {
    pub dev: String,
    pub mac: Mac,
    pub dst: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize)]
pub struct NeighPlan {
    pub dev: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

#[derive(Debug, Clone, Serialize)]
pub struct MasqPlan {
    pub pod_cidr: Ipv4Net,
    /// Traffic to the cluster CIDR is not masqueraded (pod to pod across nodes).
    pub cluster_cidr: Ipv4Net,
    pub uplink: String,
}

/// A stable, locally administered unicast MAC for an interface of a host.
pub fn mac_for(host: &str, ifname: &str) -> Mac {
    // FNV-1a over "host/ifname".
    let mut h: u64 = 0xcbf29ce484222325;
    for b in host.bytes().chain([b'/']).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// Sysctls every lab namespace gets: ICMP sockets for probes, no ICMP rate limit (so outcomes do
/// not depend on how many probes ran before), no IPv6 chatter.
/// (`ping_group_range` names every group; a rootless lab narrows it to the groups its user
/// namespace maps when it writes it: see `privilege::mapped_groups`.)
pub fn base_sysctls() -> Vec<(String, String)> {
    [
        ("net.ipv4.ping_group_range", "0 2147483647"),
        ("net.ipv4.icmp_ratelimit", "0"),
        ("net.ipv4.icmp_ratemask", "0"),
        ("net.ipv6.conf.all.disable_ipv6", "1"),
        ("net.ipv6.conf.default.disable_ipv6", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The machine's neighbour table limit (`gc_thresh3`, settable only in the root namespace).
pub fn neighbour_limit() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// How many dynamic (ARP-learned) neighbour entries an all-pairs probe of the lab creates at
/// most. netfault's own wiring makes every entry on a pod bridge permanent (they do not count
/// towards the machine-wide limit); real CNI plugins leave them to ARP, and routed pods learn
/// their gateway by ARP.
pub fn dynamic_neighbours(t: &Topology) -> usize {
    let mut n = 0;
    for (node, _) in t.nodes() {
        let pods = t.pods_of(node).count();
        if t.cni.is_some() || t.cluster.neighbours == Neighbours::Dynamic {
            // Each pod learns every other pod on its bridge and the gateway; the node its pods.
            n += pods * pods + pods;
        } else if matches!(t.cluster.network, Network::Routed { .. }) {
            n += pods;
        }
    }
    n
}

/// A warning when the lab's all-pairs probe would need more dynamic neighbour entries than the
/// machine's table holds (what happens then: ENOBUFS, "neighbour table overflow", timeouts).
pub fn neighbour_warning(t: &Topology) -> Option<String> {
    let need = dynamic_neighbours(t);
    let limit = neighbour_limit();
    (need > limit).then(|| {
        format!(
            "{}: probing every pair needs about {need} dynamic neighbour entries, but the machine's \
             table holds {limit} (net.ipv4.neigh.default.gc_thresh3, shared by every namespace, \
             settable only in the root namespace): expect \"neighbour table overflow\" and timeouts. \
             Use netfault's own wiring (permanent entries), fewer pods per bridge, or fewer probes.",
            t.name
        )
    })
}

/// Which pods a bounded matrix probes with each other (None: all pairs are probed): a pod's
/// static neighbours are those, not the N² of a big bridge (a million entries at 1,000 pods).
struct Talks(Option<HashSet<(String, String)>>);

impl Talks {
    fn of(t: &Topology) -> Talks {
        let c = t.coverage();
        Talks(c.is_bounded().then(|| {
            c.pairs
                .iter()
                .flat_map(|&(a, b)| {
                    let (a, b) = (t.hosts[a].name.clone(), t.hosts[b].name.clone());
                    [(b.clone(), a.clone()), (a, b)]
                })
                .collect()
        }))
    }

    fn between(&self, a: &str, b: &str) -> bool {
        match &self.0 {
            None => true,
            Some(set) => set.contains(&(a.to_string(), b.to_string())),
        }
    }
}

impl HostPlan {
    /// The interface the plan routes `dst` out of: the longest prefix among the host's
    /// connected subnets and its routes.
    pub fn egress_dev(&self, dst: Ipv4Addr) -> Option<&str> {
        self.route_for(dst).map(|(dev, _)| dev)
    }

    /// The route the plan gives `dst`: its interface, and its gateway (None: on the link).
    pub fn route_for(&self, dst: Ipv4Addr) -> Option<(&str, Option<Ipv4Addr>)> {
        let connected = self
            .addresses
            .iter()
            .map(|(dev, n)| (dev.as_str(), n.trunc(), None));
        let routed = self
            .routes
            .iter()
            .map(|r| (r.dev.as_str(), r.dst, r.gateway));
        super::plan6::longest_match(connected.chain(routed), |n| {
            n.contains(&dst).then(|| n.prefix_len())
        })
    }
}

impl Plan {
    /// The other end of a veth, as (host, ifname); None for a bridge or vxlan device.
    pub fn veth_peer(&self, host: &str, ifname: &str) -> Option<(String, String)> {
        match &self.host(host)?.iface(ifname)?.kind {
            IfaceKind::Veth {
                peer_host,
                peer_name,
                ..
            } => Some((peer_host.clone(), peer_name.clone())),
            _ => None,
        }
    }

    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The IPv4 plan (`from_topology` adds the IPv6 half).
    pub(super) fn ipv4(t: &Topology) -> Plan {
        let mut hosts: Vec<HostPlan> = t
            .namespace_names()
            .into_iter()
            .map(|name| HostPlan {
                name,
                sysctls: base_sysctls(),
                ifaces: Vec::new(),
                addresses: Vec::new(),
                routes: Vec::new(),
                neighbours: Vec::new(),
                fdb: Vec::new(),
                iface_sysctls: Vec::new(),
                masquerade: None,
                v6: Plan6::default(),
            })
            .collect();

        for (name, node) in t.nodes() {
            Self::node_side(t, &mut hosts, name, node);
        }
        let talks = Talks::of(t);
        for (name, pod) in t.pods() {
            Self::pod(t, &mut hosts, name, pod, &talks);
        }
        Self::between_nodes(t, &mut hosts);
        if let Some(seg) = &t.uplink {
            Self::uplink_segment(t, &mut hosts, seg);
        }

        if t.cluster.neighbours == Neighbours::Dynamic {
            Self::leave_to_arp(&mut hosts);
        }
        hosts.iter_mut().for_each(|h| {
            h.ifaces
                .sort_by_key(|i| !matches!(i.kind, IfaceKind::Bridge))
        });
        Plan { hosts }
    }

    /// `neighbours = "dynamic"`: every entry but the overlay's is left to ARP. A vxlan device
    /// does not ARP across the underlay for its peers' VTEP addresses; flannel writes those.
    fn leave_to_arp(hosts: &mut [HostPlan]) {
        for h in hosts {
            let vxlans: HashSet<&str> = h
                .ifaces
                .iter()
                .filter(|i| matches!(i.kind, IfaceKind::Vxlan { .. }))
                .map(|i| i.name.as_str())
                .collect();
            h.neighbours.retain(|n| vxlans.contains(n.dev.as_str()));
        }
    }

    /// A node's own side: forwarding, its bridge and addresses, its masquerade; with [cni],
    /// only its uplink (and the plugin's bridge once pods are attached).
    fn node_side(
        t: &Topology,
        hosts: &mut [HostPlan],
        name: &str,
        node: &crate::topology::NodeSpec,
    ) {
        let pod_mtu = t.cluster.network.pod_mtu();
        let bridged = t.has_bridge();
        let i = idx(hosts, name);
        let h = &mut hosts[i];
        h.sysctls.push(("net.ipv4.ip_forward".into(), "1".into()));
        if !t.k8s.services.is_empty() {
            // ClusterIPs are routed like the default route would (kube-proxy relies on one):
            // the node's own connections to a Service need a route before DNAT.
            h.routes.push(RoutePlan {
                dst: t.k8s.service_cidr,
                gateway: None,
                dev: node.uplink_ifname.clone(),
                onlink: false,
            });
        }
        if t.cni.is_some() {
            // The plugin builds the pod side (its bridge, its masquerade); the plan records
            // it once pods are attached (below).
            h.addresses.push((node.uplink_ifname.clone(), node.uplink));
            if let (Some(b), true) = (
                t.cni.as_ref().and_then(|c| c.bridge.clone()),
                t.pods_of(name).any(|(_, p)| !p.host_veth.is_empty()),
            ) {
                h.ifaces.push(IfacePlan {
                    name: b.clone(),
                    kind: IfaceKind::Bridge,
                    mac: [0; 6],
                    master: None,
                    mtu: None,
                });
                h.addresses.push((
                    b,
                    Ipv4Net::new(node.gateway, node.pod_cidr.prefix_len()).expect("valid prefix"),
                ));
            }
            return;
        }
        if bridged {
            h.ifaces.push(IfacePlan {
                name: node.bridge.clone(),
                kind: IfaceKind::Bridge,
                mac: mac_for(name, &node.bridge),
                master: None,
                mtu: pod_mtu,
            });
            h.addresses.push((
                node.bridge.clone(),
                Ipv4Net::new(node.gateway, node.pod_cidr.prefix_len()).expect("valid prefix"),
            ));
        }
        h.addresses.push((node.uplink_ifname.clone(), node.uplink));
        if node.masquerade && t.cni.is_none() {
            h.masquerade = Some(MasqPlan {
                pod_cidr: node.pod_cidr,
                cluster_cidr: t.cluster.cidr,
                uplink: node.uplink_ifname.clone(),
            });
        }
    }

    /// A pod and its node's end of it: the veth pair, addresses, routes, neighbours.
    fn pod(
        t: &Topology,
        hosts: &mut [HostPlan],
        name: &str,
        pod: &crate::topology::PodSpec,
        talks: &Talks,
    ) {
        let pod_mtu = t.cluster.network.pod_mtu();
        let bridged = t.has_bridge();
        let node = t
            .host(&pod.node)
            .and_then(|h| h.as_node())
            .expect("validated pod node");
        if let Some(cni) = &t.cni {
            Self::cni_pod(hosts, name, pod, node, cni);
            return;
        }
        let pod_mac = mac_for(name, &pod.ifname);
        let gateway = t.pod_gateway(pod).expect("pod gateway");
        let ni = idx(hosts, &pod.node);
        hosts[ni].ifaces.push(IfacePlan {
            name: pod.host_veth.clone(),
            kind: IfaceKind::Veth {
                peer_host: name.to_string(),
                peer_name: pod.ifname.clone(),
                create: true,
            },
            mac: mac_for(&pod.node, &pod.host_veth),
            master: bridged.then(|| node.bridge.clone()),
            mtu: pod_mtu,
        });
        let node_dev = if bridged {
            node.bridge.clone()
        } else {
            pod.host_veth.clone()
        };
        hosts[ni].neighbours.push(NeighPlan {
            dev: node_dev.clone(),
            ip: pod.ip,
            mac: pod_mac,
        });
        if !bridged {
            // Calico: a /32 route per pod, proxy ARP answering for the pods' gateway.
            hosts[ni].routes.push(RoutePlan {
                dst: Ipv4Net::new(pod.ip, 32).expect("host route"),
                gateway: None,
                dev: pod.host_veth.clone(),
                onlink: false,
            });
            hosts[ni].iface_sysctls.push((
                format!("net/ipv4/conf/{}/proxy_arp", pod.host_veth),
                "1".into(),
            ));
            // Answer at once, as Calico does (the default delays proxy replies up to 0.8 s).
            hosts[ni].iface_sysctls.push((
                format!("net/ipv4/neigh/{}/proxy_delay", pod.host_veth),
                "0".into(),
            ));
        }
        let pi = idx(hosts, name);
        let p = &mut hosts[pi];
        p.ifaces.push(IfacePlan {
            name: pod.ifname.clone(),
            kind: IfaceKind::Veth {
                peer_host: pod.node.clone(),
                peer_name: pod.host_veth.clone(),
                create: false,
            },
            mac: pod_mac,
            master: None,
            mtu: pod_mtu,
        });
        let prefix = if bridged {
            node.pod_cidr.prefix_len()
        } else {
            32
        };
        p.addresses.push((
            pod.ifname.clone(),
            Ipv4Net::new(pod.ip, prefix).expect("valid prefix"),
        ));
        if !bridged {
            p.routes.push(RoutePlan {
                dst: Ipv4Net::new(gateway, 32).expect("gateway route"),
                gateway: None,
                dev: pod.ifname.clone(),
                onlink: false,
            });
        }
        p.routes.push(RoutePlan {
            dst: "0.0.0.0/0".parse().expect("default"),
            gateway: Some(gateway),
            dev: pod.ifname.clone(),
            onlink: false,
        });
        if bridged {
            // Static neighbours: the gateway (the bridge) and the pods on the same bridge it
            // is probed with (all of them unless the matrix is bounded; traffic to others
            // resolves by ARP). Routed pods resolve their gateway by ARP, which the node
            // answers by proxy.
            p.neighbours.push(NeighPlan {
                dev: pod.ifname.clone(),
                ip: gateway,
                mac: mac_for(&pod.node, &node.bridge),
            });
            for (other, op) in t.pods_of(&pod.node) {
                if other != name && talks.between(name, other) {
                    p.neighbours.push(NeighPlan {
                        dev: pod.ifname.clone(),
                        ip: op.ip,
                        mac: mac_for(other, &op.ifname),
                    });
                }
            }
        }
    }
    /// A pod attached by a plugin: what it built, as its result said (MACs unknown: zero).
    fn cni_pod(
        hosts: &mut [HostPlan],
        name: &str,
        pod: &crate::topology::PodSpec,
        node: &crate::topology::NodeSpec,
        cni: &crate::topology::CniSpec,
    ) {
        if pod.host_veth.is_empty() {
            return;
        }
        let ni = idx(hosts, &pod.node);
        hosts[ni].ifaces.push(IfacePlan {
            name: pod.host_veth.clone(),
            kind: IfaceKind::Veth {
                peer_host: name.to_string(),
                peer_name: pod.ifname.clone(),
                create: true,
            },
            mac: [0; 6],
            master: cni.bridge.clone(),
            mtu: None,
        });
        if cni.bridge.is_none() {
            hosts[ni].routes.push(RoutePlan {
                dst: Ipv4Net::new(pod.ip, 32).expect("host route"),
                gateway: None,
                dev: pod.host_veth.clone(),
                onlink: false,
            });
        }
        let pi = idx(hosts, name);
        let p = &mut hosts[pi];
        p.ifaces.push(IfacePlan {
            name: pod.ifname.clone(),
            kind: IfaceKind::Veth {
                peer_host: pod.node.clone(),
                peer_name: pod.host_veth.clone(),
                create: false,
            },
            mac: [0; 6],
            master: None,
            mtu: None,
        });
        p.addresses.push((
            pod.ifname.clone(),
            Ipv4Net::new(pod.ip, node.pod_cidr.prefix_len()).expect("valid prefix"),
        ));
        p.routes.push(RoutePlan {
            dst: "0.0.0.0/0".parse().expect("default"),
            gateway: Some(node.gateway),
            dev: pod.ifname.clone(),
            onlink: false,
        });
    }

    /// Between nodes: host-gw and routed routes via the remote node; vxlan through the
    /// overlay; and external hosts' addresses.
    fn between_nodes(t: &Topology, hosts: &mut [HostPlan]) {
        let net = &t.cluster.network;
        let nodes: Vec<(&str, &crate::topology::NodeSpec)> = t.nodes().collect();
        for (name, node) in &nodes {
            let i = idx(hosts, name);
            if let Network::Routed { gateway } = net {
                // Proxy ARP answers only for an address the node routes elsewhere than where the
                // request came in: a Calico node's default route does that; ours routes just
                // the gateway address out of the uplink.
                hosts[i].routes.push(RoutePlan {
                    dst: Ipv4Net::new(*gateway, 32).expect("gateway route"),
                    gateway: None,
                    dev: node.uplink_ifname.clone(),
                    onlink: false,
                });
            }
            if let Network::Vxlan(v) = net {
                hosts[i].ifaces.push(IfacePlan {
                    name: v.device.clone(),
                    kind: IfaceKind::Vxlan {
                        vni: v.vni,
                        port: v.port,
                        local: node.uplink.addr(),
                        dev: node.uplink_ifname.clone(),
                    },
                    mac: mac_for(name, &v.device),
                    master: None,
                    mtu: Some(v.mtu),
                });
                hosts[i].addresses.push((
                    v.device.clone(),
                    Ipv4Net::new(node.pod_cidr.network(), 32).expect("vtep address"),
                ));
            }
            for (other, o) in &nodes {
                if other == name {
                    continue;
                }
                match net {
                    Network::HostGw | Network::Routed { .. } => hosts[i].routes.push(RoutePlan {
                        dst: o.pod_cidr,
                        gateway: Some(o.uplink.addr()),
                        dev: node.uplink_ifname.clone(),
                        onlink: false,
                    }),
                    Network::Vxlan(v) => {
                        let vtep = o.pod_cidr.network();
                        let mac = mac_for(other, &v.device);
                        hosts[i].routes.push(RoutePlan {
                            dst: o.pod_cidr,
                            gateway: Some(vtep),
                            dev: v.device.clone(),
                            onlink: true,
                        });
                        hosts[i].neighbours.push(NeighPlan {
                            dev: v.device.clone(),
                            ip: vtep,
                            mac,
                        });
                        hosts[i].fdb.push(FdbPlan {
                            dev: v.device.clone(),
                            mac,
                            dst: o.uplink.addr(),
                        });
                    }
                    Network::Bridge | Network::Tunnel { .. } => {}
                }
            }
        }

        for h in &t.hosts {
            if let Role::External(e) = &h.role {
                let i = idx(hosts, &h.name);
                hosts[i].addresses.push((e.ifname.clone(), e.addr));
                hosts[i].routes.extend(load_balancer_routes(t, &e.ifname));
            }
        }
    }

    /// The uplink segment: a direct veth between two members, or a switch for more.
    fn uplink_segment(t: &Topology, hosts: &mut [HostPlan], seg: &crate::topology::Segment) {
        let addr_of = |host: &str| t.host(host).map(|h| h.address()).expect("member host");
        if seg.members.len() == 2 {
            let (a, ai) = &seg.members[0];
            let (b, bi) = &seg.members[1];
            let ia = idx(hosts, a);
            hosts[ia].ifaces.push(IfacePlan {
                name: ai.clone(),
                kind: IfaceKind::Veth {
                    peer_host: b.clone(),
                    peer_name: bi.clone(),
                    create: true,
                },
                mac: mac_for(a, ai),
                master: None,
                mtu: None,
            });
            let ib = idx(hosts, b);
            hosts[ib].ifaces.push(IfacePlan {
                name: bi.clone(),
                kind: IfaceKind::Veth {
                    peer_host: a.clone(),
                    peer_name: ai.clone(),
                    create: false,
                },
                mac: mac_for(b, bi),
                master: None,
                mtu: None,
            });
        } else {
            let si = idx(hosts, SWITCH_HOST);
            hosts[si].ifaces.push(IfacePlan {
                name: SWITCH_BRIDGE.into(),
                kind: IfaceKind::Bridge,
                mac: mac_for(SWITCH_HOST, SWITCH_BRIDGE),
                master: None,
                mtu: None,
            });
            for (m, mi) in &seg.members {
                hosts[si].ifaces.push(IfacePlan {
                    name: m.clone(),
                    kind: IfaceKind::Veth {
                        peer_host: m.clone(),
                        peer_name: mi.clone(),
                        create: true,
                    },
                    mac: mac_for(SWITCH_HOST, m),
                    master: Some(SWITCH_BRIDGE.into()),
                    mtu: None,
                });
                let ii = idx(hosts, m);
                hosts[ii].ifaces.push(IfacePlan {
                    name: mi.clone(),
                    kind: IfaceKind::Veth {
                        peer_host: SWITCH_HOST.into(),
                        peer_name: m.clone(),
                        create: false,
                    },
                    mac: mac_for(m, mi),
                    master: None,
                    mtu: None,
                });
            }
        }
        for (m, mi) in &seg.members {
            let ii = idx(hosts, m);
            for (o, oi) in &seg.members {
                if o != m {
                    hosts[ii].neighbours.push(NeighPlan {
                        dev: mi.clone(),
                        ip: addr_of(o),
                        mac: mac_for(o, oi),
                    });
                }
            }
        }
    }
}

impl HostPlan {
    pub fn iface(&self, name: &str) -> Option<&IfacePlan> {
        self.ifaces.iter().find(|i| i.name == name)
    }

    /// Interfaces `up` must see operationally up: every veth end, and bridges with ports.
    pub fn must_be_up(&self) -> Vec<String> {
        self.ifaces
            .iter()
            .filter(|i| match i.kind {
                IfaceKind::Veth { .. } | IfaceKind::Vxlan { .. } => true,
                IfaceKind::Bridge => self
                    .ifaces
                    .iter()
                    .any(|p| p.master.as_deref() == Some(&i.name)),
            })
            .map(|i| i.name.clone())
            .collect()
    }
}

/// Where the host named `n` stands in the plan.
/// An external host's routes to the lab's load balancers and external IPs: each address via
/// the node that announces it, as MetalLB's layer-2 mode answers ARP for it from one node (an
/// admin routes external IPs the same way).
fn load_balancer_routes(t: &Topology, ifname: &str) -> Vec<RoutePlan> {
    let mut out = Vec::new();
    for s in &t.k8s.services {
        let Some(node) = t.announcer(s).and_then(|n| t.host(n)) else {
            continue;
        };
        for (ip, _) in s.fronts() {
            out.push(RoutePlan {
                dst: Ipv4Net::new(ip, 32).expect("host route"),
                gateway: Some(node.address()),
                dev: ifname.to_string(),
                onlink: false,
            });
        }
    }
    out
}

fn idx(hosts: &[HostPlan], n: &str) -> usize {
    hosts
        .iter()
        .position(|h| h.name == n)
        .expect("host in plan")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{parse_fixture, Source};

    #[test]
    fn single_node_plan() {
        let t = parse_fixture(&Source::new(
            "single-node.toml",
            include_str!("../../../fixtures/single-node.toml"),
        ))
        .unwrap();
        let p = Plan::from_topology(&t);
        assert_eq!(
            p.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ["node1", "pod-a", "pod-b", "ext"]
        );
        let n = p.host("node1").unwrap();
        let names: Vec<&str> = n.ifaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["cni0", "veth-pod-a", "veth-pod-b", "eth0"]);
        assert!(n
            .sysctls
            .contains(&("net.ipv4.ip_forward".into(), "1".into())));
        assert_eq!(n.masquerade.as_ref().unwrap().uplink, "eth0");
        assert_eq!(n.must_be_up(), ["cni0", "veth-pod-a", "veth-pod-b", "eth0"]);
        let a = p.host("pod-a").unwrap();
        assert_eq!(a.routes[0].gateway, Some("10.244.1.1".parse().unwrap()));
        // pod-a knows the gateway's and pod-b's MACs.
        assert_eq!(a.neighbours.len(), 2);
        assert_eq!(a.neighbours[0].mac, mac_for("node1", "cni0"));
        let e = p.host("ext").unwrap();
        assert!(e.routes.is_empty(), "ext must not route to pod CIDRs");
        assert_eq!(
            e.neighbours[0].ip,
            "203.0.113.1".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn macs_are_stable_local_unicast() {
        let m = mac_for("pod-a", "eth0");
        assert_eq!(m, mac_for("pod-a", "eth0"));
        assert_ne!(m, mac_for("pod-b", "eth0"));
        assert_eq!(m[0] & 0x03, 0x02);
    }
}
