//! A 100-pod lab on one bridge, fully probed, on this machine's default sysctls: every pair
//! reachable (the neighbour table's machine-wide limit, 1024 entries, would collapse dynamic ARP
//! here; netfault's permanent entries do not count towards it). Not timed: ci/bench times it.

mod common;

use netfault::topology::{parse_fixture, Source};
use netfault::{Outcome, Proto};

/// Their probes may take up to 3 s: what these tests check is that every pair is reachable,
/// not how fast, and a debug build answering 10,000 probes at once on two busy cores (the
/// kernel still freeing an earlier test's namespaces) needs more than the fixtures' 1 s.
///
/// The big labs take turns: one's up, probe round and teardown (the kernel frees 1,000
/// namespaces in background work) load both cores enough to time out the other's probes.
static ONE_BIG_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_100_pod_lab_is_fully_reachable_on_default_sysctls() {
    let _turn = ONE_BIG_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let text = "description = \"100 pods\"\n\n[node.node1]\npod_cidr = \"10.244.0.0/22\"\nuplink = \"203.0.113.1/24\"\npods = 100\n\n[probe]\nprotocols = [\"icmp\", \"tcp\"]\ntimeout_ms = 3000\n";
    let t = parse_fixture(&Source::new("scale-100.toml", text)).unwrap();
    assert_eq!(t.pods().count(), 100);
    assert_eq!(
        t.host("pod-100").unwrap().as_pod().unwrap().ip.to_string(),
        "10.244.0.101"
    );
    // The machine-wide limit is what it is; the lab does not touch it. (Only the machine's own
    // namespace shows it: a rootless run is in a namespace of its own.)
    if let Ok(thresh) = std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3") {
        assert!(
            thresh.trim().parse::<usize>().unwrap() < 100 * 99,
            "a default-sized table ({thresh})"
        );
    }
    netfault::runtime().block_on(async {
        let lab = common::up(&t).await;
        let m = netfault::probe::matrix(&lab).await.unwrap();
        let pods: Vec<&str> = t.pods().map(|(p, _)| p).collect();
        assert_eq!(
            all_reachable(&m, &pods, &[Proto::Icmp, Proto::Tcp]),
            100 * 99 * 2
        );
        // No thread per pod outlives setup.
        let threads = std::fs::read_dir("/proc/thread-self/..")
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(threads < 40, "{threads} threads");
    });
}

/// The same 100 pods dual-stack: every pair reachable over both families (ICMPv6 and TCP over
/// IPv6 beside ICMP and TCP), on default sysctls; IPv6's NDP entries are permanent too.
#[test]
fn a_dual_stack_100_pod_lab_is_fully_reachable_over_both_families() {
    let _turn = ONE_BIG_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let text = "description = \"100 dual-stack pods\"\n\n[node.node1]\npod_cidr = [\"10.244.0.0/22\", \"fd00:10:244::/64\"]\nuplink = [\"203.0.113.1/24\", \"2001:db8::1/64\"]\npods = 100\n\n[probe]\nprotocols = [\"icmp\", \"tcp\"]\ntimeout_ms = 3000\n";
    let t = parse_fixture(&Source::new("scale-100-dual.toml", text)).unwrap();
    assert_eq!(
        t.host("pod-100").unwrap().address6().unwrap().to_string(),
        "fd00:10:244::65"
    );
    netfault::runtime().block_on(async {
        let lab = common::up(&t).await;
        let m = netfault::probe::matrix(&lab).await.unwrap();
        let pods: Vec<&str> = t.pods().map(|(p, _)| p).collect();
        let protos = [Proto::Icmp, Proto::Tcp, Proto::Icmp6, Proto::Tcp6];
        assert_eq!(all_reachable(&m, &pods, &protos), 100 * 99 * 4);
    });
}

/// A lab whose neighbours are left to ARP (real CNI plugins) gets a warning past the machine's
/// table; netfault's own wiring, with permanent entries, needs none.
#[test]
fn labs_that_would_overflow_the_neighbour_table_are_warned_about() {
    let own = parse_fixture(&Source::new(
        "own.toml",
        "[node.node1]\npod_cidr = \"10.244.0.0/22\"\nuplink = \"203.0.113.1/24\"\npods = 200\n",
    ))
    .unwrap();
    assert_eq!(netfault::lab::plan::dynamic_neighbours(&own), 0);
    assert!(netfault::lab::plan::neighbour_warning(&own).is_none());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/cni-60.toml");
    let cni = parse_fixture(&Source::new(
        path,
        "[cni]\nconflist = \"cni/bridge.conflist\"\n[node.node1]\npod_cidr = \"10.244.0.0/22\"\nuplink = \"203.0.113.1/24\"\npods = 60\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(netfault::lab::plan::dynamic_neighbours(&cni), 60 * 60 + 60);
    let w = netfault::lab::plan::neighbour_warning(&cni).expect("a warning");
    assert!(w.contains("gc_thresh3"), "{w}");
}

/// 1,000 pods on one bridge (the bridge takes 1,023 ports): the lab comes up (its neighbour
/// batches once overflowed the netlink socket at 300 pods: "No buffer space available"), the
/// matrix is bounded and says so, every probe of it is as expected (the bridge knows every
/// pod's port before the first probe, or N² flooded copies drop probes), and nothing is left.
#[test]
fn a_1000_pod_lab_comes_up_with_a_bounded_matrix_that_passes() {
    let _turn = ONE_BIG_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let text = "description = \"1000 pods\"\n\n[node.node1]\npod_cidr = \"10.244.0.0/20\"\nuplink = \"203.0.113.1/24\"\npods = 1000\n\n[external.ext]\nuplink = \"203.0.113.10/24\"\n\n[probe]\nprotocols = [\"icmp\", \"tcp\"]\ntimeout_ms = 3000\n";
    let t = parse_fixture(&Source::new("scale-1000.toml", text)).unwrap();
    let c = t.coverage();
    assert!(c.is_bounded(), "{}", c.describe());
    assert_eq!(c.all, 1002 * 1001);
    netfault::runtime().block_on(async {
        let lab = common::up(&t).await;
        let mut witness = netfault::leakcheck::Witness::new().await.unwrap();
        for h in lab.hosts() {
            witness.watch(&h.ns).await.unwrap();
        }
        let m = netfault::probe::matrix(&lab).await.unwrap();
        assert_eq!(m.cells.len(), c.pairs.len() * 2);
        assert!(
            m.mismatches().is_empty(),
            "{} not as expected, first: {:?}",
            m.mismatches().len(),
            &m.render_mismatches()[..5.min(m.mismatches().len())]
        );
        // Every pod both sent and was probed, pod to pod included.
        for (pod, _) in t.pods() {
            assert!(m
                .cells
                .iter()
                .any(|x| x.from == pod && x.to.starts_with("pod-")));
            assert!(m
                .cells
                .iter()
                .any(|x| x.to == pod && x.from.starts_with("pod-")));
        }
        let text = m.render();
        assert!(text.contains("bounded matrix:"), "{text}");
        assert!(text.contains("0 not as expected"), "{text}");
        drop(lab);
        let left = witness
            .wait_gone(std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(left, 0, "namespaces left of {}", witness.watched());
    });
}

/// Asserts every ordered pair of `pods` reachable over each of `protos`, and the matrix
/// without mismatches; returns how many cells it checked.
fn all_reachable(m: &netfault::matrix::Matrix, pods: &[&str], protos: &[Proto]) -> usize {
    let mut pairs = 0;
    for a in pods {
        for b in pods.iter().filter(|b| *b != a) {
            for &p in protos {
                assert_eq!(
                    m.observed(a, b, p),
                    Some(Outcome::Reachable),
                    "{a} → {b} {p}: {:?}",
                    m.cell(a, b, p).and_then(|c| c.detail.clone())
                );
                pairs += 1;
            }
        }
    }
    assert!(
        m.mismatches().is_empty(),
        "{:?}",
        &m.render_mismatches()[..5.min(m.mismatches().len())]
    );
    pairs
}
