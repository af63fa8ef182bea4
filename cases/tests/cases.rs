//! One test per breakage case (`cases/*.toml`), one snapshot per case named after its file.
//!
//! Each test builds its own lab, so the cases run in parallel. Review new or changed snapshots
//! with `cargo insta review`; with CI set, a new or changed snapshot fails.

#[path = "../../harness/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use netfault::case::{load_case, RunOpts, Status};
use rstest::rstest;

#[rstest]
fn case(
    #[files("*.toml")]
    #[exclude("Cargo.toml")]
    path: PathBuf,
) {
    let case = load_case(&path).unwrap_or_else(|e| panic!("{e}"));
    let opts = RunOpts {
        capture: true,
        diagram: false,
    };
    let report = netfault::runtime().block_on(case.run_with(opts));
    // The case's lab is gone: no thread of this process may hold its namespaces.
    common::assert_no_thread_in_released_namespaces();
    // A case whose faults need an optional kernel feature is unsupported exactly where the
    // kernel lacks it (asked here without netfault), and passes everywhere else; it has no
    // snapshot, which would differ between kernels: its [expect] and culprits are what it asserts.
    let features: Vec<&str> = case
        .faults
        .iter()
        .filter_map(|f| f.kernel_feature())
        .collect();
    for feature in &features {
        let has = common::kernel_has(feature);
        assert_eq!(
            report.status == Status::Unsupported,
            !has,
            "{}: the kernel {} a {feature}, the case says {}\n{}",
            case.name,
            if has { "has" } else { "lacks" },
            report.status.as_str(),
            report.summary()
        );
    }
    // Every case must pass where the kernel can run it. A failing case leaves its packet
    // captures under target/.
    let unsupported_here = report.status == Status::Unsupported && !features.is_empty();
    if report.status != Status::Pass && !unsupported_here {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("pcap")
            .join(&case.name);
        let pcaps = match (&report.capture, &report.matrix) {
            (Some(c), Some(m)) => c
                .write_for(&dir, m)
                .map(|fs| {
                    fs.iter()
                        .map(|f| f.describe())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_else(|e| e.to_string()),
            _ => "(no captures)".into(),
        };
        panic!(
            "\n{}\n\n{}\npacket captures:\n{pcaps}",
            report.summary(),
            report.snapshot()
        );
    }
    if !features.is_empty() {
        return;
    }
    insta::with_settings!({
        snapshot_path => "snapshots",
        prepend_module_to_snapshot => false,
        description => case.description.clone(),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(case.name.as_str(), report.snapshot());
    });
}

/// Every fault of the catalog has a case, and every case but an unsupported one (every step of
/// a case in steps) names the culprits its diagnosis must find.
#[test]
fn the_catalog_is_covered_by_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut used = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml")
            && p.file_name().is_some_and(|n| n != "Cargo.toml")
        {
            let case = load_case(&p).unwrap_or_else(|e| panic!("{e}"));
            for f in &case.faults {
                used.push(f.name());
            }
            if case.steps.is_empty() {
                assert!(
                    case.culprits.is_some(),
                    "{} names no culprits (a case that breaks nothing says culprits = [])",
                    p.display()
                );
            }
            for (i, s) in case.steps.iter().enumerate() {
                assert!(
                    s.culprits.is_some(),
                    "{} step {} names no culprits (a step that breaks nothing says culprits = [])",
                    p.display(),
                    i + 1
                );
            }
        }
    }
    for k in netfault::fault::CATALOG {
        assert!(used.contains(&k.name), "no case uses the fault {}", k.name);
    }
}
