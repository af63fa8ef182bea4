//! Times single-node lab up and teardown (until the kernel freed every namespace), N rounds.
//!
//!     cargo run --release -p netfault --example updown -- [FIXTURE] [ROUNDS]

use std::time::{Duration, Instant};

fn main() {
    // Paths are the repository's, as `ci/bench` gives them.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).expect("repository root");
    let mut args = bench_args().skip(1);
    let fixture = args
        .next()
        .unwrap_or_else(|| "fixtures/single-node.toml".into());
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20);
    let topo =
        netfault::load_fixture(std::path::Path::new(&fixture)).unwrap_or_else(|e| panic!("{e}"));
    let rt = netfault::runtime();
    let (mut ups, mut downs, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            let lab = netfault::Lab::up(&topo).await.expect("up");
            ups.push(t.elapsed());
            let mut w = netfault::leakcheck::Witness::new().await.unwrap();
            for h in lab.hosts() {
                w.watch(&h.ns).await.unwrap();
            }
            let t = Instant::now();
            drop(lab);
            downs.push(t.elapsed());
            assert_eq!(w.wait_gone(Duration::from_secs(10)).await.unwrap(), 0);
            gone.push(t.elapsed());
        }
    });
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "{} rounds of {}: up median {:?}, drop {:?}, until the kernel freed every namespace {:?}",
        rounds,
        topo.name,
        med(&mut ups),
        med(&mut downs),
        med(&mut gone)
    );
}

/// The arguments after `cargo bench ... --`, without the `--bench` flag cargo adds.
fn bench_args() -> impl Iterator<Item = String> {
    std::env::args().filter(|a| a != "--bench")
}
