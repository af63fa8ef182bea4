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
