//! `ci/bench negatives`: what a case whose pairs time out costs against the healthy case of the
//! same fixture (no fault), in the same run: each pair is run alternately, medians compared.
//! With `NETFAULT_DROPWATCH=0` in the environment the negatives wait their timeouts (the
//! figure before evidence-decided negatives).
//!
//!     cargo bench -p netfault --bench negatives -- [ROUNDS]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netfault::case::{load_case, parse_case, Case, Status};
use netfault::topology::Source;

/// (the negative case, its fixture): single-node, vxlan overlay, a Kubernetes policy.
const PAIRS: &[(&str, &str)] = &[
    ("cases/delete-masquerade.toml", "fixtures/single-node.toml"),
    (
        "cases/block-vxlan-port.toml",
        "fixtures/two-node-vxlan.toml",
    ),
    ("cases/k8s-default-deny-egress.toml", "fixtures/k8s.toml"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fixture with no fault: every pair as the fixture expects.
fn healthy(fixture: &Path) -> Case {
    let text = format!(
        "description = \"healthy\"\nfixture = \"{}\"\n",
        fixture.display()
    );
    parse_case(&Source::new("healthy.toml", &text), |p| {
        Source::read(Path::new(p)).map_err(|e| panic!("{}", e.message))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:<38} {:>10} {:>10} {:>7}",
        format!("negative case (medians of {rounds})"),
        "healthy",
        "negative",
        "ratio"
    );
    let mut json = Vec::new();
    for (case, fixture) in PAIRS {
        let neg = load_case(&repo().join(case)).unwrap_or_else(|e| panic!("{e}"));
        let ok = healthy(&repo().join(fixture));
        let (mut h, mut n) = (Vec::new(), Vec::new());
        rt.block_on(async {
            for _ in 0..rounds {
                for (c, into) in [(&ok, &mut h), (&neg, &mut n)] {
                    let t0 = Instant::now();
                    let r = c.run().await;
                    into.push(t0.elapsed());
                    assert_eq!(r.status, Status::Pass, "{}: {:?}", c.name, r.message);
                }
            }
        });
        let (h, n) = (median(h), median(n));
        let ratio = n.as_secs_f64() / h.as_secs_f64();
        println!(
            "{:<38} {:>8} ms {:>8} ms {:>6.1}×",
            case,
            h.as_millis(),
            n.as_millis(),
            ratio
        );
        json.push(serde_json::json!({
            "case": case, "healthy_ms": h.as_millis() as u64,
            "negative_ms": n.as_millis() as u64, "ratio": ratio,
        }));
    }
    let _ = std::fs::create_dir_all(repo().join("target/bench"));
    let _ = std::fs::write(
        repo().join("target/bench/negatives.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    );
}
