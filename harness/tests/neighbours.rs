//! Neighbours learned by ARP (`[cluster] neighbours = "dynamic"`), and why a next hop never
//! answers ARP: each lab is broken by hand (ip, sysctl, nft), and a setting that stops nothing
//! blames nothing.

mod common;
use common::{blamed, diagnoses, fixture, sh};

use netfault::diagnose::Component;
use std::time::{Duration, Instant};

use netfault::probe::ProbeSpec;
use netfault::topology::{Family, Neighbours, Topology};
use netfault::{Outcome, Proto};

fn dynamic(name: &str) -> Topology {
    let mut t = fixture(name);
    t.cluster.neighbours = Neighbours::Dynamic;
    t
}

/// A dynamic lab writes no permanent entry and still reaches every pair the fixture expects:
/// the entries the probes leave behind were learned by ARP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_lab_resolves_by_arp_and_is_healthy() {
    let lab = common::up(&dynamic("single-node.toml")).await;
    let m = netfault::probe::matrix(&lab).await.unwrap();
    assert!(m.mismatches().is_empty(), "{:#?}", m.render_mismatches());
    for host in ["pod-a", "node1", "ext"] {
        let ns = netfault::nl::neighbours(lab.host(host).unwrap().handle())
            .await
            .unwrap();
        assert!(!ns.is_empty(), "{host} learned nobody");
        assert!(ns.iter().all(|n| n.state != "permanent"), "{host}: {ns:?}");
    }
}

/// Class 5 on the shipped (static) lab: pod-a's entry for its gateway is gone and the bridge
/// answers no ARP (arp_ignore 8). node1's bridge is the culprit, not the route or the filter.
/// arp_ignore 1 (answer only for the receiving interface's addresses) stops nothing: the
/// gateway is cni0's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_ignores_arp_is_blamed_and_a_harmless_level_is_not() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(&lab, "node1", "sysctl -qw net.ipv4.conf.cni0.arp_ignore=1");
    sh(&lab, "pod-a", "ip neigh del 10.244.1.1 dev eth0");
    assert!(
        diagnoses(&lab, &base).await.is_empty(),
        "arp_ignore 1 stops nothing"
    );
    sh(&lab, "node1", "sysctl -qw net.ipv4.conf.cni0.arp_ignore=8");
    sh(&lab, "pod-a", "ip neigh flush dev eth0 to 10.244.1.1");
    let ds = diagnoses(&lab, &base).await;
    let node1 = vec![("node1".to_string(), Component::Neighbour)];
    assert_eq!(blamed(&ds, "pod-a", "ext"), node1);
    assert_eq!(blamed(&ds, "pod-a", "node1"), node1);
    // node1 → pod-a too: pod-a's replies go to its gateway.
    assert_eq!(blamed(&ds, "node1", "pod-a"), node1);
    assert!(
        ds.iter()
            .all(|d| (d.from == "pod-a" || d.to == "pod-a") && d.culprit.host == "node1"),
        "only pod-a lost its entry"
    );
    let d = ds.iter().find(|d| d.to == "ext").unwrap();
    assert!(
        d.culprit.summary.contains("cni0 has arp_ignore 8"),
        "{}",
        d.culprit.summary
    );
}

/// An arp-family nft chain on pod-b dropping every ARP packet it sends (so it neither answers
/// nor teaches anyone its address by asking): every pair towards pod-b blames pod-b's filter,
/// in a lab whose neighbours are all learned by ARP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arp_filter_dropping_what_a_pod_sends_is_blamed() {
    let lab = common::up(&dynamic("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(
        &lab,
        "pod-b",
        "ip neigh flush all && nft add table arp byhand && \
         nft 'add chain arp byhand out { type filter hook output priority 0; }' && \
         nft add rule arp byhand out arp saddr ip 10.244.1.3 drop",
    );
    sh(&lab, "pod-a", "ip neigh flush all");
    sh(&lab, "node1", "ip neigh flush all");
    let ds = diagnoses(&lab, &base).await;
    let pod_b = vec![("pod-b".to_string(), Component::Filter)];
    assert_eq!(blamed(&ds, "pod-a", "pod-b"), pod_b);
    assert_eq!(blamed(&ds, "node1", "pod-b"), pod_b);
    assert!(
        ds.iter().all(|d| d.culprit.host == "pod-b"),
        "only pod-b drops"
    );
}

/// ext's uplink with ARP off (NOARP): ext neither asks nor answers, so node1 and ext lose each
/// other both ways, and ext's device is the culprit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_arp_off_is_blamed() {
    let lab = common::up(&dynamic("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    sh(
        &lab,
        "ext",
        "ip link set eth0 arp off && ip neigh flush all",
    );
    sh(&lab, "node1", "ip neigh flush dev eth0");
    let ds = diagnoses(&lab, &base).await;
    let ext = vec![("ext".to_string(), Component::Neighbour)];
    assert_eq!(blamed(&ds, "node1", "ext"), ext);
    assert_eq!(blamed(&ds, "ext", "node1"), ext);
}

/// A resolution that fails answers its queued packets with ICMP host unreachable three seconds
/// after it began. A run started within those seconds, from the same source port, must not take
/// the previous run's error for its own: both runs of a UDP flow to a pod that answers no ARP
/// time out, as a fresh client does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_does_not_inherit_the_previous_runs_failed_resolution() {
    let lab = common::up(&fixture("single-node.toml")).await;
    sh(&lab, "pod-b", "sysctl -qw net.ipv4.conf.all.arp_ignore=8");
    sh(&lab, "pod-a", "ip neigh del 10.244.1.3 dev eth0");
    let t = lab.topology();
    let dst = t.host("pod-b").unwrap().address_of(Family::V4).unwrap();
    let mut spec = ProbeSpec::new("pod-a", "pod-b", Proto::Udp, dst, t.probe.port(Proto::Udp));
    spec.sport = Some(40123);
    let specs = [spec];
    let timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let first = netfault::probe::run(&lab, &specs, timeout).await.unwrap();
    // The second run's window (2.5 s to 3.5 s) holds the first resolution's failure (3 s).
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(t0.elapsed())).await;
    let second = netfault::probe::run(&lab, &specs, timeout).await.unwrap();
    for (run, obs) in [("first", &first[0]), ("second", &second[0])] {
        assert_eq!(obs.outcome, Outcome::Timeout, "{run} run: {:?}", obs.detail);
    }
}
