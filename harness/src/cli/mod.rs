//! The `netfault` command line.
//!
//! Exit codes (`out::exit`): 0 healthy or done, 1 unhealthy (a case failed, a lab or drill not
//! as expected), 2 bad input or usage, 3 could not do it (a damaged lab, a missing privilege or
//! kernel feature, an internal error), 130 interrupted; `exec` passes on its command's.

mod args;
mod commands;
mod daemon;
mod dispatch;
mod dns;
mod drill;
mod explore;
mod out;
mod pinned;
mod run;
mod serve;
pub mod term;

pub use dispatch::{main, reference_markdown};
pub use out::{emit_json, Out};
pub use run::{demo_cases, DEMO_CASES, DEMO_FIXTURE};
