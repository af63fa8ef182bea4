//! `netfault explore` and the bugs it found: each combination below once failed a check (a heal
//! that left the lab changed, a wrong culprit); each now runs as a whole round and heals.

use netfault::explore::{run_round, Ran, RoundRun};
use netfault::fault::Fault;
use netfault::topology::Topology;

mod common;
use common::fixture;

async fn round(t: &Topology, faults: &[&str]) -> RoundRun {
    let faults: Vec<Fault> = faults
        .iter()
        .map(|f| Fault::parse_spec(f).unwrap())
        .collect();
    let mut lab = common::up(t).await;
    run_round(&mut lab, t, &faults).await
}

/// The round ran whole and healed, and every culprit is one its faults may be blamed as.
fn healed_and_right(r: &RoundRun, t: &Topology) {
    assert_eq!(r.ran, Ran::Whole, "{:?}", r.faults);
    let v = netfault::explore::judge(r, t, &|_| None);
    assert!(v.wrong.is_empty(), "{:#?}", v.wrong);
}

/// A pod's port re-attached to its bridge (or its veth re-created) joins with hairpin off: the
/// heal puts it back on, or the pod cannot reach itself through its own Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattached_or_recreated_port_gets_its_hairpin_back() {
    let t = fixture("k8s.toml");
    for f in ["detach-veth:pod=pod-b", "delete-veth:pod=pod-a"] {
        healed_and_right(&round(&t, &[f]).await, &t);
    }
}

/// A route deleted before its device was deleted and re-created goes back on the new device
/// (its old index is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_goes_back_on_its_recreated_device() {
    let t = fixture("single-node.toml");
    let r = round(&t, &["delete-pod-route:pod=pod-b", "delete-veth:pod=pod-b"]).await;
    healed_and_right(&r, &t);
}

/// Healing a Kubernetes fault renders kube-proxy's tables again, as its re-sync does: the
/// masquerade rule and the Service rule another fault deleted are back then, and that fault's
/// own heal must not add them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_a_resync_brought_back_is_not_added_twice() {
    let t = fixture("k8s.toml");
    for faults in [
        ["delete-masquerade:node=node2", "no-endpoints:service=web"],
        [
            "delete-service-rule:node=node2,service=echo",
            "wrong-endpoint-port:service=web,port=4790",
        ],
    ] {
        healed_and_right(&round(&t, &faults).await, &t);
    }
}

/// UDP flows sent while kube-proxy's rules were gone met no translation, and their conntrack
/// entries would keep them untranslated after the heal: the heal deletes them, as kube-proxy
/// does for a Service that gains endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_untranslated_while_rules_were_gone_are_forgotten() {
    let t = fixture("k8s.toml");
    let faults = [
        "forward-drop-policy:node=node1",
        "flush-kube-proxy:node=node1",
        "link-down:host=node1,interface=cni0",
    ];
    healed_and_right(&round(&t, &faults).await, &t);
}

/// A bridge or uplink down in a dual-stack lab: its permanent NDP entries come back with it, and
/// the IPv6 walk blames the link (not a route the link took with it, nor the host whose side
/// only lost carrier).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_down_in_a_dual_stack_lab_is_blamed_and_healed_in_both_families() {
    let t = fixture("dual-stack.toml");
    for f in [
        "bridge-down:node=node1",
        "link-down:host=ext,interface=eth0",
    ] {
        let r = round(&t, &[f]).await;
        healed_and_right(&r, &t);
        assert!(!r.diagnoses.is_empty(), "{f} breaks pairs");
    }
}

/// hairpin-off where ports have hairpin off already does not apply (its heal would turn it on);
/// packet-loss at 100% drops everything (nft's `numgen mod 100` stops at 99).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_that_once_could_not_heal_or_go_in() {
    let t = fixture("single-node.toml");
    let r = round(&t, &["hairpin-off:pod=pod-a"]).await;
    assert!(
        matches!(&r.ran, Ran::NotInjected(m) if m.contains("hairpin off already")),
        "{:?}",
        r.ran
    );
    let r = round(&t, &["packet-loss:host=pod-a,interface=eth0,percent=100"]).await;
    healed_and_right(&r, &t);
    assert!(
        r.broken.iter().any(|(from, _)| from == "pod-a"),
        "{:?}",
        r.broken
    );
}

/// The command: the same seed draws the same rounds; the summary counts them; a healthy
/// exploration exits 0.
#[test]
fn the_same_seed_explores_the_same_rounds() {
    let fixture = common::fixture_path("single-node.toml");
    let args = [
        "explore", "--seed", "5", "--rounds", "3", "--jobs", "2", "--json",
    ];
    let run = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_netfault"));
        common::json_of(cmd.args(args).arg(&fixture), 0)
    };
    let (a, b) = (run(), run());
    assert_eq!(a["summary"]["rounds"], 3);
    let faults = |x: &serde_json::Value| -> Vec<serde_json::Value> {
        x["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["faults"].clone())
            .collect()
    };
    assert_eq!(faults(&a), faults(&b));
    assert!(
        a["faults_offered"].as_u64().unwrap() > 50,
        "{}",
        a["faults_offered"]
    );
}

/// Heals that need another heal first (a route goes back once the link another fault set down
/// is up again), a veth re-created while its peer side was down, a connected route the kernel
/// already put back: each round heals whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heals_that_depend_on_each_other_all_land() {
    let t = fixture("single-node.toml");
    for faults in [
        &[
            "link-down:host=node1,interface=veth-pod-a",
            "delete-pod-route:pod=pod-a",
        ][..],
        &["veth-down:pod=pod-b", "remove-pod-address:pod=pod-b"],
        &[
            "link-down:host=node1,interface=veth-pod-b",
            "delete-veth:pod=pod-b",
        ],
        &[
            "route-via:host=node1,to=10.244.1.0/24,via=203.0.113.1",
            "bridge-down:node=node1",
        ],
        &[
            "delete-route:host=pod-a,to=10.244.1.0/24",
            "remove-pod-address:pod=pod-a",
        ],
    ] {
        let r = round(&t, faults).await;
        assert_eq!(r.ran, Ran::Whole, "{faults:?}");
    }
}

/// With forwarding off the kernel answers a forwarded packet "host unreachable" even where it
/// has no route either: forwarding is blamed, not an unreachable route. And a routed pod's
/// veth comes back with its link-local route before the default route via it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_off_is_blamed_over_a_route_gone_too_and_routed_veths_heal() {
    let t = fixture("two-node-hostgw.toml");
    let r = round(
        &t,
        &["bridge-down:node=node2", "disable-ip-forward:node=node2"],
    )
    .await;
    healed_and_right(&r, &t);
    let t = fixture("two-node-routed.toml");
    healed_and_right(&round(&t, &["delete-veth:pod=pod-c"]).await, &t);
}

/// A dual-stack pod's veth deleted and re-created gets its IPv6 side back too: addresses,
/// routes, NDP entries (the heal restored IPv4 only); meanwhile the IPv6 walk blames the
/// missing link, not the address that went with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_dual_stack_veth_gets_its_ipv6_back() {
    let t = fixture("dual-stack.toml");
    let r = round(&t, &["delete-veth:pod=pod-a"]).await;
    healed_and_right(&r, &t);
}

/// A pod's eth0 set down takes its IPv6 default route with it; with other IPv6 faults in the
/// round the heal must still put that route back (the capture of what vanishes had IPv4 routes
/// only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_routes_a_link_took_down_come_back() {
    let t = fixture("dual-stack.toml");
    let faults = [
        "link-down:host=pod-a,interface=eth0",
        "disable-ipv6-forward:node=node1",
        "delete-masquerade6:node=node1",
    ];
    healed_and_right(&round(&t, &faults).await, &t);
}

/// An endpoint pod that lost its planned address is blamed on that address, not on kube-proxy
/// as a stale endpoint: the fixture says whose address the endpoint is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_pod_without_its_address_is_blamed_on_the_address() {
    let t = fixture("k8s.toml");
    for f in ["remove-pod-address:pod=dns", "remove-pod-address:pod=pod-c"] {
        let r = round(&t, &[f]).await;
        healed_and_right(&r, &t);
        assert!(!r.diagnoses.is_empty(), "{f} breaks pairs");
    }
}

/// A pod's veth set down on the node side is blamed at the node, in both families (the IPv6
/// walk blamed the pod's carrier-less eth0 where IPv6 packets arrive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_veth_down_on_the_node_side_is_blamed_there_for_ipv6_too() {
    let t = fixture("dual-stack.toml");
    let r = round(&t, &["link-down:host=node1,interface=veth-pod-b"]).await;
    healed_and_right(&r, &t);
    assert!(!r.diagnoses.is_empty());
}

/// A duplicate IPv6 address, an MTU IPv6 cannot run on and strict reverse-path filtering, all
/// at once: no culprit outside them (node1's NDP entry was blamed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_ipv6_faults_are_not_blamed_on_a_neighbour() {
    let t = fixture("dual-stack.toml");
    let faults = [
        "duplicate-address6:pod=pod-a,of=pod-b",
        "mtu-below-ipv6-minimum:pod=pod-b",
        "strict-rp-filter6:node=node1",
    ];
    healed_and_right(&round(&t, &faults).await, &t);
}

/// A pair already stopped by a policy that changes outcome when its client loses a route is
/// blamed on the route, not on the policy drop that was there before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_pair_is_blamed_on_the_change_not_on_a_policy_before_it() {
    let t = fixture("k8s.toml");
    healed_and_right(&round(&t, &["delete-pod-route:pod=dns"]).await, &t);
}

/// An IPv6 route via the host's own address is refused by the kernel (IPv4 takes it): the
/// fault does not apply, and the route it would replace is still there (it was deleted first
/// and never put back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_route_via_the_hosts_own_address_does_not_apply_and_leaves_the_route() {
    let t = fixture("dual-stack.toml");
    for f in ["route-via6:host=node1,to=fd00:10:244:1::/64,via=2001:db8::1"] {
        let mut lab = common::up(&t).await;
        let r = run_round(&mut lab, &t, &[Fault::parse_spec(f).unwrap()]).await;
        assert!(
            matches!(&r.ran, Ran::NotInjected(m) if m.contains("own address")),
            "{f}: {:?}",
            r.ran
        );
        // The next round on the same lab starts healthy.
        let next = run_round(&mut lab, &t, &[]).await;
        assert_eq!(next.ran, Ran::Whole, "{f}");
    }
}

/// An MTU below IPv6's minimum drops the pod's IPv6 addresses; another fault raising the MTU
/// again does not bring them back: the missing address is what the walk sees, and may blame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_address_lost_to_a_small_mtu_is_blamed_on_the_address() {
    let t = fixture("dual-stack.toml");
    let faults = [
        "mtu-below-ipv6-minimum:pod=pod-b",
        "pod-mtu:node=node1,mtu=1500",
    ];
    let r = round(&t, &faults).await;
    healed_and_right(&r, &t);
    assert!(!r.diagnoses.is_empty());
}

/// A client pod without its address cannot send to a Service: blamed on the address (its route
/// went with it), as a walk from a sender asks first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_client_without_its_address_is_blamed_on_the_address() {
    let t = fixture("k8s.toml");
    let r = round(&t, &["remove-pod-address:pod=pod-a"]).await;
    healed_and_right(&r, &t);
    assert!(r.diagnoses.iter().any(|d| d.to.starts_with("svc/")));
}

/// A route the lab's plan does not have makes pods reachable from outside: the pairs that
/// became reachable are blamed on that route (they were unexplained, and the fault missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_reachable_by_an_unplanned_route_is_blamed_on_it() {
    let t = fixture("dual-stack.toml");
    for f in [
        "route-via:host=ext,to=10.244.1.0/24,via=203.0.113.1",
        "route-via6:host=ext,to=fd00:10:244:1::2/128,via=2001:db8::1",
    ] {
        reached_by_an_unplanned_route_at_ext(&t, f).await;
    }
    // In a lab real CNI plugins wired, ext is still netfault's own: its route is judged.
    let t = fixture("cni-bridge.toml");
    let f = "route-via:host=ext,to=10.244.1.0/24,via=203.0.113.1";
    reached_by_an_unplanned_route_at_ext(&t, f).await;
}

/// `f` makes pairs reachable from ext; each is blamed on ext's route.
async fn reached_by_an_unplanned_route_at_ext(t: &Topology, f: &str) {
    let r = round(t, &[f]).await;
    healed_and_right(&r, t);
    assert!(!r.diagnoses.is_empty(), "{f} changes pairs");
    for d in &r.diagnoses {
        assert_eq!(
            (d.culprit.host.as_str(), d.culprit.component.as_str()),
            ("ext", "route"),
            "{f}: {d:?}"
        );
    }
}

/// Without its masquerade a pod's packets leave untranslated; when ext routes pod addresses
/// back they reach, seen as the pod's own address where the plan has the node's: the node that
/// sent them out unmasqueraded is named (the masquerade fault was missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_address_seen_outside_is_blamed_on_the_missing_masquerade() {
    let t = fixture("single-node.toml");
    let faults = [
        "delete-masquerade:node=node1",
        "route-via:host=ext,to=10.244.1.0/24,via=203.0.113.1",
    ];
    let r = round(&t, &faults).await;
    healed_and_right(&r, &t);
    let d = r
        .diagnoses
        .iter()
        .find(|d| d.from == "pod-a" && d.to == "ext")
        .expect("pod-a → ext is seen as pod-a");
    assert_eq!(
        (d.culprit.host.as_str(), d.culprit.component.as_str()),
        ("node1", "masquerade"),
        "{d:?}"
    );
}
