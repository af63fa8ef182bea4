//! Hostile input: every file under cases/invalid/ must be rejected with the error its first
//! line names (`# error: TEXT`, a substring of the message and its help), never a panic, and
//! nothing may be built. `fixture-*.toml` are fixtures, `case-*.toml` cases.

use std::path::{Path, PathBuf};

use netfault::case::load_case;
use netfault::topology::load_fixture;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("invalid");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

fn error_of(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    if name.starts_with("case-") {
        match load_case(path) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        }
    } else {
        match load_fixture(path) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        }
    }
}

/// The expected text: the first line `# error: ...`, or for files that cannot carry a comment
/// (binary, empty) a sidecar `NAME.expect`.
fn expected(path: &Path) -> String {
    let side = path.with_extension("expect");
    if let Ok(s) = std::fs::read_to_string(&side) {
        return s.trim().to_string();
    }
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# error: "))
        .unwrap_or_else(|| panic!("{}: no `# error:` line", path.display()))
        .to_string()
}

#[test]
fn every_malformed_input_is_rejected_with_its_message() {
    let files = corpus();
    assert!(files.len() >= 30, "{} inputs", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let got = std::panic::catch_unwind(|| error_of(f));
        let want = expected(f);
        match got {
            Ok(msg) if msg.contains(&want) => {
                // Every message says where: the file's name.
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                if !msg.contains(&name) {
                    bad.push(format!("{name}: the message does not name the file: {msg}"));
                }
            }
            Ok(msg) => bad.push(format!("{}: want \"{want}\", got: {msg}", f.display())),
            Err(_) => bad.push(format!("{}: panicked", f.display())),
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n\n"));
}
