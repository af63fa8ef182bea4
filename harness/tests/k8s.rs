//! The Kubernetes layer on a real lab: Services through kube-proxy's rules, NodePorts, the
//! NetworkPolicy's verdicts and cluster DNS, all probed, against the fixture's truth table.

use netfault::{load_fixture, Lab, Outcome, Proto};

fn fixture() -> netfault::Topology {
    load_fixture(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/k8s.toml"))
        .unwrap()
}

#[tokio::test]
async fn k8s_fixture_is_healthy() {
    let t = fixture();
    let lab = Lab::up(&t).await.unwrap();
    let m = netfault::probe::matrix(&lab).await.unwrap();
    println!("{}", m.render());
    assert!(m.mismatches().is_empty(), "{:#?}", m.render_mismatches());
    // The truth table is not trivially "all reachable": the policy and NodePorts decide.
    assert_eq!(
        m.observed("pod-a", "svc/api", Proto::Tcp),
        Some(Outcome::Reachable)
    );
    assert_eq!(
        m.observed("pod-b", "svc/api", Proto::Tcp),
        Some(Outcome::Timeout)
    );
    assert_eq!(
        m.observed("pod-b", "pod-c", Proto::Icmp),
        Some(Outcome::Timeout)
    );
    assert_eq!(
        m.observed("ext", "nodeport/web@node2", Proto::Tcp),
        Some(Outcome::Reachable)
    );
    assert_eq!(
        m.observed("pod-a", "dns/web", Proto::Dns),
        Some(Outcome::Reachable)
    );
    assert_eq!(
        m.observed("pod-b", "svc/web", Proto::Tcp),
        Some(Outcome::Reachable),
        "hairpin"
    );
}
