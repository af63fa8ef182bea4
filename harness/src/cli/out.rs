//! How commands report: JSON, quiet or for people; errors and their exit codes.

use crate::error::Error;

/// The exit codes every command keeps to (docs/commands.md lists them).
pub mod exit {
    /// Healthy, solved, passed, done.
    pub const OK: i32 = 0;
    /// The lab, case or drill is not as expected (a verdict, not an error).
    pub const UNHEALTHY: i32 = 1;
    /// Bad input or usage: a fixture, case, fault, name or argument is wrong.
    pub const BAD_INPUT: i32 = 2;
    /// netfault could not do it: a damaged lab, a missing privilege or kernel feature, a tool
    /// that failed, an internal error.
    pub const ERROR: i32 = 3;
    /// Ended by Ctrl-C.
    pub const INTERRUPTED: i32 = 130;
}

/// How a command should report: JSON, quiet, or for people.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    pub quiet: bool,
    pub matrix: MatrixView,
}

/// How matrices are drawn for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MatrixView {
    /// The table when it fits the terminal's width, else grouped by source.
    #[default]
    Auto,
    /// Always the table (one column per target).
    Table,
    /// One block per source: what it reaches, and each probe that it does not.
    BySource,
}

impl Out {
    /// A matrix as this output wants it drawn.
    pub fn matrix_text(self, m: &crate::matrix::Matrix) -> String {
        match self.matrix {
            MatrixView::Table => m.render(),
            MatrixView::BySource => m.render_by_source(super::term::width().unwrap_or(100)),
            MatrixView::Auto => m.render_fit(super::term::width()),
        }
    }

    /// Whether to print text for people (not JSON, not quiet).
    pub fn chatty(self) -> bool {
        !self.json && !self.quiet
    }
}

/// Reports an error (as JSON on stdout under `--json`, else on stderr) and returns its exit
/// code: 2 for bad input, 3 for anything else.
pub(super) fn fail(e: &Error, out: Out) -> i32 {
    let code = if e.is_bad_input() {
        exit::BAD_INPUT
    } else {
        exit::ERROR
    };
    fail_with(&e.to_string(), &e.causes(), code, out)
}

/// Reports an error message that is not an `Error` (a usage or privilege problem).
pub(super) fn fail_with(message: &str, causes: &[String], code: i32, out: Out) -> i32 {
    if out.json {
        let kind = match code {
            exit::BAD_INPUT => "bad-input",
            _ => "error",
        };
        emit_json(&serde_json::json!({
            "error": { "kind": kind, "message": message, "causes": causes },
            "exit": code,
        }));
    } else {
        eprintln!("netfault: {message}");
        for cause in causes {
            eprintln!("  caused by: {cause}");
        }
    }
    code
}

/// Prints a value as pretty JSON on stdout.
pub fn emit_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
