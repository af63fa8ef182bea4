//! Terminal output: colour where the terminal wants it (anstream drops it for pipes, files,
//! NO_COLOR and dumb terminals), progress on stderr only for a terminal.
//!
//! Renderers produce plain text (the same text snapshots hold); `paint` colours the marks a
//! person scans for: ✓/✗ hops, PASS/FAIL, culprits, matrix cells not as expected.

use std::io::Write;

use anstyle::{AnsiColor, Style};

const GOOD: Style = AnsiColor::Green.on_default();
const BAD: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default();
const DIM: Style = Style::new().dimmed();

fn styled(style: Style, s: &str) -> String {
    format!("{style}{s}{style:#}")
}

/// Colours one line of netfault's plain output.
pub fn paint_line(line: &str) -> String {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    for (word, style) in [
        ("PASS", GOOD),
        ("FAIL", BAD),
        ("ERROR", BAD),
        ("UNSUPPORTED", WARN),
        ("SOLVED", GOOD),
        ("NOT SOLVED", BAD),
    ] {
        if let Some(rest) = trimmed.strip_prefix(word) {
            if rest.is_empty() || rest.starts_with(' ') || rest.starts_with(':') {
                return format!("{indent}{}{rest}", styled(style, word));
            }
        }
    }
    if trimmed.starts_with("culprit:") {
        return format!("{indent}{}", styled(BAD, trimmed));
    }
    if let Some(rest) = trimmed.strip_prefix("✗ ") {
        return format!("{indent}{} {}", styled(BAD, "✗"), styled(BAD, rest));
    }
    if let Some(rest) = trimmed.strip_prefix("✓ ") {
        return format!("{indent}{} {rest}", styled(GOOD, "✓"));
    }
    if let Some(rest) = trimmed.strip_prefix("? ") {
        return format!("{indent}{} {rest}", styled(WARN, "?"));
    }
    if trimmed.starts_with("evidence:") || trimmed.starts_with('(') {
        return styled(DIM, line);
    }
    // A matrix row: colour each cell's symbols; a cell with `!` is not as expected.
    if line.contains('·') {
        return line
            .split_inclusive(' ')
            .map(|tok| {
                let t = tok.trim_end();
                let is_cell = !t.is_empty()
                    && t.chars()
                        .all(|c| matches!(c, '✓' | 'R' | 'U' | 'T' | '-' | '!' | '·'));
                if !is_cell {
                    return tok.to_string();
                }
                let pad = &tok[t.len()..];
                let body: String = t
                    .chars()
                    .map(|c| match c {
                        '✓' => styled(GOOD, "✓"),
                        '!' => styled(BAD, "!"),
                        'R' | 'U' | 'T' if t.contains('!') => styled(BAD, &c.to_string()),
                        'R' | 'U' | 'T' => styled(WARN, &c.to_string()),
                        other => other.to_string(),
                    })
                    .collect();
                format!("{body}{pad}")
            })
            .collect();
    }
    line.to_string()
}

pub fn paint(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|l| match l.strip_suffix('\n') {
            Some(body) => format!("{}\n", paint_line(body)),
            None => paint_line(l),
        })
        .collect()
}

/// The terminal's width when stdout is a terminal (None for pipes and files: they get the
/// full table, as scripts expect).
pub fn width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize it is given.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    match (r, ws.ws_col) {
        (0, c) if c > 0 => Some(c as usize),
        _ => std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()),
    }
}

/// Prints text to stdout, coloured when stdout is a terminal that wants colour.
pub fn print(text: &str) {
    let mut out = anstream::stdout();
    let _ = out.write_all(paint(text).as_bytes());
    let _ = out.flush();
}

/// Like `print`, with a newline.
pub fn println(text: &str) {
    print(&format!("{text}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_is_added_to_marks_and_stripped_for_pipes() {
        let painted =
            paint("PASS delete-veth (1.0 s)\n  ✗ node1  forward\nculprit: node1 link — x\n");
        assert!(painted.contains("\u{1b}["), "{painted}");
        let plain = anstream::adapter::strip_str(&painted).to_string();
        assert_eq!(
            plain,
            "PASS delete-veth (1.0 s)\n  ✗ node1  forward\nculprit: node1 link — x\n"
        );
        let row = paint_line("pod-a      ✓✓✓    ·      TTT!   UUU");
        assert!(row.contains("\u{1b}["), "{row}");
        assert_eq!(
            anstream::adapter::strip_str(&row).to_string(),
            "pod-a      ✓✓✓    ·      TTT!   UUU"
        );
    }
}
