//! Each fault on a real lab: inject changes what it should, heal restores the exact prior state.

mod common;
use common::fixture;

use std::time::Duration;

use netfault::diagnose::{capture, diff};
use netfault::fault::kinds;
use netfault::fault::Fault;
use netfault::{Lab, Outcome, Proto};

/// Injects, checks the state diff and the outcomes that must change, heals, checks the lab is
/// back exactly as before.
async fn round_trip(
    lab: &Lab,
    fault: Fault,
    expect_diff: &[&str],
    broken: &[(&str, &str, Outcome)],
) {
    let before = capture(lab).await.unwrap();
    let base = netfault::probe::matrix(lab).await.unwrap();
    assert!(
        base.mismatches().is_empty(),
        "{:?}",
        base.render_mismatches()
    );

    let guard = fault.inject(lab).await.unwrap();
    let during = capture(lab).await.unwrap();
    let d = diff(&before, &during);
    for want in expect_diff {
        assert!(
            d.iter().any(|l| l == want),
            "{fault}: missing diff line {want:?} in {d:#?}"
        );
    }
    let m = netfault::probe::matrix(lab).await.unwrap();
    for (from, to, outcome) in broken {
        for p in [Proto::Icmp, Proto::Tcp, Proto::Udp] {
            assert_eq!(
                m.observed(from, to, p),
                Some(*outcome),
                "{fault}: {from} -> {to} {p}\n{}",
                m.render()
            );
        }
    }
    guard.heal(lab).await.unwrap();
    let after = capture(lab).await.unwrap();
    assert_eq!(
        diff(&before, &after),
        Vec::<String>::new(),
        "{fault}: heal left changes"
    );
    let again = netfault::probe::matrix(lab).await.unwrap();
    assert_eq!(
        again.outcomes(),
        base.outcomes(),
        "{fault}: matrix not restored\n{}",
        again.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_veth_round_trip() {
    let lab = common::up(&fixture("single-node.toml")).await;
    round_trip(
        &lab,
        Fault::DeleteVeth(kinds::DeleteVeth { pod: "pod-a".into() }),
        &[
            "node1: link veth-pod-a deleted (was veth up (oper up) mtu 1500 master cni0 peer pod-a:eth0)",
            "pod-a: route default via 10.244.1.1 dev eth0 removed",
        ],
        &[
            ("pod-a", "ext", Outcome::Unreachable),
            ("pod-b", "pod-a", Outcome::Timeout),
            ("node1", "pod-a", Outcome::Timeout),
            ("pod-b", "ext", Outcome::Reachable),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn veth_down_round_trip() {
    let lab = common::up(&fixture("single-node.toml")).await;
    round_trip(
        &lab,
        Fault::VethDown(kinds::VethDown {
            pod: "pod-b".into(),
        }),
        &["node1: link veth-pod-b admin up → down, oper up → down"],
        &[
            ("pod-b", "ext", Outcome::Timeout),
            ("pod-a", "pod-b", Outcome::Timeout),
            ("pod-a", "ext", Outcome::Reachable),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_ip_forward_round_trip() {
    let lab = common::up(&fixture("single-node.toml")).await;
    round_trip(
        &lab,
        Fault::DisableIpForward(kinds::DisableIpForward {
            node: "node1".into(),
        }),
        &["node1: sysctl net.ipv4.ip_forward 1 → 0"],
        &[
            ("pod-a", "ext", Outcome::Timeout),
            ("pod-a", "pod-b", Outcome::Reachable),
            ("pod-a", "node1", Outcome::Reachable),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_masquerade_round_trip() {
    let lab = common::up(&fixture("single-node.toml")).await;
    round_trip(
        &lab,
        Fault::DeleteMasquerade(kinds::DeleteMasquerade { node: "node1".into() }),
        &[
            "node1: nft table ip nat chain postrouting: rule deleted: ip saddr 10.244.1.0/24 ip daddr != 10.244.1.0/24 oifname \"eth0\" masquerade comment \"netfault: masquerade pods of node1 leaving eth0\"",
        ],
        &[("pod-a", "ext", Outcome::Timeout), ("pod-b", "ext", Outcome::Timeout), ("pod-a", "pod-b", Outcome::Reachable)],
    )
    .await;
}

/// Rules around the masquerade rule keep their order after heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_masquerade_restores_rule_positions() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let node = lab.host("node1").unwrap();
    node.ns
        .run(|| {
            let st = std::process::Command::new("nft")
                .args(["insert rule ip nat postrouting counter comment \"first\" ; add rule ip nat postrouting oifname \"eth0\" masquerade comment \"second masq\" ; add rule ip nat postrouting counter comment \"last\""])
                .status()
                .unwrap();
            assert!(st.success());
        })
        .unwrap();
    let chain = |s: &netfault::diagnose::LabState| {
        s.host("node1").unwrap().nft["table ip nat"]["chain postrouting"].clone()
    };
    let before = capture(&lab).await.unwrap();
    assert_eq!(chain(&before).len(), 5, "{:?}", chain(&before));
    let g = Fault::DeleteMasquerade(kinds::DeleteMasquerade {
        node: "node1".into(),
    })
    .inject(&lab)
    .await
    .unwrap();
    let during = capture(&lab).await.unwrap();
    assert_eq!(
        chain(&during).len(),
        3,
        "both masquerade rules deleted: {:?}",
        chain(&during)
    );
    g.heal(&lab).await.unwrap();
    let after = capture(&lab).await.unwrap();
    assert_eq!(chain(&after), chain(&before));
}

/// iptables-nft writes masquerade as an xt target; the fault finds and restores it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_masquerade_finds_iptables_rules() {
    if std::process::Command::new("iptables-nft")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("iptables-nft is missing: ci/run installs the iptables package");
    }
    // The fixture with node1's own masquerade off: iptables-nft adds it below instead.
    let mut topo = fixture("single-node.toml");
    let mut nodes = 0;
    for h in &mut topo.hosts {
        if let netfault::topology::Role::Node(n) = &mut h.role {
            n.masquerade = false;
            nodes += 1;
        }
    }
    assert_eq!(nodes, 1, "single-node.toml has one node");
    let lab = common::up(&topo).await;
    let node = lab.host("node1").unwrap();
    node.ns
        .run(|| {
            let st = std::process::Command::new("iptables-nft")
                .args([
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-s",
                    "10.244.1.0/24",
                    "!",
                    "-d",
                    "10.244.1.0/24",
                    "-o",
                    "eth0",
                    "-j",
                    "MASQUERADE",
                ])
                .status()
                .unwrap();
            assert!(st.success());
        })
        .unwrap();
    let m = netfault::probe::matrix(&lab).await.unwrap();
    assert_eq!(
        m.cell("pod-a", "ext", Proto::Tcp).unwrap().seen_as,
        Some("203.0.113.1".parse().unwrap())
    );
    let before = capture(&lab).await.unwrap();
    let g = Fault::DeleteMasquerade(kinds::DeleteMasquerade {
        node: "node1".into(),
    })
    .inject(&lab)
    .await
    .unwrap();
    let m = netfault::probe::matrix(&lab).await.unwrap();
    assert_eq!(
        m.observed("pod-a", "ext", Proto::Tcp),
        Some(Outcome::Timeout)
    );
    g.heal(&lab).await.unwrap();
    let after = capture(&lab).await.unwrap();
    assert_eq!(diff(&before, &after), Vec::<String>::new());
    let m = netfault::probe::matrix(&lab).await.unwrap();
    assert_eq!(
        m.observed("pod-a", "ext", Proto::Tcp),
        Some(Outcome::Reachable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_that_do_not_apply_say_so() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let g = Fault::DeleteMasquerade(kinds::DeleteMasquerade {
        node: "node1".into(),
    })
    .inject(&lab)
    .await
    .unwrap();
    let e = Fault::DeleteMasquerade(kinds::DeleteMasquerade {
        node: "node1".into(),
    })
    .inject(&lab)
    .await
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        "not applicable: node1 has no masquerade rule to delete"
    );
    g.heal(&lab).await.unwrap();
    let e = Fault::DeleteVeth(kinds::DeleteVeth { pod: "ext".into() })
        .inject(&lab)
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("ext is an external, not a pod"),
        "{e}"
    );
    let _ = Duration::from_secs(0);
}
