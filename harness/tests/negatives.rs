//! Negatives decided by evidence: a probe whose packet the kernel is seen dropping ends as the
//! timeout it would have become, long before its timeout, with what the kernel showed; a lab
//! broken by hand (sysctl, nft, a deleted route) is decided the same way. Rootless (no tracefs)
//! only nft's drop verdicts of the probe's own flow are seen: those decide as well; any other
//! drop is waited out, with the same outcome.

mod common;
use common::fixture;

use std::time::{Duration, Instant};

use netfault::netns::write_sysctl;
use netfault::probe::{run, ProbeSpec, SEEN_DROPPED};
use netfault::topology::Family;
use netfault::{Lab, Outcome, Proto};

const TIMEOUT: Duration = Duration::from_secs(3);

fn nft(lab: &Lab, host: &str, script: &'static str) {
    lab.host(host)
        .unwrap()
        .ns
        .run(move || {
            use std::io::Write;
            let mut c = std::process::Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()?;
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait()
        })
        .unwrap()
        .map(|st| assert!(st.success(), "nft -f failed"))
        .unwrap();
}

/// Probes pod-a → `to` over ICMP, TCP and UDP; returns each outcome, its detail and the time
/// the whole round took.
async fn probe(lab: &Lab, to: &str) -> (Vec<(Outcome, Option<String>)>, Duration) {
    probe_from(lab, "pod-a", to).await
}

async fn probe_from(lab: &Lab, from: &str, to: &str) -> (Vec<(Outcome, Option<String>)>, Duration) {
    probe_family(lab, from, to, Family::V4).await
}

/// ICMP, TCP and UDP probes of one family, from `from` to `to`, with the round's time.
async fn probe_family(
    lab: &Lab,
    from: &str,
    to: &str,
    family: Family,
) -> (Vec<(Outcome, Option<String>)>, Duration) {
    let t = lab.topology();
    let dst = t.host(to).unwrap().address_of(family).unwrap();
    let protos = match family {
        Family::V4 => [Proto::Icmp, Proto::Tcp, Proto::Udp],
        Family::V6 => [Proto::Icmp6, Proto::Tcp6, Proto::Udp6],
    };
    let specs: Vec<ProbeSpec> = protos
        .into_iter()
        .map(|p| ProbeSpec::new(from, to, p, dst, t.probe.port(p)))
        .collect();
    let t0 = Instant::now();
    let obs = run(lab, &specs, TIMEOUT).await.unwrap();
    (
        obs.into_iter().map(|o| (o.outcome, o.detail)).collect(),
        t0.elapsed(),
    )
}

/// Every probe timed out; where drops can be seen, each was decided by a drop within a fraction
/// of its timeout, and says which: `what` as root; `nft` rootless, where an nft rule drops the
/// probes (None: rootless cannot see the drop, and waits).
fn assert_decided(
    seen: &(Vec<(Outcome, Option<String>)>, Duration),
    what: &str,
    nft: Option<&str>,
) {
    let what = if netfault::privilege::can_pin() {
        what
    } else if let Some(nft) = nft {
        nft
    } else {
        assert!(
            seen.0.iter().all(|(o, _)| *o == Outcome::Timeout),
            "{seen:?}"
        );
        assert!(seen.1 >= TIMEOUT, "{what}: rootless waits its timeout");
        return;
    };
    for (o, detail) in &seen.0 {
        assert_eq!(*o, Outcome::Timeout, "{what}: {seen:?}");
        let d = detail.as_deref().unwrap_or_default();
        assert!(d.starts_with(SEEN_DROPPED), "{what}: {seen:?}");
        assert!(d.contains(what), "{what}: {seen:?}");
    }
    assert!(seen.1 < TIMEOUT / 4, "{what}: took {:?}", seen.1);
}

/// What a rootless probe's detail shows of the by-hand guard's drop.
const GUARD_DROP: Option<&str> = Some("table inet byhand chain forward_guard dropped 10.244.1.2");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_drop_by_hand_is_decided_by_the_drop() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let (healthy, _) = probe(&lab, "pod-b").await;
    assert!(
        healthy.iter().all(|(o, _)| *o == Outcome::Reachable),
        "{healthy:?}"
    );
    nft(
        &lab,
        "node1",
        "table inet byhand {\n chain forward_guard {\n  type filter hook forward priority 0; policy accept;\n  ip daddr 203.0.113.10 drop\n }\n}\n",
    );
    assert_decided(&probe(&lab, "ext").await, "NETFILTER_DROP", GUARD_DROP);
    // pod-to-pod crosses the bridge, not the forward hook: still reachable, and no faster
    // decision can have turned it into a timeout.
    let (still, _) = probe(&lab, "pod-b").await;
    assert!(
        still.iter().all(|(o, _)| *o == Outcome::Reachable),
        "{still:?}"
    );
}

fn ip(lab: &Lab, host: &str, args: &'static [&'static str]) {
    let st = lab
        .host(host)
        .unwrap()
        .ns
        .run(move || std::process::Command::new("ip").args(args).status())
        .unwrap()
        .unwrap();
    assert!(st.success(), "ip {args:?} failed");
}

/// pod-b's port taken off the bridge by hand: node1's frames to pod-b's MAC are flooded to
/// pod-a, which drops them as not its own (OTHERHOST, no trusted reason alone); no copy
/// survives, and that decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_flooded_to_hosts_it_was_not_for_is_decided_once_every_copy_died() {
    let lab = common::up(&fixture("single-node.toml")).await;
    let (healthy, _) = probe_from(&lab, "node1", "pod-b").await;
    assert!(
        healthy.iter().all(|(o, _)| *o == Outcome::Reachable),
        "{healthy:?}"
    );
    ip(&lab, "node1", &["link", "set", "veth-pod-b", "nomaster"]);
    assert_decided(
        &probe_from(&lab, "node1", "pod-b").await,
        "every copy",
        None,
    );
    // A copy that reaches its host keeps the probe alive: pod-a still answers.
    let (still, _) = probe_from(&lab, "node1", "pod-a").await;
    assert!(
        still.iter().all(|(o, _)| *o == Outcome::Reachable),
        "{still:?}"
    );
}

/// pod-a's veth set down on the node by hand: pod-a's own device has no carrier, and its queue
/// drops every packet before it leaves; the sender's device is asked, and that decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_device_has_no_carrier_is_decided_by_it() {
    let lab = common::up(&fixture("single-node.toml")).await;
    ip(&lab, "node1", &["link", "set", "veth-pod-a", "down"]);
    assert_decided(&probe(&lab, "ext").await, "no carrier", None);
}

/// The gateway address taken off the bridge by hand: ext's masqueraded replies reach node1 and
/// find no route back to the pod. The UDP echo reply is sent to the translated source, and is
/// still the probe's: its datagram carries the probe's tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_translated_source_is_watched_too() {
    let lab = common::up(&fixture("single-node.toml")).await;
    ip(&lab, "node1", &["addr", "flush", "dev", "cni0"]);
    assert_decided(&probe(&lab, "ext").await, "", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_off_by_hand_is_decided_by_the_drop() {
    let lab = common::up(&fixture("single-node.toml")).await;
    lab.host("node1")
        .unwrap()
        .ns
        .run(|| write_sysctl("net.ipv4.ip_forward", "0").unwrap())
        .unwrap();
    assert_decided(&probe(&lab, "ext").await, "IP_INADDRERRORS", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_with_no_route_back_is_decided_by_the_failed_lookup() {
    let lab = common::up(&fixture("single-node.toml")).await;
    // Without masquerade, ext sees pod addresses it has no route to: the replies die at ext.
    lab.host("node1")
        .unwrap()
        .ns
        .run(|| {
            std::process::Command::new("nft")
                .args(["flush", "ruleset"])
                .status()
        })
        .unwrap()
        .unwrap();
    assert_decided(&probe(&lab, "ext").await, "10.244.1.2", None);
}

/// A DNS lookup whose query a filter drops (the classic "pods cannot resolve") is decided by the
/// drop as well, not by its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_dns_query_is_decided_by_the_drop() {
    let lab = common::up(&fixture("k8s.toml")).await;
    let specs: Vec<ProbeSpec> = netfault::probe::target_probes(lab.topology())
        .into_iter()
        .filter(|s| s.from == "pod-a" && s.proto == Proto::Dns)
        .collect();
    assert!(!specs.is_empty(), "the fixture's pods look names up");
    let healthy = run(&lab, &specs, TIMEOUT).await.unwrap();
    assert!(
        healthy.iter().all(|o| o.outcome == Outcome::Reachable),
        "{healthy:?}"
    );
    // After kube-proxy's DNAT the query heads for the DNS pod's port 5353.
    nft(
        &lab,
        "node1",
        "table inet byhand {\n chain forward_guard {\n  type filter hook forward priority -10; policy accept;\n  udp dport 5353 drop\n }\n}\n",
    );
    let t0 = Instant::now();
    let obs = run(&lab, &specs, TIMEOUT).await.unwrap();
    let seen = (
        obs.into_iter().map(|o| (o.outcome, o.detail)).collect(),
        t0.elapsed(),
    );
    assert_decided(&seen, "NETFILTER_DROP", GUARD_DROP);
}

/// pod-a → ext over IPv6 (ICMPv6, TCP, UDP), with the round's time.
async fn probe6(lab: &Lab) -> (Vec<(Outcome, Option<String>)>, Duration) {
    probe_family(lab, "pod-a", "ext", Family::V6).await
}

/// IPv6 is watched as IPv4 is: an ip6 filter's drop, forwarding turned off and a reply with
/// no route back (ip6 masquerade gone) are each decided by what the kernel showed, the last by
/// the failed IPv6 route lookup at ext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_negatives_are_decided_by_evidence_too() {
    let lab = common::up(&fixture("dual-stack.toml")).await;
    assert!(probe6(&lab)
        .await
        .0
        .iter()
        .all(|(o, _)| *o == Outcome::Reachable));
    nft(
        &lab,
        "node1",
        "table ip6 byhand {\n chain forward_guard {\n  type filter hook forward priority 0; policy accept;\n  ip6 daddr 2001:db8::10 drop\n }\n}\n",
    );
    assert_decided(&probe6(&lab).await, "NETFILTER_DROP", None);
    nft(&lab, "node1", "delete table ip6 byhand\n");
    lab.host("node1")
        .unwrap()
        .ns
        .run(|| write_sysctl("net.ipv6.conf.all.forwarding", "0").unwrap())
        .unwrap();
    let off = probe6(&lab).await;
    lab.host("node1")
        .unwrap()
        .ns
        .run(|| write_sysctl("net.ipv6.conf.all.forwarding", "1").unwrap())
        .unwrap();
    assert_decided(&off, "", None);
    nft(&lab, "node1", "flush table ip6 nat\n");
    assert_decided(&probe6(&lab).await, "fd00:10:244:1::2", None);
}
