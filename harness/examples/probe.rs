//! Bring a fixture's lab up and probe every pair: the smallest use of netfault as a library.
//!
//!     cargo run -p netfault --example probe -- fixtures/single-node.toml

fn main() -> Result<(), netfault::Error> {
    // Paths are the repository's.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).expect("repository root");
    let path = std::env::args()
        .nth(1)
        .unwrap_or("fixtures/single-node.toml".into());
    let topo = netfault::load_fixture(path.as_ref())?;
    netfault::runtime().block_on(async {
        // The lab lives as long as `lab`: dropping it (or the process dying) removes it.
        let lab = netfault::Lab::up(&topo).await?;
        let matrix = netfault::probe::matrix(&lab).await?;
        println!("{}", matrix.render());
        println!(
            "{} cells not as the fixture expects",
            matrix.mismatches().len()
        );
        Ok(())
    })
}
