//! `netfault run --junit FILE`: the run as JUnit XML, the form CI systems (GitHub Actions
//! reporters, GitLab's test reports, Jenkins) read. One testcase per case: a failing case's
//! mismatches are its failure message, a case that could not be decided is an error, an
//! unsupported one is skipped; the diagnosis goes to system-out.

use std::fmt::Write;

use crate::case::{CaseReport, Status};
use crate::diagram::esc;

/// The whole run as one JUnit document.
pub fn render(reports: &[CaseReport], seconds: f64) -> String {
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    let (fail, err, skip) = (
        count(Status::Fail),
        count(Status::Error),
        count(Status::Unsupported),
    );
    let n = reports.len();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"netfault\" tests=\"{n}\" failures=\"{fail}\" errors=\"{err}\" skipped=\"{skip}\" time=\"{seconds:.3}\">"
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"netfault run\" tests=\"{n}\" failures=\"{fail}\" errors=\"{err}\" skipped=\"{skip}\" time=\"{seconds:.3}\">"
    );
    for r in reports {
        testcase(&mut x, r);
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn testcase(x: &mut String, r: &CaseReport) {
    let _ = writeln!(
        x,
        "    <testcase name=\"{}\" classname=\"netfault.{}\" file=\"{}\" time=\"{:.3}\">",
        esc(&r.case),
        esc(&r.fixture),
        esc(&r.path.to_string_lossy()),
        r.timings.total_ms as f64 / 1000.0
    );
    let message = r.message.clone().unwrap_or_default();
    match r.status {
        Status::Pass => {}
        Status::Fail => {
            let what = if r.mismatches.is_empty() {
                message.clone()
            } else {
                r.mismatches.join("; ")
            };
            let _ = writeln!(
                x,
                "      <failure type=\"mismatch\" message=\"{}\">{}</failure>",
                esc(&what),
                esc(&[r.mismatches.join("\n"), message].join("\n"))
            );
        }
        Status::Error => {
            let _ = writeln!(
                x,
                "      <error type=\"error\" message=\"{}\"/>",
                esc(&message)
            );
        }
        Status::Unsupported => {
            let _ = writeln!(x, "      <skipped message=\"{}\"/>", esc(&message));
        }
    }
    if !r.diagnoses.is_empty() {
        let _ = writeln!(
            x,
            "      <system-out>{}</system-out>",
            esc(&crate::diagnose::vocab::render(&r.diagnoses))
        );
    }
    x.push_str("    </testcase>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_text_and_removes_what_xml_cannot_hold() {
        assert_eq!(
            esc("a<b & \"c\"\u{1}"),
            "a&lt;b &amp; &quot;c&quot;\u{FFFD}"
        );
    }
}
