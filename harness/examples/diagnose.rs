//! Break a lab the way a person would (a sysctl written inside a node), then ask netfault to
//! explain every pair that got worse, from the live state alone.
//!
//!     cargo run -p netfault --example diagnose

fn main() -> Result<(), netfault::Error> {
    // Paths are the repository's.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).expect("repository root");
    let topo = netfault::load_fixture("fixtures/single-node.toml".as_ref())?;
    netfault::runtime().block_on(async {
        let lab = netfault::Lab::up(&topo).await?;
        let healthy = netfault::probe::matrix(&lab).await?;
        let node = lab.host("node1")?;
        node.ns
            .run(|| netfault::netns::write_sysctl("net.ipv4.ip_forward", "0"))
            .map_err(|e| netfault::Error::io("entering node1", e))?
            .map_err(|e| netfault::Error::io("writing ip_forward", e))?;
        // The broken round, with the kernel's evidence recorded around the pairs that were
        // reachable.
        let reached =
            |f: &str, to: &str, p| healthy.observed(f, to, p) == Some(netfault::Outcome::Reachable);
        let (broken, recorded) =
            netfault::diagnose::evidence::recorded_matrix(&lab, reached, &Default::default())
                .await?;
        for d in netfault::diagnose::explain_changes(&lab, &broken, &healthy, recorded).await? {
            println!("{d}\n");
        }
        Ok(())
    })
}
