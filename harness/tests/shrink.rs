//! Shrinking, tested on a diagnosis bug planted on purpose (`NETFAULT_TEST_PLANTED_BUG`, see
//! `diagnose/planted.rs`): a node's masquerade is blamed as its bridge whenever one of its pods
//! has lost its route. This binary holds only this test: the switch is process-wide.

use netfault::explore::{replay, Failure, Options, Target};
use netfault::fault::Fault;

mod common;

/// A round with the planted pair, the masquerade and pod-b's route, among two faults that
/// have nothing to do with it: the shrunk round keeps exactly the planted pair, with pod-b made
/// pod-a (the first pod the fixture offers) and the case written for review fails the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_bug_shrinks_to_its_minimal_fault_set() {
    std::env::set_var("NETFAULT_TEST_PLANTED_BUG", "masquerade-as-bridge");
    let target = Target::open(&common::fixture_path("single-node.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        seed: 1,
        rounds: Some(1),
        budget: None,
        max_faults: 4,
        jobs: 1,
        write_cases: Some(dir.path().to_path_buf()),
    };
    let faults = [
        "strict-rp-filter:node=node1",
        "delete-masquerade:node=node1",
        "nft-reject:node=node1,from=ext,proto=tcp,port=80",
        "delete-pod-route:pod=pod-b",
    ];
    let faults: Vec<Fault> = faults
        .iter()
        .map(|f| Fault::parse_spec(f).unwrap())
        .collect();
    let rec = replay(&target, &opts, faults).await;
    let v = rec
        .verdict
        .as_ref()
        .unwrap_or_else(|| panic!("judged: {rec:#?}"));
    assert!(!v.wrong.is_empty(), "the planted bug shows: {rec:#?}");
    let shrunk = rec.shrunk.as_ref().expect("shrunk");
    assert_eq!(
        shrunk.failure,
        Failure::Wrong {
            host: "node1".into(),
            component: netfault::diagnose::Component::Bridge
        }
    );
    assert_eq!(
        shrunk.faults,
        ["delete-masquerade:node=node1", "delete-pod-route:pod=pod-a"]
    );
    let case = std::fs::read_to_string(shrunk.case.as_ref().expect("written")).unwrap();
    assert!(
        case.contains("culprits = [\"node1 bridge\", \"pod-a route\"]   # observed: review"),
        "{case}"
    );
    assert!(case.contains("type = \"delete-pod-route\""), "{case}");
    // The written case loads as any case does.
    netfault::case::load_case(shrunk.case.as_ref().unwrap()).unwrap();
}
