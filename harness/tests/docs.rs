//! The generated reference pages match the code: the fault catalog and every command's help.
//! `NETFAULT_WRITE_DOCS=1 cargo test -p netfault --test docs` writes them anew.

mod common;

fn check(page: &str, want: String) {
    let path = common::repo().join("docs").join(page);
    if std::env::var_os("NETFAULT_WRITE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/{page} is stale: run NETFAULT_WRITE_DOCS=1 cargo test -p netfault --test docs"
    );
}

#[test]
fn the_fault_catalog_page_is_current() {
    check("faults.md", netfault::fault::catalog_markdown());
}

#[test]
fn the_cli_reference_is_current() {
    check("cli.md", netfault::cli::reference_markdown());
}

/// The CI examples are what their systems read: YAML with the keys each one needs, running
/// `ci/run test`; nextest's profile has JUnit output and no retries.
#[test]
fn the_ci_examples_parse_and_run_ci_run_test() {
    let read = |p: &str| std::fs::read_to_string(common::repo().join(p)).unwrap();
    let gh: serde_yaml::Value =
        serde_yaml::from_str(&read("ci/examples/github-actions.yml")).unwrap();
    let steps = gh["jobs"]["test"]["steps"]
        .as_sequence()
        .expect("jobs.test.steps");
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(runs.iter().any(|r| r.contains("ci/run test")), "{runs:?}");
    assert!(gh["on"].is_mapping(), "a trigger");
    let gl: serde_yaml::Value = serde_yaml::from_str(&read("ci/examples/gitlab-ci.yml")).unwrap();
    let script: Vec<&str> = gl["netfault"]["script"]
        .as_sequence()
        .expect("netfault.script")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(script.contains(&"ci/run test"), "{script:?}");
    assert!(gl["netfault"]["artifacts"]["reports"]["junit"].is_string());
    let nx: toml::Table = read(".config/nextest.toml").parse().unwrap();
    let ci = &nx["profile"]["ci"];
    assert_eq!(ci["retries"].as_integer(), Some(0));
    assert!(ci["junit"]["path"].is_str());
}
