//! `netfault case new NAME --fixture F --fault KIND[:KEY=VALUE,...]...`: runs the fixture with
//! the faults, writes `cases/NAME.toml` with what the lab showed as its expectations (marked
//! for review), runs the written case to prove it passes, and leaves its snapshot as
//! `cases/tests/snapshots/NAME.snap.new` for `cargo insta review`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::case::{self, CaseReport, Status};
use crate::error::{Error, Result};
use crate::fault::Fault;
use crate::topology::{Outcome, Proto, Source};

/// `delete-masquerade:node=node1`: see [`Fault::parse_spec`]; errors name the `--fault`.
pub fn parse_fault(arg: &str) -> std::result::Result<Fault, String> {
    Fault::parse_spec(arg).map_err(|e| format!("--fault {e}"))
}

/// `to` relative to the directory `from` (both absolute).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut p = PathBuf::new();
    for _ in common..a.len() {
        p.push("..");
    }
    for c in &b[common..] {
        p.push(c.as_os_str());
    }
    p
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// What `case new` wrote.
pub struct NewCase {
    pub path: PathBuf,
    pub snapshot: Option<PathBuf>,
    pub report: CaseReport,
}

/// The observed outcomes that differ from the healthy lab, as `[expect]` rules: one per pair
/// when every protocol agrees, else one per protocol.
fn expect_rules(r: &CaseReport) -> Vec<(String, Outcome)> {
    let Some(m) = &r.matrix else {
        return Vec::new();
    };
    let mut by_pair: BTreeMap<(String, String), Vec<(Proto, Outcome)>> = BTreeMap::new();
    for c in m.mismatches() {
        by_pair
            .entry((c.from.clone(), c.to.clone()))
            .or_default()
            .push((c.proto, c.observed));
    }
    let probed = |from: &str, to: &str| {
        m.cells
            .iter()
            .filter(|c| c.from == from && c.to == to)
            .count()
    };
    let mut out = Vec::new();
    for ((from, to), cells) in by_pair {
        let same = cells.iter().all(|(_, o)| *o == cells[0].1);
        if same && cells.len() == probed(&from, &to) {
            out.push((format!("{from} -> {to}"), cells[0].1));
        } else {
            for (p, o) in cells {
                out.push((format!("{from} -> {to} {p}"), o));
            }
        }
    }
    out
}

fn describe(faults: &[Fault], rules: &[(String, Outcome)]) -> String {
    let fs: Vec<String> = faults.iter().map(|f| f.to_string()).collect();
    let mut parts: Vec<String> = rules
        .iter()
        .take(3)
        .map(|(k, o)| format!("{} {o}", k.replace(" -> ", " → ")))
        .collect();
    if rules.len() > 3 {
        parts.push(format!("{} more", rules.len() - 3));
    }
    if parts.is_empty() {
        format!("{}: no pair changes", fs.join(", "))
    } else {
        format!("{}: {}", fs.join(", "), parts.join(", "))
    }
}

/// The faults as a case file's `[[fault]]` tables.
fn fault_tables(faults: &[Fault]) -> String {
    let tables = faults.iter().map(|f| {
        let mut t = toml::Table::new();
        let v = toml::Value::try_from(f).expect("a fault is a TOML table");
        t.insert("fault".into(), toml::Value::Array(vec![v]));
        toml::to_string(&t).expect("toml")
    });
    tables.collect::<Vec<_>>().join("\n")
}

/// A case file of `faults` on the fixture at `fixture_rel` (relative to the case's directory)
/// with what `observed` showed as its culprits and expectations, each line marked for review;
/// `origin` says what wrote it.
pub fn observed_case(
    origin: &str,
    fixture_rel: &Path,
    faults: &[Fault],
    observed: &CaseReport,
) -> String {
    let rules = expect_rules(observed);
    let mut culprits: Vec<String> = observed
        .culprits
        .iter()
        .map(|c| format!("{} {}", c.host, c.component))
        .collect();
    culprits.sort();
    culprits.dedup();
    let mut text = format!(
        "# {origin}. Review it:\n\
         # are these the outcomes and culprits this breakage should have? Then say why in the\n\
         # description, and accept the snapshot with `cargo insta review`.\n\
         description = {}\nfixture = {}\nculprits = [{}]   # observed: review\n\n{}\n[expect]   # observed: review; pairs not named keep their healthy outcome\n",
        toml_str(&describe(faults, &rules)),
        toml_str(&fixture_rel.display().to_string()),
        culprits.iter().map(|c| toml_str(c)).collect::<Vec<_>>().join(", "),
        fault_tables(faults),
    );
    for (k, o) in &rules {
        text.push_str(&format!("{} = {}\n", toml_str(k), toml_str(o.as_str())));
    }
    text
}

pub async fn create(name: &str, fixture: &Path, faults: &[Fault], dir: &Path) -> Result<NewCase> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(Error::BadInput(format!(
            "case name \"{name}\": use lowercase letters, digits and '-' (it names the file and the snapshot)"
        )));
    }
    if faults.is_empty() {
        return Err(Error::BadInput(
            "a case needs at least one --fault KIND[:KEY=VALUE,...] (netfault faults lists them)"
                .into(),
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    if path.exists() {
        return Err(Error::BadInput(format!(
            "{} exists: pick another name or delete it",
            path.display()
        )));
    }
    let fixture_abs = std::fs::canonicalize(fixture)
        .map_err(|e| Error::io(format!("fixture {}", fixture.display()), e))?;
    let dir_abs = std::fs::canonicalize(dir)
        .map_err(|e| Error::io(format!("case directory {}", dir.display()), e))?;
    let fixture_rel = relative(&dir_abs, &fixture_abs);
    let topo = crate::topology::load_fixture(&fixture_abs)?;
    let mut bad = Vec::new();
    for f in faults {
        if let Err(e) = f.check(&topo) {
            bad.push(format!("{f}: {}: {} ({})", e.field, e.message, e.help));
        }
    }
    if !bad.is_empty() {
        return Err(Error::BadInput(bad.join("\n")));
    }
    let fault_tables = fault_tables(faults);
    let read_fixture = |_: &str| Source::read(&fixture_abs);

    // 1. The faults with no expectations: what changes is what the lab shows.
    let draft = format!(
        "description = \"draft\"\nfixture = {}\n\n{fault_tables}",
        toml_str(&fixture_rel.display().to_string())
    );
    let c = case::parse_case(&Source::new(path.clone(), draft), read_fixture)?;
    let observed = c.run().await;
    if observed.status == Status::Error || observed.status == Status::Unsupported {
        return Err(Error::other(format!(
            "the faults could not run on {}: {}",
            topo.name,
            observed.message.clone().unwrap_or_default()
        )));
    }
    // 2. The case file, every observed line marked for review.
    let text = observed_case(
        "Written by `netfault case new` from what the lab showed with these faults",
        &fixture_rel,
        faults,
        &observed,
    );
    std::fs::write(&path, &text)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;

    // 3. The written case must pass as written; its snapshot waits for review.
    let written = case::load_case(&path)?;
    let report = written.run().await;
    if report.status != Status::Pass {
        return Err(Error::other(format!(
            "{} was written but does not pass when run again (a fault with random effects?):\n{}",
            path.display(),
            report.summary()
        )));
    }
    let snapdir = dir.join("tests").join("snapshots");
    let snapshot = if snapdir.is_dir() {
        let p = snapdir.join(format!("{name}.snap.new"));
        let body = format!(
            "---\nsource: cases/tests/cases.rs\ndescription: {}\n---\n{}",
            serde_json::to_string(&written.description).expect("json"),
            report.snapshot()
        );
        std::fs::write(&p, body).map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
        Some(p)
    } else {
        None
    };
    Ok(NewCase {
        path,
        snapshot,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::kinds;

    #[test]
    fn fault_arguments_parse_with_typed_values_and_clear_errors() {
        assert_eq!(
            parse_fault("nft-reject:node=node1,from=pod-a,proto=tcp,port=80").unwrap(),
            Fault::NftReject(kinds::NftReject {
                node: "node1".into(),
                from: "pod-a".into(),
                proto: Some(Proto::Tcp),
                port: Some(80),
            })
        );
        assert_eq!(
            parse_fault("disable-ip-forward:node=node1").unwrap(),
            Fault::DisableIpForward(kinds::DisableIpForward {
                node: "node1".into()
            })
        );
        let e = parse_fault("delete-masquerade:host=node1").unwrap_err();
        assert!(e.contains("delete-masquerade takes node"), "{e}");
        let e = parse_fault("melt:x=1").unwrap_err();
        assert!(e.contains("netfault faults lists"), "{e}");
        assert!(parse_fault("delete-veth:pod")
            .unwrap_err()
            .contains("KEY=VALUE"));
    }

    #[test]
    fn relative_paths_climb_to_the_common_root() {
        assert_eq!(
            relative(Path::new("/w/cases"), Path::new("/w/fixtures/a.toml")),
            PathBuf::from("../fixtures/a.toml")
        );
        assert_eq!(
            relative(Path::new("/w"), Path::new("/w/a.toml")),
            PathBuf::from("a.toml")
        );
    }
}
