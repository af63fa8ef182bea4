//! CNI plugin audits (`cases/cni/*.toml`): what the installed plugins' CHECK detects, what DEL
//! leaves behind, how they take the lifecycle checks; asserted per case, and snapshotted.

#[path = "../../harness/tests/common/mod.rs"]
mod common;

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
        common::assert_no_thread_in_released_namespaces();
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
    let shown = stable(&shown, &a);
    insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, shown);
    });
}

/// The audit table with what an upgrade of the plugin package changes taken out: the versions
/// each plugin declares (checked here against the plugin binary itself first), the plugins'
/// own error texts, and where plugins are looked for. What netfault decided stays.
fn stable(table: &str, a: &netfault::audit::Audit) -> String {
    let path = netfault::cni::PluginPath::resolve(&[]);
    for (plugin, declared) in &a.versions {
        let bin = path
            .find(plugin)
            .unwrap_or_else(|| panic!("{plugin} is not installed"));
        assert_eq!(
            declared.split_whitespace().collect::<Vec<_>>(),
            common::versions_of(&bin),
            "the audit's VERSION answer of {plugin}"
        );
    }
    let mut out = String::new();
    for line in table.lines() {
        let mut l = line.replace(&path.env_value(), "<CNI path>");
        if let Some((p, _)) = a
            .versions
            .iter()
            .find(|(p, _)| l.starts_with(&format!("  {p}: supports ")))
        {
            l = format!("  {p}: supports what its VERSION answers");
        }
        // A plugin's own words (Go error texts) follow its code, or CHECK's verdict.
        if let Some(i) = l.find("CHECK: ") {
            l.truncate(i + 7);
            l.push_str("<plugin's message>");
        }
        if let Some(i) = l
            .find(", code ")
            .and_then(|i| l[i..].find("): ").map(|j| i + j + 3))
        {
            let rest = l[i..]
                .find("; ")
                .map(|j| l[i + j..].to_string())
                .unwrap_or_default();
            l.truncate(i);
            l.push_str("<plugin's message>");
            l.push_str(&rest);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}
