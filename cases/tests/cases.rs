//! One test per breakage case (`cases/*.toml`), one snapshot per case named after its file.
//!
//! Each test builds its own lab, so the cases run in parallel. Review new or changed snapshots
//! with `cargo insta review`; with CI set, a new or changed snapshot fails.

use std::path::PathBuf;

use netfault::case::{load_case, Status};
use rstest::rstest;

#[rstest]
fn case(
    #[files("*.toml")]
    #[exclude("Cargo.toml")]
    path: PathBuf,
) {
    let case = load_case(&path).unwrap_or_else(|e| panic!("{e}"));
    let report = netfault::runtime().block_on(case.run());
    assert_eq!(
        report.status,
        Status::Pass,
        "\n{}\n\n{}",
        report.summary(),
        report.snapshot()
    );
    insta::with_settings!({
        snapshot_path => "snapshots",
        prepend_module_to_snapshot => false,
        description => case.description.clone(),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(case.name.as_str(), report.snapshot());
    });
}
