//! Integration tests of lab up/down on the real kernel.

mod common;
use common::fixture;

use std::net::Ipv4Addr;
use std::time::Duration;

use netfault::leakcheck::Witness;
use netfault::nl;
use netfault::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_lab_is_wired_as_planned_and_vanishes_on_drop() {
    let topo = fixture("single-node.toml");
    let lab = common::up(&topo).await;
    let mut witness = Witness::new().await.unwrap();
    for h in lab.hosts() {
        witness.watch(&h.ns).await.unwrap();
    }
    assert_eq!(witness.alive().await.unwrap(), 4);

    // pod-a: eth0 up with its address, default route via the bridge.
    let pod = lab.host("pod-a").unwrap();
    let eth0 = nl::link_by_name(pod.handle(), "eth0")
        .await
        .unwrap()
        .unwrap();
    assert!(eth0.admin_up && eth0.is_oper_up(), "{eth0:?}");
    let addrs = nl::addresses(pod.handle()).await.unwrap();
    assert!(addrs
        .iter()
        .any(|a| a.index == eth0.index && a.net.to_string() == "10.244.1.2/24"));
    let r = nl::route_get(pod.handle(), "203.0.113.10".parse().unwrap(), None, None)
        .await
        .unwrap();
    assert_eq!(r.gateway, Some(Ipv4Addr::new(10, 244, 1, 1)));
    assert_eq!(r.oif, Some(eth0.index));

    // node1: both veths on cni0, the node forwards from cni0 to eth0.
    let node = lab.host("node1").unwrap();
    let links = nl::links(node.handle()).await.unwrap();
    let cni0 = links.iter().find(|l| l.name == "cni0").unwrap();
    for v in ["veth-pod-a", "veth-pod-b"] {
        let l = links.iter().find(|l| l.name == v).unwrap();
        assert_eq!(l.master, Some(cni0.index), "{v} enslaved to cni0");
        assert!(l.is_oper_up(), "{v} up");
    }
    let fwd = nl::route_get(
        node.handle(),
        "203.0.113.10".parse().unwrap(),
        Some("10.244.1.2".parse().unwrap()),
        Some(cni0.index),
    )
    .await
    .unwrap();
    assert_eq!(
        fwd.oif,
        links.iter().find(|l| l.name == "eth0").map(|l| l.index)
    );

    // ext has no route to the pods.
    let ext = lab.host("ext").unwrap();
    let e = nl::route_get(ext.handle(), "10.244.1.2".parse().unwrap(), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENETUNREACH);

    // The masquerade rule is in node1's ruleset, and only there.
    let text = netfault::nft::list_text(&node.ns, "node1").await.unwrap();
    assert!(
        text.contains(
            "ip saddr 10.244.1.0/24 ip daddr != 10.244.1.0/24 oifname \"eth0\" masquerade"
        ),
        "{text}"
    );
    assert_eq!(netfault::nft::list_text(&ext.ns, "ext").await.unwrap(), "");

    let inodes: Vec<u64> = lab.namespace_inodes().into_iter().map(|(_, i)| i).collect();
    drop(lab);
    assert_eq!(
        witness.wait_gone(Duration::from_secs(10)).await.unwrap(),
        0,
        "namespaces outlived the lab"
    );
    assert!(netfault::leakcheck::processes_in(&inodes)
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_single_node_matrix_is_as_the_fixture_says() {
    let topo = fixture("single-node.toml");
    let lab = common::up(&topo).await;
    let m = netfault::probe::matrix(&lab).await.unwrap();
    println!("{}", m.render());
    assert!(m.mismatches().is_empty(), "{:#?}", m.render_mismatches());
    use netfault::{Outcome, Proto};
    // Masquerade: ext sees pod traffic as node1's uplink address; pods see each other as is.
    assert_eq!(
        m.cell("pod-a", "ext", Proto::Tcp).unwrap().seen_as,
        Some("203.0.113.1".parse().unwrap())
    );
    assert_eq!(
        m.cell("pod-b", "ext", Proto::Udp).unwrap().seen_as,
        Some("203.0.113.1".parse().unwrap())
    );
    assert_eq!(
        m.cell("pod-a", "pod-b", Proto::Tcp).unwrap().seen_as,
        Some("10.244.1.2".parse().unwrap())
    );
    assert_eq!(
        m.observed("ext", "pod-a", Proto::Icmp),
        Some(Outcome::Unreachable)
    );
    assert_eq!(m.cells.len(), 4 * 3 * 3);
    // No probe waited for its timeout: every cell was decided by an answer (how fast that is,
    // is ci/bench's business).
    let timed_out: Vec<_> = m
        .cells
        .iter()
        .filter(|c| c.observed == Outcome::Timeout)
        .map(|c| format!("{} -> {} {}", c.from, c.to, c.proto))
        .collect();
    assert!(timed_out.is_empty(), "{timed_out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_capture_sees_rules_fdb_and_bridge_port_flags() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let before = netfault::diagnose::capture(&lab).await.unwrap();
    let node = before.host("node1").unwrap();
    assert!(
        node.rules.contains("32766: from all lookup main"),
        "{:?}",
        node.rules
    );
    assert_eq!(node.links["veth-pod-a"].peer.as_deref(), Some("pod-a:eth0"));
    lab.host("node1")
        .unwrap()
        .ns
        .run(|| {
            for cmd in [
                "ip link set dev veth-pod-a type bridge_slave hairpin on",
                "ip rule add from 10.244.1.0/24 lookup 100 priority 100",
                "bridge fdb add 02:00:00:00:00:42 dev veth-pod-b master static",
            ] {
                let st = std::process::Command::new("sh")
                    .args(["-c", cmd])
                    .status()
                    .unwrap();
                assert!(st.success(), "{cmd}");
            }
        })
        .unwrap();
    let after = netfault::diagnose::capture(&lab).await.unwrap();
    let d = netfault::diagnose::diff(&before, &after);
    assert_eq!(
        d,
        [
            "node1: link veth-pod-a (defaults) → hairpin on",
            "node1: rule 100: from 10.244.1.0/24 lookup 100 added",
            "node1: fdb a MAC outside the lab dev veth-pod-b master cni0 static added",
        ],
        "{d:#?}"
    );
}

async fn healthy(name: &str) -> netfault::matrix::Matrix {
    let topo = fixture(name);
    let lab = common::up(&topo).await;
    let m = netfault::probe::matrix(&lab).await.unwrap();
    assert!(
        m.mismatches().is_empty(),
        "{name}:\n{}\n{:#?}",
        m.render(),
        m.render_mismatches()
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_fixtures_are_healthy() {
    use netfault::Proto;
    for f in [
        "two-node-vxlan.toml",
        "two-node-hostgw.toml",
        "two-node-routed.toml",
    ] {
        let m = healthy(f).await;
        // Cross-node pod traffic keeps pod addresses; egress to ext is masqueraded by the node.
        assert_eq!(
            m.cell("pod-a", "pod-c", Proto::Tcp).unwrap().seen_as,
            Some("10.244.1.2".parse().unwrap()),
            "{f}"
        );
        assert_eq!(
            m.cell("pod-c", "pod-b", Proto::Udp).unwrap().seen_as,
            Some("10.244.2.2".parse().unwrap()),
            "{f}"
        );
        assert_eq!(
            m.cell("pod-c", "ext", Proto::Tcp).unwrap().seen_as,
            Some("203.0.113.2".parse().unwrap()),
            "{f}"
        );
        assert_eq!(
            m.cell("pod-a", "ext", Proto::Udp).unwrap().seen_as,
            Some("203.0.113.1".parse().unwrap()),
            "{f}"
        );
        assert_eq!(m.cells.len(), 6 * 5 * 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipip_network_is_unsupported_exactly_where_the_kernel_lacks_ipip() {
    let kernel_has_ipip = common::kernel_has("ipip link");
    let e = Lab::up(&fixture("two-node-ipip.toml")).await.err().unwrap();
    assert!(e.to_string().contains("ipip"), "{e}");
    if kernel_has_ipip {
        assert!(matches!(e, netfault::Error::NotImplemented(_)), "{e}");
    } else {
        assert!(matches!(e, netfault::Error::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("does not have"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cni_fixtures_are_healthy_and_match_the_built_in_wiring() {
    let builtin = healthy("single-node.toml").await;
    for f in ["cni-bridge.toml", "cni-ptp.toml", "cni-chain.toml"] {
        let m = healthy(f).await;
        assert_eq!(
            m.outcomes(),
            builtin.outcomes(),
            "{f}: the plugin's lab and the built-in one differ\n{}",
            m.render()
        );
    }
}

/// The bridge plugin with host-local's two ranges builds the same dual-stack lab as the built-in
/// wiring: every pair reachable over both families, each pod's IPv6 address from its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_cni_fixture_matches_the_built_in_dual_stack_wiring() {
    let builtin = healthy("dual-stack.toml").await;
    let m = healthy("cni-bridge-dual.toml").await;
    assert_eq!(
        m.outcomes(),
        builtin.outcomes(),
        "the plugin's dual-stack lab and the built-in one differ\n{}",
        m.render()
    );
    assert!(
        m.cells
            .iter()
            .any(|c| c.proto == netfault::topology::Proto::Tcp6
                && c.from == "pod-a"
                && c.to == "ext"),
        "probed over IPv6"
    );
}

/// Linkwatch settles a carrier change at once only for a device whose ifindex differs from its
/// iflink: a veth end sharing its peer's index waited up to a second before it passed traffic.
/// The lab gives no veth end its peer's index (in fresh namespaces the kernel's own choice
/// often matched: node2's eth0 4, its underlay peer 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_veth_end_shares_its_peers_index_so_links_are_up_at_once() {
    let topo = fixture("two-node-vxlan.toml");
    let lab = common::up(&topo).await;
    let mut veths = 0;
    for h in lab.hosts() {
        for l in nl::links(h.handle()).await.unwrap() {
            if l.kind.as_deref() == Some("veth") {
                veths += 1;
                assert_ne!(Some(l.index), l.link, "{}: {l:?}", h.name);
            }
        }
    }
    assert!(
        veths >= 10,
        "both ends of every veth were looked at: {veths}"
    );
}
