//! Brings a fixture up and probes its matrix a few times (profiling aid).
fn main() {
    // Paths are the repository's, as `ci/bench` gives them.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).expect("repository root");
    let f = bench_args().nth(1).expect("fixture");
    let rounds: usize = bench_args()
        .nth(2)
        .and_then(|x| x.parse().ok())
        .unwrap_or(3);
    let mut topo = netfault::load_fixture(std::path::Path::new(&f)).unwrap();
    topo.probe.protocols = vec![netfault::Proto::Icmp, netfault::Proto::Tcp];
    netfault::runtime().block_on(async {
        let lab = netfault::Lab::up(&topo).await.unwrap();
        for _ in 0..rounds {
            let t = std::time::Instant::now();
            let m = netfault::probe::matrix(&lab).await.unwrap();
            println!(
                "{} probes in {:?}, {} not as expected",
                m.cells.len(),
                t.elapsed(),
                m.mismatches().len()
            );
        }
    });
}

/// The arguments after `cargo bench ... --`, without the `--bench` flag cargo adds.
fn bench_args() -> impl Iterator<Item = String> {
    std::env::args().filter(|a| a != "--bench")
}
