//! The path walk names the right host and component, whether netfault or a person broke the lab.

mod common;
use common::fixture;

use netfault::diagnose::Component;
use netfault::fault::kinds;
use netfault::fault::Fault;
use netfault::Lab;

async fn culprits(
    lab: &Lab,
    base: &netfault::matrix::Matrix,
) -> Vec<(String, String, String, Component)> {
    common::diagnoses(lab, base)
        .await
        .into_iter()
        .map(|d| (d.from, d.to, d.culprit.host, d.culprit.component))
        .collect()
}

fn has(
    cs: &[(String, String, String, Component)],
    from: &str,
    to: &str,
    host: &str,
    c: Component,
) -> bool {
    cs.iter()
        .any(|x| x.0 == from && x.1 == to && x.2 == host && x.3 == c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_explained() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    type Want = Vec<(&'static str, &'static str, &'static str, Component)>;
    let cases: Vec<(Fault, Want)> = vec![
        (
            Fault::DeleteMasquerade(kinds::DeleteMasquerade {
                node: "node1".into(),
            }),
            vec![
                ("pod-a", "ext", "node1", Component::Masquerade),
                ("pod-b", "ext", "node1", Component::Masquerade),
            ],
        ),
        (
            Fault::DisableIpForward(kinds::DisableIpForward {
                node: "node1".into(),
            }),
            vec![("pod-a", "ext", "node1", Component::Forwarding)],
        ),
        (
            Fault::DeleteVeth(kinds::DeleteVeth {
                pod: "pod-a".into(),
            }),
            vec![
                ("pod-a", "ext", "pod-a", Component::Link),
                ("pod-b", "pod-a", "node1", Component::Link),
                ("node1", "pod-a", "node1", Component::Link),
            ],
        ),
        (
            Fault::VethDown(kinds::VethDown {
                pod: "pod-a".into(),
            }),
            vec![
                ("pod-b", "pod-a", "node1", Component::Link),
                ("pod-a", "ext", "node1", Component::Link),
            ],
        ),
    ];
    for (fault, want) in cases {
        let g = fault.inject(&lab).await.unwrap();
        let cs = culprits(&lab, &base).await;
        for (f, t, h, c) in want {
            assert!(
                has(&cs, f, t, h, c),
                "{fault}: want {f} → {t}: {h} {c}, got {cs:#?}"
            );
        }
        assert!(
            cs.iter().all(|x| x.3 != Component::Unexplained),
            "{fault}: {cs:#?}"
        );
        g.heal(&lab).await.unwrap();
    }
}

/// The same explanations come out when the lab is broken by hand with the usual tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakage_by_hand_is_explained_the_same_way() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    let sh = |cmd: &'static str| common::sh(&lab, "node1", cmd);
    sh("sysctl -qw net.ipv4.ip_forward=0");
    let cs = culprits(&lab, &base).await;
    assert!(
        has(&cs, "pod-a", "ext", "node1", Component::Forwarding),
        "{cs:#?}"
    );
    sh("sysctl -qw net.ipv4.ip_forward=1");

    sh("nft flush chain ip nat postrouting");
    let cs = culprits(&lab, &base).await;
    assert!(
        has(&cs, "pod-b", "ext", "node1", Component::Masquerade),
        "{cs:#?}"
    );

    sh("ip link set veth-pod-b down");
    let cs = culprits(&lab, &base).await;
    assert!(
        has(&cs, "pod-a", "pod-b", "node1", Component::Link),
        "{cs:#?}"
    );
    sh("ip link set veth-pod-b nomaster up");
    let cs = culprits(&lab, &base).await;
    assert!(
        has(&cs, "pod-a", "pod-b", "node1", Component::Bridge),
        "{cs:#?}"
    );
}

/// A rule with a counter, added by hand: the diagnosis quotes it without its live counts (they
/// differ run to run), in the walk's hops, its culprit and the nft trace's evidence alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_quoted_without_their_live_counters() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = common::healthy(&lab).await;
    common::nft_rule(&lab, "node1", "forward", "ip saddr 10.244.1.2 counter drop");
    let ds = common::diagnoses(&lab, &base).await;
    let d = ds
        .iter()
        .find(|d| d.from == "pod-a" && d.to == "ext")
        .unwrap();
    assert!(
        d.evidence.iter().any(|e| e.kind == "nft-trace"),
        "the trace saw the drop: {d}"
    );
    let text = d.to_string();
    assert!(text.contains("ip saddr 10.244.1.2 counter drop"), "{text}");
    assert!(!text.contains("packets"), "{text}");
}

/// Rejects are decided, not left "may drop it": iptables' REJECT target (an xt target inside
/// iptables-nft's rules) blames node1's filter for every protocol; nft's `reject with tcp
/// reset` (whose implied `meta l4proto tcp` `nft -j` leaves out) rejects TCP only, and the
/// walk must not blame it for ICMP or UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_are_decided_and_a_tcp_reset_spares_other_protocols() {
    use netfault::{Outcome, Proto};
    let lab = common::up(&fixture("single-node.toml")).await;
    common::sh(
        &lab,
        "node1",
        "iptables -A FORWARD -d 203.0.113.10 -j REJECT",
    );
    for p in [Proto::Icmp, Proto::Tcp, Proto::Udp] {
        let d = netfault::diagnose::explain(&lab, "pod-a", "ext", p, Outcome::Refused, None)
            .await
            .unwrap();
        assert_eq!(
            (d.culprit.host.as_str(), d.culprit.component),
            ("node1", Component::Filter),
            "{d}"
        );
    }
    let lab = common::up(&fixture("single-node.toml")).await;
    let base = common::healthy(&lab).await;
    common::nft_rule(
        &lab,
        "node1",
        "forward",
        "meta l4proto tcp reject with tcp reset",
    );
    let ds = common::diagnoses(&lab, &base).await;
    assert!(!ds.is_empty());
    for d in &ds {
        assert_eq!(d.protocols, vec![Proto::Tcp], "{d}");
        assert_eq!(d.outcome, Outcome::Refused, "{d}");
        assert_eq!(
            (d.culprit.host.as_str(), d.culprit.component),
            ("node1", Component::Filter),
            "{d}"
        );
    }
}

/// A shaper a single probe passes in time, that dropped packets of a burst: where every other
/// hop passes it is the culprit, saying how many it dropped; before it dropped any, nothing is
/// (which of a round's parallel probes a slow shaper drops varies, so this is how a broken pair
/// behind one is explained).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shaper_that_dropped_a_burst_is_blamed_where_nothing_else_is() {
    use netfault::{Outcome, Proto};
    let lab = common::up(&fixture("single-node.toml")).await;
    let f = Fault::parse_spec("bandwidth:host=node1,interface=cni0,rate=1mbit").unwrap();
    let g = f.inject(&lab).await.unwrap();
    let ask =
        || netfault::diagnose::explain(&lab, "node1", "pod-a", Proto::Icmp, Outcome::Timeout, None);
    let before = ask().await.unwrap();
    assert_eq!(before.culprit.component, Component::Unexplained, "{before}");
    // 2,000 datagrams of 1,400 bytes at once: far more than a 1 Mbit/s shaper queues.
    let burst = || -> std::io::Result<()> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        for _ in 0..2000 {
            let _ = s.send_to(&[0u8; 1400], "10.244.1.2:9");
        }
        Ok(())
    };
    lab.host("node1").unwrap().ns.run(burst).unwrap().unwrap();
    let after = ask().await.unwrap();
    assert_eq!(
        (after.culprit.host.as_str(), after.culprit.component),
        ("node1", Component::Link),
        "{after}"
    );
    assert!(after.culprit.summary.contains("dropped"), "{after}");
    g.heal(&lab).await.unwrap();
}
