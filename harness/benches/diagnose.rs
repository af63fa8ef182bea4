//! The cost of diagnosing one broken pair beyond its probe, on the single-node lab: the path walk
//! alone, and what recording kernel evidence adds to the broken round (the recorded matrix's
//! time minus a plain matrix's, medians of the same run); what judging the walk against the
//! lab's plan costs per pair (its intended path); and what full-size pings cost a healthy matrix.
//!
//!     cargo run --release -p netfault --example bench_diagnose -- [ROUNDS]

use std::time::{Duration, Instant};

use netfault::diagnose::evidence::recorded_matrix;
use netfault::diagnose::explain;
use netfault::{Outcome, Proto};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // Paths are the repository's, as `ci/bench` gives them.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).expect("repository root");
    let rounds: usize = bench_args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let topo = netfault::load_fixture(std::path::Path::new("fixtures/single-node.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = netfault::runtime();
    rt.block_on(async {
        let lab = netfault::Lab::up(&topo).await.unwrap();
        let node = lab.host("node1").unwrap();
        let results = [
            ("ip_forward off", "net.ipv4.ip_forward", "pod-a", "ext"),
            ("masquerade deleted", "", "pod-a", "ext"),
        ];
        let mut json = Vec::new();
        for (what, sysctl, from, to) in results {
            if !sysctl.is_empty() {
                node.ns.run(move || netfault::netns::write_sysctl(sysctl, "0").unwrap()).unwrap();
            } else {
                node.ns
                    .run(|| std::process::Command::new("nft").args(["flush", "chain", "ip", "nat", "postrouting"]).status().unwrap())
                    .unwrap();
            }
            let mut walk = Vec::new();
            for _ in 0..rounds {
                let t = Instant::now();
                let d = explain(&lab, from, to, Proto::Tcp, Outcome::Timeout, None).await.unwrap();
                walk.push(t.elapsed());
                assert_ne!(d.culprit.component, netfault::diagnose::Component::Unexplained);
            }
            let (mut plain, mut recorded) = (Vec::new(), Vec::new());
            for _ in 0..rounds.min(5) {
                let t = Instant::now();
                netfault::probe::matrix(&lab).await.unwrap();
                plain.push(t.elapsed());
                // Recorded around the cells the healthy lab reaches (all but ext → pods).
                let reached = |f: &str, t: &str, _| !(f == "ext" && t.starts_with("pod"));
                let t = Instant::now();
                recorded_matrix(&lab, reached, &Default::default()).await.unwrap();
                recorded.push(t.elapsed());
            }
            let evidence = vec![median(recorded).saturating_sub(median(plain))];
            let (w, e) = (median(walk), median(evidence));
            println!("{what:<20} walk {:>6.1} ms   recording evidence adds {:>6.1} ms to the broken round", w.as_secs_f64() * 1e3, e.as_secs_f64() * 1e3);
            json.push(format!(
                "{{\"breakage\":\"{what}\",\"walk_ms\":{:.2},\"evidence_extra_ms\":{:.2}}}",
                w.as_secs_f64() * 1e3,
                e.as_secs_f64() * 1e3
            ));
            // Heal for the next round.
            if !sysctl.is_empty() {
                node.ns.run(move || netfault::netns::write_sysctl(sysctl, "1").unwrap()).unwrap();
            }
        }
        json.extend(intent_cost());
        json.push(full_size_cost(rt_rounds(rounds)).await);
        println!("[{}]", json.join(","));
    });
}

fn rt_rounds(rounds: usize) -> usize {
    rounds.clamp(3, 7)
}

/// What judging the walk against the plan costs per pair: computing a pair's intended path
/// from the plan (pure: route lookups in the plan, no syscall), for every host pair of each
/// fixture kind. The walk does the same per hop it crosses.
fn intent_cost() -> Vec<String> {
    use netfault::lab::intended_path::intended_path;
    let mut json = Vec::new();
    for f in ["single-node", "two-node-vxlan", "two-node-routed", "k8s"] {
        let path = format!("fixtures/{f}.toml");
        let t =
            netfault::load_fixture(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
        let plan = netfault::lab::Plan::from_topology(&t);
        let pairs: Vec<(&str, std::net::Ipv4Addr, std::net::Ipv4Addr)> = t
            .hosts
            .iter()
            .flat_map(|a| {
                t.hosts
                    .iter()
                    .filter(move |b| b.name != a.name)
                    .map(move |b| (a, b))
            })
            .map(|(a, b)| (a.name.as_str(), a.address(), b.address()))
            .collect();
        let reps = 200;
        let start = Instant::now();
        let mut hops = 0;
        for _ in 0..reps {
            for (from, src, dst) in &pairs {
                hops += intended_path(&plan, &t, from, *src, *dst).hops.len();
            }
        }
        let per_pair = start.elapsed().as_secs_f64() * 1e6 / (reps * pairs.len()) as f64;
        println!(
            "intended path, {f:<16} {per_pair:>6.2} µs per pair ({} pairs, {:.1} hops each)",
            pairs.len(),
            hops as f64 / (reps * pairs.len()) as f64
        );
        json.push(format!(
            "{{\"intended_path\":\"{f}\",\"us_per_pair\":{per_pair:.3}}}"
        ));
    }
    json
}

/// What full-size pings cost a healthy matrix: the same probes with every ping small, and as
/// they are (full-size across routers), on the two-node vxlan lab; medians of the same run.
async fn full_size_cost(rounds: usize) -> String {
    let topo = netfault::load_fixture(std::path::Path::new("fixtures/two-node-vxlan.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let lab = netfault::Lab::up(&topo).await.unwrap();
    let full = netfault::probe::all_pairs(&lab);
    let small: Vec<_> = full
        .iter()
        .cloned()
        .map(|s| netfault::probe::ProbeSpec { full: false, ..s })
        .collect();
    let timeout = Duration::from_millis(topo.probe.timeout_ms);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (specs, out) in [(&small, &mut a), (&full, &mut b)] {
            let t = Instant::now();
            let obs = netfault::probe::run(&lab, specs, timeout).await.unwrap();
            out.push(t.elapsed());
            assert!(
                obs.iter().all(|o| o.outcome != Outcome::Timeout),
                "a healthy lab"
            );
        }
    }
    let n = full.iter().filter(|s| s.full).count();
    let (a, b) = (median(a), median(b));
    println!(
        "full-size pings      two-node-vxlan matrix {:>6.1} ms with every ping small, {:>6.1} ms with {n} of {} pings full-size",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        full.iter().filter(|s| s.proto == Proto::Icmp).count()
    );
    format!(
        "{{\"full_size_pings\":{n},\"small_ms\":{:.2},\"full_ms\":{:.2}}}",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3
    )
}

/// The arguments after `cargo bench ... --`, without the `--bench` flag cargo adds.
fn bench_args() -> impl Iterator<Item = String> {
    std::env::args().filter(|a| a != "--bench")
}
