//! IPv6 broken by hand (ip, sysctl, nft) in a dual-stack lab: the IPv6 walk names the same
//! culprit the catalog's faults get, from the live state alone, and IPv4 is never blamed.

mod common;
use common::{blamed, diagnoses, fixture, sh};

use netfault::diagnose::Component;

/// Each break, made by hand on a fresh lab: (host, command), then the pairs and the culprit.
async fn broken_by_hand(cmds: &[(&str, &str)], pairs: &[(&str, &str)], culprit: (&str, Component)) {
    let lab = common::up(&fixture("dual-stack.toml")).await;
    let base = common::healthy(&lab).await;
    for (host, cmd) in cmds {
        sh(&lab, host, *cmd);
    }
    let ds = diagnoses(&lab, &base).await;
    let want = vec![(culprit.0.to_string(), culprit.1)];
    for (from, to) in pairs {
        assert_eq!(blamed(&ds, from, to), want, "{from} → {to}");
    }
    for d in &ds {
        assert!(
            d.protocols
                .iter()
                .all(|p| p.family() == netfault::topology::Family::V6),
            "IPv4 broke too: {d}"
        );
        assert_eq!(
            (d.culprit.host.as_str(), d.culprit.component),
            culprit,
            "{d}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_forwarding_turned_off_by_hand() {
    broken_by_hand(
        &[("node1", "sysctl -qw net.ipv6.conf.all.forwarding=0")],
        &[("pod-a", "ext"), ("pod-b", "ext")],
        ("node1", Component::Forwarding),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip6tables_style_forward_drop_made_by_hand() {
    broken_by_hand(
        &[(
            "node1",
            "nft -f - <<'EOF'\ntable ip6 hardening {\n chain forward_v6 {\n  type filter hook forward priority 0; policy accept;\n  meta l4proto { tcp, udp, ipv6-icmp } ip6 saddr fd00:10:244:1::/64 drop\n }\n}\nEOF",
        )],
        &[("pod-a", "ext"), ("pod-a", "pod-b")],
        ("node1", Component::Filter),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_route_and_an_mtu_changed_by_hand() {
    broken_by_hand(
        &[("pod-a", "ip -6 route del default")],
        &[("pod-a", "ext"), ("pod-a", "node1")],
        ("pod-a", Component::Route),
    )
    .await;
    broken_by_hand(
        &[("pod-b", "ip link set eth0 mtu 1200")],
        &[("pod-b", "ext"), ("node1", "pod-b"), ("pod-a", "pod-b")],
        ("pod-b", Component::Mtu),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ndp_entry_and_a_missing_ip6_masquerade_made_by_hand() {
    broken_by_hand(
        &[(
            "pod-a",
            "ip -6 neigh replace fd00:10:244:1::1 lladdr 02:00:00:00:00:99 dev eth0 nud permanent",
        )],
        &[("pod-a", "ext"), ("node1", "pod-a")],
        ("pod-a", Component::Neighbour),
    )
    .await;
    broken_by_hand(
        &[("node1", "nft flush chain ip6 nat postrouting")],
        &[("pod-a", "ext"), ("pod-b", "ext")],
        ("node1", Component::Masquerade),
    )
    .await;
}

/// pod-b takes pod-a's IPv6 address by hand and pod-a's is re-added with DAD: the host that
/// holds the other's address is the culprit, everywhere it shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_address_made_by_hand() {
    broken_by_hand(
        &[
            ("pod-b", "ip addr add fd00:10:244:1::2/64 dev eth0 nodad"),
            (
                "pod-a",
                "sysctl -qw net.ipv6.conf.eth0.accept_dad=1 && ip addr del fd00:10:244:1::2/64 dev eth0 && ip addr add fd00:10:244:1::2/64 dev eth0 && for i in $(seq 40); do ip -6 addr show dev eth0 | grep -q dadfailed && exit 0; sleep 0.1; done; exit 1",
            ),
        ],
        &[("node1", "pod-a"), ("pod-b", "node1")],
        ("pod-b", Component::Address),
    )
    .await;
}

/// IPv6 reverse-path filtering as firewalld does it (an nft fib rule: IPv6 has no rp_filter
/// sysctl), made by hand: harmless while paths are symmetric, and once node1 sends node2's pod
/// traffic over the underlay (an asymmetric path, by hand too) node2's rule is the culprit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewalld_style_reverse_path_filtering_made_by_hand() {
    let lab = common::up(&fixture("dual-stack-vxlan.toml")).await;
    let base = common::healthy(&lab).await;
    sh(
        &lab,
        "node2",
        "nft -f - <<'EOF'\ntable inet firewalld {\n chain filter_PREROUTING {\n  type filter hook prerouting priority filter + 10; policy accept;\n  meta nfproto ipv6 fib saddr . iif oif missing drop\n }\n}\nEOF",
    );
    let ds = diagnoses(&lab, &base).await;
    assert!(ds.is_empty(), "symmetric paths pass the check: {ds:?}");
    sh(
        &lab,
        "node1",
        "ip -6 route replace fd00:10:244:2::/64 via 2001:db8::2 dev eth0",
    );
    let ds = diagnoses(&lab, &base).await;
    for (from, to) in [("pod-a", "pod-c"), ("pod-c", "pod-a"), ("node2", "pod-a")] {
        assert_eq!(
            blamed(&ds, from, to),
            vec![("node2".to_string(), Component::Filter)],
            "{from} → {to}"
        );
    }
    assert!(
        ds.iter().all(|d| d
            .protocols
            .iter()
            .all(|p| p.family() == netfault::topology::Family::V6)),
        "IPv4 is not filtered: {ds:?}"
    );
}

/// A pod's IPv6 default route pointed by hand at another pod, which does not forward (what a
/// rogue router advertisement does): the route off the lab's plan is the culprit, not the other
/// pod's forwarding. (node1 → pod-a still works: node1 sends from its bridge address, on-link.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_default_route_pointed_at_another_pod_by_hand() {
    broken_by_hand(
        &[(
            "pod-a",
            "ip -6 route replace default via fd00:10:244:1::3 dev eth0",
        )],
        &[("pod-a", "ext"), ("pod-a", "node1")],
        ("pod-a", Component::Route),
    )
    .await;
}
