//! The cost of diagnosing one broken pair beyond its probe, on the single-node lab: the path walk
//! alone, and what recording kernel evidence adds to the broken round (the recorded matrix's
//! time minus a plain matrix's, medians of the same run).
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
        println!("[{}]", json.join(","));
    });
}

/// The arguments after `cargo bench ... --`, without the `--bench` flag cargo adds.
fn bench_args() -> impl Iterator<Item = String> {
    std::env::args().filter(|a| a != "--bench")
}
