//! Inject a fault into a live lab, see what it broke, and heal it exactly.
//!
//!     cargo run -p netfault --example fault

use netfault::fault::kinds;
use netfault::fault::Fault;

fn main() -> Result<(), netfault::Error> {
    // Paths are the repository's.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).expect("repository root");
    let topo = netfault::load_fixture("fixtures/single-node.toml".as_ref())?;
    netfault::runtime().block_on(async {
        let lab = netfault::Lab::up(&topo).await?;
        let fault = Fault::DisableIpForward(kinds::DisableIpForward {
            node: "node1".into(),
        });
        let guard = fault.inject(&lab).await?;
        let broken = netfault::probe::matrix(&lab).await?;
        println!("with {fault}:\n{}", broken.render());
        // Heal puts back exactly what inject changed; the matrix is healthy again.
        guard.heal(&lab).await?;
        let healed = netfault::probe::matrix(&lab).await?;
        println!(
            "healed: {} cells not as expected",
            healed.mismatches().len()
        );
        Ok(())
    })
}
