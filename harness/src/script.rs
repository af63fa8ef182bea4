//! `netfault script FIXTURE`: the shell script of `ip`, `bridge`, `sysctl` and `nft` commands
//! that builds, by hand, the same lab `netfault up` builds over netlink. A CNI plugin automates
//! exactly these steps; reading (or running) the script shows which.
//!
//! The script is generated from the same plan `Lab::up` realises, step for step, so the two
//! cannot drift apart silently: a test runs the script into fresh namespaces and compares their
//! state with a lab `netfault up` built.

use std::fmt::Write;

use crate::error::{Error, Result};
use crate::lab::plan::{IfaceKind, Plan};
use crate::nl::Mac;
use crate::topology::Topology;

fn mac(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Single-quotes a word for sh.
fn q(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn ns(host: &str) -> String {
    format!("\"$LAB-{host}\"")
}

/// The script for a topology. Faults are not part of it; CNI-attached fixtures are refused
/// (their pods are wired by the plugins, not by these commands).
pub fn script(t: &Topology, source: &str) -> Result<String> {
    if t.cni.is_some() {
        return Err(Error::BadInput(format!(
            "{source}: its pods are attached by CNI plugins, which run these commands themselves; \
             netfault script writes netfault's own wiring (try fixtures/single-node.toml)"
        )));
    }
    if let crate::topology::Network::Tunnel { kind } = &t.cluster.network {
        return Err(Error::NotImplemented(format!(
            "{source}: a {kind} network: netfault script does not write {kind} networks"
        )));
    }
    let plan = Plan::from_topology(t);
    let hosts: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#!/bin/sh\n# The lab `netfault up {source}` builds, by hand: {}\n#\n\
         # Every host is a network namespace; pods hang off their node by veth pairs, the node\n\
         # routes and masquerades for them. A CNI plugin runs these same steps for every pod.\n#\n\
         # Run as root:      LAB=mylab sh this-script\n\
         # Let netfault in:  netfault adopt {source} --name mylab   (then status, diagnose, drill)\n\
         # Remove it:        for h in {}; do ip netns del \"mylab-$h\"; done\n\
         set -eu\nLAB=${{LAB:-lab}}\n",
        t.description,
        hosts.join(" ")
    );

    namespaces(&mut s, &plan);
    bridges(&mut s, &plan);
    veths(&mut s, &plan);
    overlay(&mut s, &plan);
    links_up(&mut s, &plan);
    addresses(&mut s, &plan);
    routes(&mut s, &plan);
    overlay_fdb(&mut s, &plan);
    iface_sysctls(&mut s, &plan);
    neighbours(&mut s, &plan);
    masquerade(&mut s, &plan);
    kubernetes(&mut s, t);
    let _ = writeln!(s, "\necho \"lab $LAB is up: {}\"", hosts.join(", "));
    Ok(s)
}

/// Step 1. A network namespace per host, with its own sysctls.
fn namespaces(s: &mut String, plan: &Plan) {
    let _ = writeln!(
        s,
        "# 1. A network namespace per host, with its own sysctls:"
    );
    let _ = writeln!(
        s,
        "#    ICMP sockets for probes, no ICMP rate limit, no IPv6, forwarding on nodes."
    );
    for h in &plan.hosts {
        let _ = writeln!(s, "ip netns add {}", ns(&h.name));
        let sets: Vec<String> = h
            .sysctls
            .iter()
            .map(|(k, v)| q(&format!("{k}={v}")))
            .collect();
        let _ = writeln!(
            s,
            "ip netns exec {} sysctl -qw {}",
            ns(&h.name),
            sets.join(" ")
        );
    }
}

/// Step 2. Bridges.
fn bridges(s: &mut String, plan: &Plan) {
    let _ = writeln!(s, "\n# 2. Bridges (a node's cni0, the underlay switch).");
    for h in &plan.hosts {
        for i in h
            .ifaces
            .iter()
            .filter(|i| matches!(i.kind, IfaceKind::Bridge))
        {
            let mtu = i.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "ip -n {} link add {} address {}{mtu} type bridge",
                ns(&h.name),
                q(&i.name),
                mac(&i.mac)
            );
            let _ = writeln!(s, "ip -n {} link set {} up", ns(&h.name), q(&i.name));
        }
    }
}

/// Step 3. veth pairs.
fn veths(s: &mut String, plan: &Plan) {
    let _ = writeln!(
        s,
        "\n# 3. veth pairs: made in one namespace, the far end moved into the other."
    );
    for h in &plan.hosts {
        for i in &h.ifaces {
            let IfaceKind::Veth {
                peer_host,
                peer_name,
                create: true,
            } = &i.kind
            else {
                continue;
            };
            let peer = plan.host(peer_host).and_then(|p| p.iface(peer_name));
            let mtu = i.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
            let peer_mac = peer
                .map(|p| p.mac)
                .unwrap_or(crate::lab::plan::mac_for(peer_host, peer_name));
            let peer_mtu = peer
                .and_then(|p| p.mtu)
                .map(|m| format!(" mtu {m}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "ip -n {} link add {} address {}{mtu} type veth peer name {} address {}{peer_mtu} netns {}",
                ns(&h.name),
                q(&i.name),
                mac(&i.mac),
                q(peer_name),
                mac(&peer_mac),
                ns(peer_host)
            );
            if let Some(m) = &i.master {
                let _ = writeln!(
                    s,
                    "ip -n {} link set {} master {}",
                    ns(&h.name),
                    q(&i.name),
                    q(m)
                );
            }
            let _ = writeln!(s, "ip -n {} link set {} up", ns(&h.name), q(&i.name));
        }
    }
}

/// Step 4. The overlay's vxlan devices.
fn overlay(s: &mut String, plan: &Plan) {
    let vx: Vec<_> = plan
        .hosts
        .iter()
        .flat_map(|h| h.ifaces.iter().map(move |i| (h, i)))
        .filter(|(_, i)| matches!(i.kind, IfaceKind::Vxlan { .. }))
        .collect();
    if !vx.is_empty() {
        let _ = writeln!(
            s,
            "\n# 4. The overlay: a vxlan device per node over its uplink, no learning (the FDB is static)."
        );
        for (h, i) in vx {
            let IfaceKind::Vxlan {
                vni,
                port,
                local,
                dev,
            } = &i.kind
            else {
                continue;
            };
            let mtu = i.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "ip -n {} link add {} address {}{mtu} type vxlan id {vni} local {local} dev {} dstport {port} nolearning",
                ns(&h.name),
                q(&i.name),
                mac(&i.mac),
                q(dev)
            );
            let _ = writeln!(s, "ip -n {} link set {} up", ns(&h.name), q(&i.name));
        }
    }
}

/// Step 5. Loopback and the far ends of the veths up.
fn links_up(s: &mut String, plan: &Plan) {
    let _ = writeln!(s, "\n# 5. Loopback and the far ends of the veths up.");
    for h in &plan.hosts {
        let mut ups = vec!["lo".to_string()];
        ups.extend(
            h.ifaces
                .iter()
                .filter(|i| matches!(i.kind, IfaceKind::Veth { create: false, .. }))
                .map(|i| i.name.clone()),
        );
        for u in ups {
            let _ = writeln!(s, "ip -n {} link set {} up", ns(&h.name), q(&u));
        }
    }
}

/// Step 6. Addresses.
fn addresses(s: &mut String, plan: &Plan) {
    let _ = writeln!(s, "\n# 6. Addresses.");
    for h in &plan.hosts {
        for (dev, net) in &h.addresses {
            let _ = writeln!(s, "ip -n {} addr add {net} dev {}", ns(&h.name), q(dev));
        }
        // IPv6 without duplicate address detection: the lab's addresses are unique.
        for (dev, net) in &h.v6.addresses {
            let _ = writeln!(
                s,
                "ip -n {} addr add {net} dev {} nodad",
                ns(&h.name),
                q(dev)
            );
        }
    }
}

/// Step 7. Routes.
fn routes(s: &mut String, plan: &Plan) {
    let _ = writeln!(
        s,
        "\n# 7. Routes: routes straight onto a link first, then routes via a gateway."
    );
    for h in &plan.hosts {
        let (direct, via): (Vec<_>, Vec<_>) = h.routes.iter().partition(|r| r.gateway.is_none());
        let v4 = direct.into_iter().chain(via).map(|r| {
            let gw = r.gateway.map(|g| g.to_string());
            ("", ipnet::IpNet::from(r.dst), gw, &r.dev, r.onlink)
        });
        let v6 = h.v6.routes.iter().map(|r| {
            let gw = r.gateway.map(|g| g.to_string());
            (" -6", ipnet::IpNet::from(r.dst), gw, &r.dev, r.onlink)
        });
        for (family, dst, gw, dev, onlink) in v4.chain(v6) {
            let dst = if dst.prefix_len() == 0 {
                "default".to_string()
            } else {
                dst.to_string()
            };
            let gw = gw.map(|g| format!(" via {g}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "ip -n {}{family} route add {dst}{gw} dev {}{}",
                ns(&h.name),
                q(dev),
                if onlink { " onlink" } else { "" }
            );
        }
    }
}

/// Step 8. The overlay's forwarding database.
fn overlay_fdb(s: &mut String, plan: &Plan) {
    if plan.hosts.iter().any(|h| !h.fdb.is_empty()) {
        let _ = writeln!(
            s,
            "\n# 8. The overlay's forwarding database: which VTEP holds each remote vxlan MAC."
        );
        for h in &plan.hosts {
            for f in &h.fdb {
                let _ = writeln!(
                    s,
                    "bridge -n {} fdb append {} dev {} dst {} self permanent",
                    ns(&h.name),
                    mac(&f.mac),
                    q(&f.dev),
                    f.dst
                );
            }
        }
    }
}

/// Step 9. Per-interface sysctls.
fn iface_sysctls(s: &mut String, plan: &Plan) {
    if plan.hosts.iter().any(|h| !h.iface_sysctls.is_empty()) {
        let _ = writeln!(
            s,
            "\n# 9. Per-interface sysctls (proxy ARP on routed pods' host veths, answering at once)."
        );
        for h in &plan.hosts {
            if h.iface_sysctls.is_empty() {
                continue;
            }
            let sets: Vec<String> = h
                .iface_sysctls
                .iter()
                .map(|(k, v)| q(&format!("{k}={v}")))
                .collect();
            let _ = writeln!(
                s,
                "ip netns exec {} sysctl -qw {}",
                ns(&h.name),
                sets.join(" ")
            );
        }
    }
}

/// Step 10. Static neighbour entries.
fn neighbours(s: &mut String, plan: &Plan) {
    let _ = writeln!(
        s,
        "\n# 10. Static neighbour entries: outcomes never wait for ARP (with neighbours = \"dynamic\",\n#     only an overlay's VTEP entries: the rest is learned by ARP)."
    );
    for h in &plan.hosts {
        let v4 = h
            .neighbours
            .iter()
            .map(|n| (n.ip.to_string(), &n.mac, &n.dev));
        let v6 =
            h.v6.neighbours
                .iter()
                .map(|n| (n.ip.to_string(), &n.mac, &n.dev));
        for (ip, m, dev) in v4.chain(v6) {
            let _ = writeln!(
                s,
                "ip -n {} neigh replace {ip} lladdr {} dev {} nud permanent",
                ns(&h.name),
                mac(m),
                q(dev)
            );
        }
    }
}

/// Step 11. Masquerade.
fn masquerade(s: &mut String, plan: &Plan) {
    let masq: Vec<_> = plan
        .hosts
        .iter()
        .flat_map(|h| {
            let v4 = h
                .masquerade
                .as_ref()
                .map(|m| (h, "ip", m.pod_cidr.into(), m.cluster_cidr.into(), &m.uplink));
            let v6 = h.v6.masquerade.as_ref().map(|m| {
                (
                    h,
                    "ip6",
                    m.pod_cidr.into(),
                    m.cluster_cidr.into(),
                    &m.uplink,
                )
            });
            [v4, v6].into_iter().flatten()
        })
        .collect::<Vec<(_, _, ipnet::IpNet, ipnet::IpNet, _)>>();
    if !masq.is_empty() {
        let _ = writeln!(
            s,
            "\n# 11. Masquerade: pod traffic leaving the cluster takes the node's address, so replies\n\
             #     come back to a host that can route them (external hosts know no pod CIDR)."
        );
        for (h, fam, pod_cidr, cluster_cidr, uplink) in masq {
            let _ = writeln!(
                s,
                "ip netns exec {} nft -f - <<'EOF'\ntable {fam} {} {{\n  chain {} {{\n    type nat hook postrouting priority srcnat; policy accept;\n    {fam} saddr {} {fam} daddr != {} oifname \"{}\" masquerade comment \"netfault: masquerade pods of {} leaving {}\"\n  }}\n}}\nEOF",
                ns(&h.name),
                crate::nft::NAT_TABLE,
                crate::nft::NAT_CHAIN,
                pod_cidr,
                cluster_cidr,
                uplink,
                h.name,
                uplink
            );
        }
    }
}

/// Step 12. The Kubernetes layer.
fn kubernetes(s: &mut String, t: &Topology) {
    if !t.k8s.is_empty() {
        let _ = writeln!(
            s,
            "\n# 12. The Kubernetes layer: hairpin on pod bridge ports (the kubelet's), kube-proxy's\n\
             #     nftables rules for Services, NetworkPolicies as nft rules. (Cluster DNS is a\n\
             #     server process and each pod's resolv.conf a file: netfault up provides both.)"
        );
        for (node, port) in crate::lab::k8s::hairpin_ports(t) {
            let _ = writeln!(
                s,
                "ip netns exec {} bridge link set dev {} hairpin on",
                ns(&node),
                q(&port)
            );
        }
        for (node, _) in t.nodes() {
            let _ = writeln!(
                s,
                "ip netns exec {} nft -f - <<'EOF'\n{}EOF",
                ns(node),
                crate::lab::k8s::node_script(t, &t.k8s, node)
            );
            if t.k8s.proxy_mode == crate::topology::k8s::ProxyMode::Iptables {
                let live = crate::lab::kube_proxy_iptables::LiveChains::default();
                let _ = writeln!(
                    s,
                    "ip netns exec {} iptables-nft-restore --noflush <<'EOF'\n{}EOF",
                    ns(node),
                    crate::lab::kube_proxy_iptables::iptables_script(t, &t.k8s, node, &live)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{parse_fixture, Source};

    #[test]
    fn the_script_names_every_step_of_the_single_node_lab() {
        let t = parse_fixture(&Source::new(
            "single-node.toml",
            include_str!("../../fixtures/single-node.toml"),
        ))
        .unwrap();
        let s = script(&t, "fixtures/single-node.toml").unwrap();
        for want in [
            "ip netns add \"$LAB-pod-a\"",
            "sysctl -qw 'net.ipv4.ping_group_range=0 2147483647'",
            "type bridge",
            "type veth peer name eth0",
            "netns \"$LAB-pod-a\"",
            "link set veth-pod-a master cni0",
            "addr add 10.244.1.2/24 dev eth0",
            "route add default via 10.244.1.1 dev eth0",
            "neigh replace 10.244.1.2 lladdr",
            "masquerade comment \"netfault: masquerade pods of node1 leaving eth0\"",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        assert_eq!(q("it's"), "'it'\\''s'");
    }
}
