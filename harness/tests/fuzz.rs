//! Hostile input, generated: fixture and case parsing never panics, whatever the text. Inputs
//! are valid fixtures and cases with random edits (bytes replaced, lines dropped or repeated,
//! numbers blown up, names lengthened), plus arbitrary strings; every outcome must be Ok or a
//! located error.

use proptest::prelude::*;

use netfault::case::parse_case;
use netfault::topology::{parse_fixture, ConfigErrors, Source};

const FIXTURES: &[&str] = &[
    include_str!("../../fixtures/single-node.toml"),
    include_str!("../../fixtures/two-node-vxlan.toml"),
    include_str!("../../fixtures/k8s.toml"),
    include_str!("../../fixtures/k8s-policy.toml"),
];
const CASES: &[&str] = &[
    include_str!("../../cases/nft-reject.toml"),
    include_str!("../../cases/k8s-stale-conntrack.toml"),
    include_str!("../../cases/mtu-mismatch.toml"),
];

#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, String),
    DropLine(usize),
    DupLine(usize),
    BigNumber(usize),
    LongName(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), "[ -~]{0,8}").prop_map(|(i, s)| Edit::Replace(i, s)),
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DupLine),
        any::<usize>().prop_map(Edit::BigNumber),
        any::<usize>().prop_map(Edit::LongName),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_string();
    for e in edits {
        let mut lines: Vec<String> = s.lines().map(String::from).collect();
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match e {
            Edit::Replace(i, r) => {
                let b: Vec<char> = s.chars().collect();
                if !b.is_empty() {
                    let at = i % b.len();
                    let end = (at + r.len().max(1)).min(b.len());
                    let mut out: String = b[..at].iter().collect();
                    out.push_str(r);
                    out.extend(&b[end..]);
                    s = out;
                    continue;
                }
            }
            Edit::DropLine(i) => {
                lines.remove(i % n);
            }
            Edit::DupLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::BigNumber(i) => {
                let l = &mut lines[i % n];
                *l = l.replace(|c: char| c.is_ascii_digit(), "9999999999");
            }
            Edit::LongName(i) => {
                let l = &mut lines[i % n];
                *l = l.replace("pod-", &format!("pod-{}", "x".repeat(40)));
            }
        }
        s = lines.join("\n");
    }
    s
}

/// Every error names one of `files` and a line and column inside its text, but the closing
/// "... and N more errors" line, which is about the whole file.
fn located(errs: &ConfigErrors, files: &[(&str, &str)]) -> Result<(), String> {
    if errs.0.is_empty() {
        return Err("an error without errors".into());
    }
    for (i, e) in errs.0.iter().enumerate() {
        let name = e.file.to_string_lossy();
        let Some((_, text)) = files.iter().find(|(f, _)| *f == name) else {
            return Err(format!("{e}: names a file it was not given"));
        };
        if e.line == 0 {
            let summary = i + 1 == errs.0.len() && e.message.ends_with(" more errors");
            if !summary {
                return Err(format!("{e}: not located"));
            }
            continue;
        }
        let lines = text.split('\n').count();
        if e.line > lines || e.column == 0 {
            return Err(format!(
                "{e}: line {} column {} outside the text ({lines} lines)",
                e.line, e.column
            ));
        }
    }
    Ok(())
}

proptest! {
    // 256 inputs per property by default; PROPTEST_CASES=N for more.
    #[test]
    fn fixture_parsing_never_panics(which in 0..FIXTURES.len(), edits in prop::collection::vec(edit(), 1..6)) {
        let text = apply(FIXTURES[which], &edits);
        if let Err(errs) = parse_fixture(&Source::new("fuzz.toml", text.clone())) {
            located(&errs, &[("fuzz.toml", &text)]).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn case_parsing_never_panics(which in 0..CASES.len(), fx in 0..FIXTURES.len(), edits in prop::collection::vec(edit(), 1..6)) {
        let text = apply(CASES[which], &edits);
        let r = parse_case(&Source::new("fuzz-case.toml", text.clone()), |_| Ok(Source::new("fixture.toml", FIXTURES[fx])));
        if let Err(errs) = r {
            located(&errs, &[("fuzz-case.toml", &text), ("fixture.toml", FIXTURES[fx])])
                .map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse_fixture(&Source::new("any.toml", text.clone()));
        let _ = parse_case(&Source::new("any-case.toml", text), |_| Ok(Source::new("fixture.toml", FIXTURES[0])));
    }
}
