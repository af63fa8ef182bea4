//! CNI plugin audits (`cases/cni/*.toml`): what the installed plugins' CHECK detects, what DEL
//! leaves behind, how they take the lifecycle checks; asserted per case, and snapshotted.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditCase {
    #[allow(dead_code)]
    description: String,
    audit: PathBuf,
    check_detects: BTreeMap<String, bool>,
    #[serde(default)]
    leaks: BTreeMap<String, usize>,
    #[serde(default)]
    del_fails: BTreeMap<String, bool>,
}

/// Every audit case in turn (one process, one at a time), then proof the audits left nothing:
/// no namespace held, no CNI state directory, no lab record.
#[test]
fn audits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cni");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 2,
        "cases/cni holds the bridge and ptp audits"
    );
    for c in cases {
        audit(c);
    }
    let held: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("net:["))
        .collect();
    assert!(held.is_empty(), "namespaces still held: {held:?}");
    let state = netfault::paths::run_dir().join("cni");
    let mine: Vec<String> = std::fs::read_dir(&state)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{}.", std::process::id())))
        .collect();
    assert!(
        mine.is_empty(),
        "CNI state left in {}: {mine:?}",
        state.display()
    );
}

fn audit(path: PathBuf) {
    let case: AuditCase = toml::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let conflist = path.parent().unwrap().join(&case.audit);
    let a = netfault::runtime()
        .block_on(netfault::audit::run(&conflist, 2, |_, _, _| {}))
        .unwrap_or_else(|e| panic!("{e}"));
    let table = netfault::audit::render(&a);
    for r in &a.rows {
        assert!(
            r.note
                .as_ref()
                .is_none_or(|n| !n.starts_with("the audit could not run")),
            "{}: {:?}\n{table}",
            r.check,
            r.note
        );
        if r.kind == "fault" {
            let want = case.check_detects.get(r.key()).unwrap_or_else(|| {
                panic!(
                    "{}: add {} to [check_detects]\n{table}",
                    path.display(),
                    r.key()
                )
            });
            assert_eq!(
                r.check_detects,
                Some(*want),
                "CHECK for {}\n{table}",
                r.check
            );
        }
        assert_eq!(
            r.leaks.len(),
            case.leaks.get(r.key()).copied().unwrap_or(0),
            "leaks of {}\n{table}",
            r.check
        );
        let fails = r.del != "ok" && r.del != "-" && !r.del.starts_with("by the runtime");
        assert_eq!(
            fails,
            case.del_fails.get(r.key()).copied().unwrap_or(false),
            "DEL of {}: {}\n{table}",
            r.check,
            r.del
        );
    }
    assert_eq!(
        a.rows.iter().filter(|r| r.kind == "fault").count(),
        case.check_detects.len(),
        "every listed fault was audited\n{table}"
    );
    let name = format!("cni-{}", path.file_stem().unwrap().to_string_lossy());
    // The table names the conflist by the path given; keep the snapshot independent of it.
    let shown = table.replace(
        &conflist.display().to_string(),
        &case.audit.display().to_string(),
    );
    insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, shown);
    });
}
