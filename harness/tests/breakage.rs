//! Breakages done by hand (plain netlink, sysctl and nft, not the Fault API), each explained from
//! the live lab: the right culprit host and component for every broken pair, and every other
//! healthy pair still healthy.

mod common;
use common::fixture;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use netfault::diagnose::evidence::recorded_matrix;
use netfault::diagnose::{explain_changes, explain_pairs, Component};
use netfault::netns::write_sysctl;
use netfault::nl;
use netfault::{Lab, Outcome, Proto};

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

async fn index(lab: &Lab, host: &str, ifname: &str) -> u32 {
    lab.host(host).unwrap().index(ifname).await.unwrap()
}

fn sysctl(lab: &Lab, host: &str, key: &'static str, value: &'static str) {
    lab.host(host)
        .unwrap()
        .ns
        .run(move || write_sysctl(key, value).unwrap())
        .unwrap();
}

fn nft(lab: &Lab, host: &str, script: &'static str) {
    lab.host(host)
        .unwrap()
        .ns
        .run(move || {
            let out = std::process::Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(script.as_bytes())?;
                    c.wait_with_output()
                });
            assert!(out.unwrap().status.success(), "nft: {script}");
        })
        .unwrap();
}

/// Breaks a fresh lab with `breakage`, probes, and checks that exactly the `want` pairs broke
/// (`from`, `to`, protocol or all three, culprit host, component).
fn check<F, Fut>(breakage: F, want: &[(&str, &str, Option<Proto>, &str, Component)])
where
    F: FnOnce(Arc<common::Checked>) -> Fut,
    Fut: Future<Output = ()>,
{
    netfault::runtime().block_on(async {
        let lab = Arc::new(common::up(&fixture("single-node.toml")).await);
        let healthy = netfault::probe::matrix(&lab).await.unwrap();
        assert!(
            healthy.mismatches().is_empty(),
            "{:?}",
            healthy.render_mismatches()
        );
        breakage(lab.clone()).await;
        let lab = &*lab;
        let m = netfault::probe::matrix(lab).await.unwrap();
        let broken: Vec<(String, String, Proto, Outcome)> = m
            .cells
            .iter()
            .filter(|c| c.expected == Some(Outcome::Reachable) && c.observed != Outcome::Reachable)
            .map(|c| (c.from.clone(), c.to.clone(), c.proto, c.observed))
            .collect();
        let got: BTreeSet<(String, String, Proto)> = broken
            .iter()
            .map(|b| (b.0.clone(), b.1.clone(), b.2))
            .collect();
        let mut expected = BTreeSet::new();
        for (f, t, p, ..) in want {
            for proto in p.map(|p| vec![p]).unwrap_or(Proto::ALL.to_vec()) {
                expected.insert((f.to_string(), t.to_string(), proto));
            }
        }
        assert_eq!(got, expected, "broken pairs\n{}", m.render());
        // Pairs that must stay unreachable stay so.
        assert!(
            m.mismatches()
                .iter()
                .all(|c| c.expected == Some(Outcome::Reachable)),
            "{:?}",
            m.render_mismatches()
        );
        let ds = explain_pairs(lab, &broken, None).await.unwrap();
        for (f, t, p, host, component) in want {
            for proto in p.map(|p| vec![p]).unwrap_or(Proto::ALL.to_vec()) {
                let d = ds
                    .iter()
                    .find(|d| d.from == *f && d.to == *t && d.protocols.contains(&proto))
                    .unwrap_or_else(|| panic!("no diagnosis for {f} → {t} {proto}"));
                assert_eq!(
                    (d.culprit.host.as_str(), d.culprit.component),
                    (*host, *component),
                    "{f} → {t} {proto}:\n{d}"
                );
            }
        }
    });
}

const ALL: Option<Proto> = None;
use Component::*;

#[test]
fn pod_default_route_deleted() {
    check(
        |lab| async move {
            let h = lab.host("pod-a").unwrap().handle();
            nl::del_route(h, net("0.0.0.0/0"), Some(ip("10.244.1.1")), None)
                .await
                .unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "pod-a", Route),
            ("pod-a", "node1", ALL, "pod-a", Route),
        ],
    );
}

#[test]
fn pod_address_removed() {
    check(
        |lab| async move {
            let ix = index(&lab, "pod-a", "eth0").await;
            nl::del_address(
                lab.host("pod-a").unwrap().handle(),
                ix,
                net("10.244.1.2/24"),
            )
            .await
            .unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "pod-a", Address),
            ("pod-a", "node1", ALL, "pod-a", Address),
            ("pod-a", "pod-b", ALL, "pod-a", Address),
            ("pod-b", "pod-a", ALL, "pod-a", Address),
            ("node1", "pod-a", ALL, "pod-a", Address),
        ],
    );
}

#[test]
fn pod_eth0_down() {
    check(
        |lab| async move {
            let ix = index(&lab, "pod-a", "eth0").await;
            nl::set_up(lab.host("pod-a").unwrap().handle(), ix, false)
                .await
                .unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "pod-a", Link),
            ("pod-a", "node1", ALL, "pod-a", Link),
            ("pod-a", "pod-b", ALL, "pod-a", Link),
            ("pod-b", "pod-a", ALL, "pod-a", Link),
            ("node1", "pod-a", ALL, "pod-a", Link),
        ],
    );
}

#[test]
fn host_veth_down() {
    check(
        |lab| async move {
            let ix = index(&lab, "node1", "veth-pod-b").await;
            nl::set_up(lab.host("node1").unwrap().handle(), ix, false)
                .await
                .unwrap();
        },
        &[
            ("pod-b", "ext", ALL, "node1", Link),
            ("pod-b", "node1", ALL, "node1", Link),
            ("pod-b", "pod-a", ALL, "node1", Link),
            ("pod-a", "pod-b", ALL, "node1", Link),
            ("node1", "pod-b", ALL, "node1", Link),
        ],
    );
}

#[test]
fn host_veth_detached_from_the_bridge() {
    check(
        |lab| async move {
            let ix = index(&lab, "node1", "veth-pod-b").await;
            nl::set_master(lab.host("node1").unwrap().handle(), ix, None)
                .await
                .unwrap();
        },
        &[
            ("pod-b", "ext", ALL, "node1", Bridge),
            ("pod-b", "node1", ALL, "node1", Bridge),
            ("pod-b", "pod-a", ALL, "node1", Bridge),
            ("pod-a", "pod-b", ALL, "node1", Bridge),
            ("node1", "pod-b", ALL, "node1", Bridge),
        ],
    );
}

#[test]
fn bridge_down() {
    check(
        |lab| async move {
            let ix = index(&lab, "node1", "cni0").await;
            nl::set_up(lab.host("node1").unwrap().handle(), ix, false)
                .await
                .unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "node1", Link),
            ("pod-b", "ext", ALL, "node1", Link),
            ("pod-a", "node1", ALL, "node1", Link),
            ("pod-b", "node1", ALL, "node1", Link),
            ("pod-a", "pod-b", ALL, "node1", Link),
            ("pod-b", "pod-a", ALL, "node1", Link),
            ("node1", "pod-a", ALL, "node1", Link),
            ("node1", "pod-b", ALL, "node1", Link),
        ],
    );
}

#[test]
fn bridge_gateway_address_removed() {
    check(
        |lab| async move {
            let ix = index(&lab, "node1", "cni0").await;
            nl::del_address(
                lab.host("node1").unwrap().handle(),
                ix,
                net("10.244.1.1/24"),
            )
            .await
            .unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "node1", Address),
            ("pod-b", "ext", ALL, "node1", Address),
            ("pod-a", "node1", ALL, "node1", Address),
            ("pod-b", "node1", ALL, "node1", Address),
            ("node1", "pod-a", ALL, "node1", Address),
            ("node1", "pod-b", ALL, "node1", Address),
        ],
    );
}

#[test]
fn ip_forward_off() {
    check(
        |lab| async move { sysctl(&lab, "node1", "net.ipv4.ip_forward", "0") },
        &[
            ("pod-a", "ext", ALL, "node1", Forwarding),
            ("pod-b", "ext", ALL, "node1", Forwarding),
        ],
    );
}

#[test]
fn forwarding_off_on_cni0_only() {
    check(
        |lab| async move { sysctl(&lab, "node1", "net.ipv4.conf.cni0.forwarding", "0") },
        &[
            ("pod-a", "ext", ALL, "node1", Forwarding),
            ("pod-b", "ext", ALL, "node1", Forwarding),
        ],
    );
}

#[test]
fn masquerade_deleted_by_hand() {
    check(
        |lab| async move { nft(&lab, "node1", "flush chain ip nat postrouting\n") },
        &[
            ("pod-a", "ext", ALL, "node1", Masquerade),
            ("pod-b", "ext", ALL, "node1", Masquerade),
        ],
    );
}

#[test]
fn forward_drop_in_a_second_table() {
    check(
        |lab| async move {
            nft(
                &lab,
                "node1",
                "table inet allow {\n chain forward_all {\n  type filter hook forward priority -10; policy accept;\n  accept\n }\n}\n\
                 table inet extra {\n chain forward_pods {\n  type filter hook forward priority 0; policy accept;\n  \
                 ip saddr 10.244.1.0/24 oifname \"eth0\" counter drop\n }\n}\n",
            )
        },
        &[
            ("pod-a", "ext", ALL, "node1", Filter),
            ("pod-b", "ext", ALL, "node1", Filter),
        ],
    );
}

#[test]
fn nft_reject_of_one_port() {
    check(
        |lab| async move {
            nft(
                &lab,
                "node1",
                "table inet guard {\n chain input_guard {\n  type filter hook input priority 0; policy accept;\n  \
                 ip saddr 10.244.1.0/24 tcp dport 80 reject\n }\n}\n",
            )
        },
        &[
            ("pod-a", "node1", Some(Proto::Tcp), "node1", Filter),
            ("pod-b", "node1", Some(Proto::Tcp), "node1", Filter),
        ],
    );
}

#[test]
fn uplink_down() {
    check(
        |lab| async move {
            let ix = index(&lab, "node1", "eth0").await;
            nl::set_up(lab.host("node1").unwrap().handle(), ix, false)
                .await
                .unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "node1", Link),
            ("pod-b", "ext", ALL, "node1", Link),
            ("node1", "ext", ALL, "node1", Link),
            ("ext", "node1", ALL, "node1", Link),
        ],
    );
}

#[test]
fn ext_route_changed() {
    check(
        |lab| async move {
            let h = lab.host("ext").unwrap().handle();
            let ix = index(&lab, "ext", "eth0").await;
            nl::add_route(h, net("203.0.113.1/32"), Some(ip("203.0.113.99")), ix)
                .await
                .unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "ext", Route),
            ("pod-b", "ext", ALL, "ext", Route),
            ("node1", "ext", ALL, "ext", Route),
            ("ext", "node1", ALL, "ext", Route),
        ],
    );
}

#[test]
fn ext_address_removed() {
    check(
        |lab| async move {
            let ix = index(&lab, "ext", "eth0").await;
            nl::del_address(
                lab.host("ext").unwrap().handle(),
                ix,
                net("203.0.113.10/24"),
            )
            .await
            .unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "ext", Address),
            ("pod-b", "ext", ALL, "ext", Address),
            ("node1", "ext", ALL, "ext", Address),
            ("ext", "node1", ALL, "ext", Address),
        ],
    );
}

#[test]
fn blackhole_route_on_the_node() {
    check(
        |lab| async move {
            let h = lab.host("node1").unwrap().handle();
            let msg = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(ip("203.0.113.10"), 32)
                .kind(rtnetlink::packet_route::route::RouteType::BlackHole)
                .build();
            h.route().add(msg).execute().await.unwrap();
        },
        &[
            ("pod-a", "ext", ALL, "node1", Route),
            ("pod-b", "ext", ALL, "node1", Route),
            ("node1", "ext", ALL, "node1", Route),
            ("ext", "node1", ALL, "node1", Route),
        ],
    );
}

#[test]
fn wrong_permanent_neighbour_for_pod_b_on_node1() {
    check(
        |lab| async move {
            let ix = index(&lab, "node1", "cni0").await;
            nl::add_permanent_neighbour(
                lab.host("node1").unwrap().handle(),
                ix,
                ip("10.244.1.3"),
                &[0x02, 0, 0, 0, 0, 0x99],
            )
            .await
            .unwrap();
        },
        &[
            ("node1", "pod-b", ALL, "node1", Neighbour),
            ("pod-b", "node1", ALL, "node1", Neighbour),
            ("pod-b", "ext", ALL, "node1", Neighbour),
        ],
    );
}

/// A pod MTU above the path's: large packets from the pod vanish at the node (small ones pass).
#[test]
fn pod_mtu_raised_above_the_path() {
    netfault::runtime().block_on(async {
        let lab = common::up(&fixture("single-node.toml")).await;
        let mut spec =
            netfault::probe::ProbeSpec::new("pod-a", "ext", Proto::Icmp, ip("203.0.113.10"), None);
        spec.size = Some(3000);
        let t = std::time::Duration::from_millis(1000);
        let before = netfault::probe::run(&lab, std::slice::from_ref(&spec), t)
            .await
            .unwrap();
        assert_eq!(
            before[0].outcome,
            Outcome::Unreachable,
            "healthy: too big for pod-a's own mtu: {:?}",
            before[0]
        );
        let ix = index(&lab, "pod-a", "eth0").await;
        nl::set_mtu(lab.host("pod-a").unwrap().handle(), ix, 9000)
            .await
            .unwrap();
        let after = netfault::probe::run(&lab, std::slice::from_ref(&spec), t)
            .await
            .unwrap();
        // Dropped at the node's veth: the pod's kernel learns it only as a transmit drop.
        assert_eq!(after[0].outcome, Outcome::Timeout, "{:?}", after[0]);
        // The matrix finds it unasked: pings from a pod beyond its node are full-size (pod-a's
        // 9000), TCP and UDP small.
        let m = netfault::probe::matrix(&lab).await.unwrap();
        let broken: Vec<(&str, &str, Proto)> = m
            .mismatches()
            .iter()
            .map(|c| (c.from.as_str(), c.to.as_str(), c.proto))
            .collect();
        assert_eq!(
            broken,
            [("pod-a", "ext", Proto::Icmp)],
            "only pod-a's full-size pings break: {:?}",
            m.render_mismatches()
        );
        let d = netfault::diagnose::explain(
            &lab,
            "pod-a",
            "ext",
            Proto::Icmp,
            Outcome::Timeout,
            Some(3000),
        )
        .await
        .unwrap();
        assert_eq!(
            (d.culprit.host.as_str(), d.culprit.component),
            ("pod-a", Mtu),
            "{d}"
        );
        assert!(d.culprit.summary.contains("mtu 9000"), "{d}");
    });
}

/// Evidence from the kernel backs the walk: counters, nft trace, drop reasons — all recorded
/// in the round that observed the broken pair.
#[test]
fn evidence_supports_the_verdicts() {
    netfault::runtime().block_on(async {
        let lab = common::up(&fixture("single-node.toml")).await;
        let base = netfault::probe::matrix(&lab).await.unwrap();
        let explained = async |lab: &netfault::Lab| {
            let reached = |f: &str, t: &str, p| base.observed(f, t, p) == Some(Outcome::Reachable);
            let (m, rec) = recorded_matrix(lab, reached, &Default::default()).await.unwrap();
            let ds = explain_changes(lab, &m, &base, rec).await.unwrap();
            ds.into_iter().find(|d| d.from == "pod-a" && d.to == "ext").expect("pod-a → ext broke")
        };
        sysctl(&lab, "node1", "net.ipv4.ip_forward", "0");
        let d = explained(&lab).await;
        let ev: Vec<String> = d.evidence.iter().map(|e| format!("{} {} {}", e.host, e.kind, e.text)).collect();
        assert!(ev.contains(&"node1 counter IpInAddrErrors increased".to_string()), "{ev:#?}");
        sysctl(&lab, "node1", "net.ipv4.ip_forward", "1");

        // A rule the walk cannot evaluate (a packet-type match): the nft trace decides.
        nft(
            &lab,
            "node1",
            "table ip odd {\n chain forward_odd {\n  type filter hook forward priority 0; policy accept;\n  meta pkttype host ip saddr 10.244.1.2 drop\n }\n}\n",
        );
        let broken = vec![("pod-a".to_string(), "ext".to_string(), Proto::Icmp, Outcome::Timeout)];
        let walk_only = explain_pairs(&lab, &broken, None).await.unwrap();
        assert_eq!(walk_only[0].culprit.component, Unexplained, "{}", walk_only[0]);
        let d = explained(&lab).await;
        assert_eq!((d.culprit.host.as_str(), d.culprit.component), ("node1", Filter), "{d}");
        assert!(d.evidence.iter().any(|e| e.kind == "nft-trace" && e.text.contains("table ip odd chain forward_odd")), "{d}");
        assert!(!d.notes.is_empty());
        // The kernel's drop of the probe itself, where tracefs can be used here (as root of
        // the machine).
        if std::path::Path::new("/sys/kernel/tracing").exists() && netfault::privilege::can_pin() {
            assert!(d.evidence.iter().any(|e| e.kind == "seen-dropped" && e.text.contains("NETFILTER_DROP")), "{d}");
        }
    });
}
