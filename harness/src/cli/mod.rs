//! The `netfault` command line.
//!
//! Exit codes: 0 success (all cases pass), 1 a case failed or errored, 2 bad input or usage,
//! 130 interrupted.

mod args;
mod commands;
mod dispatch;
mod dns;
mod drill;
mod out;
mod run;
pub mod term;

pub use dispatch::{main, reference_markdown};
pub use out::{emit_json, Out};
pub use run::{demo_cases, DEMO_CASES, DEMO_FIXTURE};
