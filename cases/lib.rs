//! netfault's breakage cases live in this directory as `*.toml` files; `tests/cases.rs` runs each
//! as a test and snapshots its report under `tests/snapshots/`.
