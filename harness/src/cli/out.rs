//! How commands report: JSON, quiet or for people; errors and their exit codes.

use crate::error::Error;

/// How a command should report: JSON, quiet, or for people.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    pub quiet: bool,
}

impl Out {
    /// Whether to print text for people (not JSON, not quiet).
    pub fn chatty(self) -> bool {
        !self.json && !self.quiet
    }
}

pub(super) fn fail(e: &Error) -> i32 {
    eprintln!("netfault: {e}");
    for cause in e.causes() {
        eprintln!("  caused by: {cause}");
    }
    if e.is_bad_input() {
        2
    } else {
        1
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn emit_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
