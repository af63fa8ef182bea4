//! Culprits judged against the lab's plan: a hop the kernel lets a packet through, but that
//! already diverges from what the fixture intends, is blamed instead of the later hop where the
//! packet dies. Each lab is broken by hand (ip, nft), and a divergence that breaks nothing
//! blames nothing.

mod common;
use common::{blamed, diagnoses, fixture, healthy, nft_rule, sh};

use netfault::diagnose::Component;

/// The masquerade replaced by an SNAT to an address of the uplink's subnet that node1 does not
/// hold: ext's replies go to that address and never come back to node1. The translation is the
/// culprit, not ext's route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translation_to_an_address_the_host_does_not_hold_is_blamed() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(
        &lab,
        "node1",
        "nft flush chain ip nat postrouting && \
         nft add rule ip nat postrouting ip saddr 10.244.1.0/24 oifname eth0 snat to 203.0.113.77",
    );
    let ds = diagnoses(&lab, &base).await;
    for pod in ["pod-a", "pod-b"] {
        assert_eq!(
            blamed(&ds, pod, "ext"),
            vec![("node1".to_string(), Component::Masquerade)],
            "{pod}"
        );
    }
    let d = ds.iter().find(|d| d.from == "pod-a").unwrap();
    assert!(
        d.culprit
            .summary
            .contains("203.0.113.77, an address it does not hold"),
        "{}",
        d.culprit.summary
    );
}

/// pod-b given pod-a's address as a second one: pod-b drops pod-a's packets as martians, and
/// keeps its own packets for pod-a to itself. The duplicate address is the culprit both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_holding_another_hosts_address_is_blamed() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(&lab, "pod-b", "ip addr add 10.244.1.2/32 dev eth0");
    let ds = diagnoses(&lab, &base).await;
    let pod_b = vec![("pod-b".to_string(), Component::Address)];
    assert_eq!(blamed(&ds, "pod-a", "pod-b"), pod_b);
    assert_eq!(blamed(&ds, "pod-b", "pod-a"), pod_b);
    assert!(
        ds.iter()
            .all(|d| d.culprit.component == Component::Address && d.culprit.host == "pod-b"),
        "only pod-b's duplicate is blamed"
    );
}

/// A pod's default route moved to an interface the plan does not have (a veth of its own that
/// leads nowhere): the route is the culprit, not whatever the walk finds beyond it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_out_of_an_unplanned_interface_is_blamed() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(
        &lab,
        "pod-a",
        "ip link add eth9 type veth peer name eth9p && ip link set eth9 up && \
         ip link set eth9p up && ip route replace default dev eth9",
    );
    let ds = diagnoses(&lab, &base).await;
    assert_eq!(
        blamed(&ds, "pod-a", "ext"),
        vec![("pod-a".to_string(), Component::Route)]
    );
    let d = ds.iter().find(|d| d.to == "ext").unwrap();
    assert!(d.culprit.summary.contains("out of eth9, an interface the lab's plan does not have (the plan sends it out of eth0: pod-a eth0 → node1 eth0 (masquerade to 203.0.113.1) → ext)"), "{}", d.culprit.summary);
    assert!(
        ds.iter().all(|d| d.from == "pod-a"),
        "only pod-a's routes moved"
    );
}

/// A docker0-like bridge on node1 whose subnet is a more specific part of the uplink's, and
/// holds ext's address: node1's route to ext leaves by the bridge, which leads nowhere. The
/// route out of the unplanned interface is the culprit, not the bridge's missing ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_interface_overlapping_lab_addresses_is_blamed() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(
        &lab,
        "node1",
        "ip link add docker0 type bridge && ip addr add 203.0.113.9/29 dev docker0 && \
         ip link set docker0 up",
    );
    let ds = diagnoses(&lab, &base).await;
    for from in ["pod-a", "node1"] {
        assert_eq!(
            blamed(&ds, from, "ext"),
            vec![("node1".to_string(), Component::Route)],
            "{from}"
        );
    }
}

/// Divergence that breaks nothing blames nothing: an extra address no lab host is planned to
/// have (on pod-b) and an extra bridge whose subnet no lab address is in leave the lab healthy,
/// and a filter drop added beside them is still the culprit of what it breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harmless_divergence_is_no_culprit() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(&lab, "pod-b", "ip addr add 10.244.1.99/32 dev eth0");
    sh(
        &lab,
        "node1",
        "ip link add docker0 type bridge && ip addr add 172.17.0.1/16 dev docker0 && \
         ip link set docker0 up",
    );
    let ds = diagnoses(&lab, &base).await;
    assert!(ds.is_empty(), "nothing broke");
    nft_rule(
        &lab,
        "node1",
        "forward",
        "ip saddr 10.244.1.2 ip daddr 203.0.113.10 drop",
    );
    let ds = diagnoses(&lab, &base).await;
    assert_eq!(
        blamed(&ds, "pod-a", "ext"),
        vec![("node1".to_string(), Component::Filter)]
    );
    assert!(ds.iter().all(|d| d.from == "pod-a"), "pod-b is not broken");
}

/// An over-broad masquerade on node1 (everything leaving flannel.1 translated): every pair still
/// reaches, but pod-c sees node1's overlay address instead of pod-a's. The matrix says the
/// cells are not as expected, and the diagnosis names node1's masquerade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_broad_masquerade_is_not_as_expected_though_all_reach() {
    let lab = common::up(&fixture("two-node-vxlan.toml")).await;
    let base = healthy(&lab).await;
    sh(
        &lab,
        "node1",
        "nft add rule ip nat postrouting oifname flannel.1 masquerade",
    );
    let m = netfault::probe::matrix(&lab).await.unwrap();
    let wrong = m.render_mismatches();
    assert!(
        wrong
            .iter()
            .any(|l| l.starts_with("pod-a → pod-c tcp: reachable but seen as 10.244.1.0")),
        "{wrong:#?}"
    );
    assert!(
        m.cells
            .iter()
            .all(|c| c.observed == base.observed(&c.from, &c.to, c.proto).unwrap()),
        "every outcome is as before"
    );
    // Only pod traffic into the overlay: nodes send from their own addresses anyway.
    assert!(wrong.iter().all(|l| l.starts_with("pod-")), "{wrong:#?}");
    let ds = diagnoses(&lab, &base).await;
    assert_eq!(
        blamed(&ds, "pod-a", "pod-c"),
        vec![("node1".to_string(), Component::Masquerade)]
    );
    let d = ds
        .iter()
        .find(|d| d.from == "pod-a" && d.to == "pod-c")
        .unwrap();
    assert!(
        d.culprit
            .summary
            .starts_with("node1 translates 10.244.1.2 to 10.244.1.0 on the way to pod-c"),
        "{}",
        d.culprit.summary
    );
}

/// node1's uplink shaped by hand to 8 bit/s (tc tbf): a single small packet needs seconds, so
/// every probe to or from ext that breaks is blamed on the shaper, whichever of them the burst let
/// through this time; pairs that do not cross it stay reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shaper_too_slow_for_a_single_packet_is_blamed_without_bulk_probes() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(
        &lab,
        "node1",
        "tc qdisc add dev eth0 root tbf rate 8bit burst 200 limit 400",
    );
    let ds = diagnoses(&lab, &base).await;
    assert!(!ds.is_empty(), "something towards ext broke");
    for d in &ds {
        assert!(
            d.to == "ext" || d.from == "ext",
            "only pairs through node1's eth0 (either way) break: {d}"
        );
        assert_eq!(
            (d.culprit.host.as_str(), d.culprit.component),
            ("node1", Component::Link),
            "{d}"
        );
        assert!(
            d.culprit.summary.contains("shaped to 8bit by a tbf qdisc"),
            "{d}"
        );
    }
    // The round's probes overflow its queue: the qdisc's drop counter is evidence (shown, not
    // snapshotted: how many it drops is timing).
    let dropped = |d: &&netfault::diagnose::Diagnosis| {
        d.evidence.iter().any(|e| {
            e.host == "node1" && e.text == "qdisc tbf root on eth0 dropped packets" && !e.stable
        })
    };
    assert!(ds.iter().any(|d| dropped(&d)), "no qdisc drops in evidence");
}

/// A path that drops big packets (an underlay filter on length, the classic overlay MTU
/// problem, here `meta length > 1000 drop` on node1): a big probe's walk decides the rule
/// instead of leaving it `?`, and a small probe passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_filter_is_decided_for_big_and_small_packets() {
    use netfault::{Outcome, Proto};
    let lab = common::up(&fixture("single-node.toml")).await;
    nft_rule(&lab, "node1", "forward", "meta length '>' 1000 drop");
    let big = netfault::diagnose::explain(
        &lab,
        "pod-a",
        "ext",
        Proto::Udp,
        Outcome::Timeout,
        Some(1200),
    )
    .await
    .unwrap();
    println!("{big}");
    assert_eq!(
        (big.culprit.host.as_str(), big.culprit.component),
        ("node1", Component::Filter)
    );
    let small =
        netfault::diagnose::explain(&lab, "pod-a", "ext", Proto::Udp, Outcome::Timeout, None)
            .await
            .unwrap();
    assert!(
        !small.forward.iter().any(|h| h.text.contains("may drop it")),
        "the rule is decided for small packets too: {small}"
    );
}

/// Class 7 with the shipped probes: node2's underlay drops big vxlan packets (a filter on
/// length, as a misconfigured switch would). Pings are full-size (the sender's path MTU, DF),
/// so the pairs across the overlay break for ICMP while small TCP and UDP probes still pass,
/// without the case asking for big probes; node2's filter is the culprit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_packets_dropped_by_the_underlay_are_found_by_the_shipped_probes() {
    use netfault::Proto;
    let lab = common::up(&fixture("two-node-vxlan.toml")).await;
    let base = healthy(&lab).await;
    nft_rule(
        &lab,
        "node2",
        "input",
        "udp dport 8472 meta length '>' 1400 drop",
    );
    let ds = diagnoses(&lab, &base).await;
    assert_eq!(
        blamed(&ds, "pod-a", "pod-c"),
        vec![("node2".to_string(), Component::Filter)]
    );
    for d in &ds {
        assert_eq!(d.protocols, vec![Proto::Icmp], "small probes pass: {d}");
        assert_eq!(
            (d.culprit.host.as_str(), d.culprit.component),
            ("node2", Component::Filter),
            "{d}"
        );
    }
}

/// Path MTU discovery is no fault: node1's pods and their bridge at MTU 1500 over the 1450
/// overlay, with node1's "fragmentation needed" reaching them. A full-size ping learns the
/// smaller MTU and passes, as any real client would; the lab stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_answers_fragmentation_needed_stays_healthy() {
    let lab = common::up(&fixture("two-node-vxlan.toml")).await;
    sh(&lab, "pod-a", "ip link set eth0 mtu 1500");
    sh(&lab, "node1", "ip link set veth-pod-a mtu 1500");
    sh(&lab, "pod-b", "ip link set eth0 mtu 1500");
    sh(&lab, "node1", "ip link set veth-pod-b mtu 1500");
    let m = netfault::probe::matrix(&lab).await.unwrap();
    assert!(m.mismatches().is_empty(), "{:#?}", m.render_mismatches());
}

/// A route off the plan that still leads where the plan's does (node1 sends pod-c's traffic
/// to node2 over the underlay instead of the overlay) is no culprit once the packet is back on
/// the plan's path: a filter on node2 dropping pod-a's packets for pod-c is blamed, not
/// node1's route. Without the filter the lab is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_off_the_plan_that_rejoins_it_is_no_culprit() {
    let lab = common::up(&fixture("two-node-vxlan.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(
        &lab,
        "node1",
        "ip route replace 10.244.2.2/32 via 203.0.113.2 dev eth0",
    );
    assert!(
        diagnoses(&lab, &base).await.is_empty(),
        "the underlay carries it too"
    );
    nft_rule(
        &lab,
        "node2",
        "forward",
        "ip saddr 10.244.1.2 ip daddr 10.244.2.2 drop",
    );
    let ds = diagnoses(&lab, &base).await;
    assert_eq!(
        blamed(&ds, "pod-a", "pod-c"),
        vec![("node2".to_string(), Component::Filter)]
    );
}
