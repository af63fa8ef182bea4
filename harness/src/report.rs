//! `netfault run --report DIR`: one self-contained HTML page (inline CSS and SVG, no scripts,
//! nothing fetched) with, per case, the matrix as a coloured grid, the lab's diagram with what
//! the diagnosis found, the explanations and the state diff; packet captures of failing cases
//! sit next to it, linked from the page. The page is well-formed XML (XHTML-compatible HTML5),
//! so tests parse it with an XML parser.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::case::{CaseReport, Status};
use crate::error::{Error, Result};
use crate::matrix::Matrix;
use crate::packets::PcapFile;
use crate::topology::Outcome;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str =
    "body{font-family:DejaVu Sans,Verdana,sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:24px}h2{font-size:19px;margin-top:0}h3{font-size:15px;margin:18px 0 6px}\
section.case{border:1px solid #ccd3de;border-radius:8px;padding:16px;margin:22px 0}\
.status{font-size:13px;padding:2px 8px;border-radius:4px;color:#fff;margin-left:8px}\
.pass{background:#2e8540}.fail,.error{background:#d0021b}.unsupported{background:#b8860b}\
table{border-collapse:collapse}td,th{border:1px solid #ccd3de;padding:4px 8px;text-align:center}\
table.matrix td.self{background:#f1f1f1}\
span.o{display:inline-block;width:16px;font-weight:bold;font-family:monospace}\
span.ok{color:#2e8540}span.broken{color:#fff;background:#c77c00}span.negative{color:#777}\
span.wrong{color:#fff;background:#d0021b}div.wide{overflow-x:auto}\
table.matrix th.v{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;padding:6px 2px}\
p.run{font-size:13px;color:#555}\
pre{background:#f7f9fc;border:1px solid #e0e5ee;padding:10px;overflow-x:auto;font-size:12px}\
.diagram{overflow-x:auto;border:1px solid #e0e5ee;padding:6px}\
ul.diff li{font-family:monospace;font-size:12px}.key{font-size:12px;color:#555}";

fn symbol(o: Outcome) -> char {
    o.symbol()
}

/// How a cell is coloured: green reachable as expected, grey a negative the healthy lab has
/// too (the fixture expects it), amber a pair the faults broke as the case expects, red not as
/// expected.
fn cell_class(c: &crate::matrix::Cell, baseline: Option<&Matrix>) -> &'static str {
    if !c.matches() {
        return "wrong";
    }
    if c.observed == Outcome::Reachable {
        return "ok";
    }
    match baseline.and_then(|b| b.observed(&c.from, &c.to, c.proto)) {
        Some(before) if before == c.observed => "negative",
        _ => "broken",
    }
}

/// The matrix as HTML: one row per source, one cell per destination, one coloured symbol per
/// protocol. Hosts and Kubernetes targets (Services, NodePorts, lookups) are two tables, and
/// a table of many columns turns its headers upright, so a Kubernetes fixture's matrix fits
/// the page.
pub fn matrix_table(m: &Matrix, baseline: Option<&Matrix>) -> String {
    let (hosts, targets): (Vec<&String>, Vec<&String>) =
        m.columns().into_iter().partition(|c| m.hosts.contains(c));
    let mut s = String::new();
    for (title, cols) in [("hosts", hosts), ("Kubernetes targets", targets)] {
        if cols.is_empty() {
            continue;
        }
        if !m.targets.is_empty() {
            let _ = write!(s, "<p class=\"key\">to {title}</p>");
        }
        s.push_str(&matrix_part(m, &cols, baseline));
    }
    let protos: Vec<&str> = m.protocols.iter().map(|p| p.as_str()).collect();
    let _ = write!(
        s,
        "<p class=\"key\">per cell: {}; ✓ reachable, R refused, U unreachable, T timeout, N nxdomain, S servfail, - unsupported; green reachable as expected, grey not reachable in the healthy lab either (as the fixture expects), amber broken by the faults as expected, red not as expected</p>",
        protos.join(", ")
    );
    s
}

fn matrix_part(m: &Matrix, cols: &[&String], baseline: Option<&Matrix>) -> String {
    let upright = cols.len() > 8;
    let mut s = String::from("<div class=\"wide\"><table class=\"matrix\"><tr><th>from \\ to</th>");
    for h in cols {
        let class = if upright { " class=\"v\"" } else { "" };
        let _ = write!(s, "<th{class}>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for from in &m.hosts {
        let _ = write!(s, "<tr><th>{}</th>", esc(from));
        for to in cols {
            if from == *to {
                s.push_str("<td class=\"self\">·</td>");
                continue;
            }
            s.push_str("<td>");
            for p in m.protocols_of(from, to) {
                match m.cell(from, to, p) {
                    Some(c) => {
                        let title = format!(
                            "{from} → {to} {p}: observed {}{}",
                            c.observed,
                            c.expected
                                .map(|e| format!(", expected {e}"))
                                .unwrap_or_default()
                        );
                        let _ = write!(
                            s,
                            "<span class=\"o {}\" title=\"{}\">{}</span>",
                            cell_class(c, baseline),
                            esc(&title),
                            symbol(c.observed)
                        );
                    }
                    None => s.push_str("<span class=\"o\"> </span>"),
                }
            }
            s.push_str("</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table></div>");
    s
}

/// When, where and with what the run was made: "run 2026-12-07 05:55:02 UTC on HOST (Linux
/// 6.1.0) with netfault 0.1.0".
fn provenance() -> String {
    let now = crate::clock::now_unix();
    let uts = nix::sys::utsname::uname().ok();
    let (host, kernel) = uts
        .map(|u| {
            (
                u.nodename().to_string_lossy().into_owned(),
                format!(
                    "{} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy()
                ),
            )
        })
        .unwrap_or_default();
    format!(
        "run {} on {host} ({kernel}) with netfault {}",
        crate::clock::utc(now),
        env!("CARGO_PKG_VERSION")
    )
}

fn case_section(r: &CaseReport, pcaps: &[PcapFile], dir: &Path) -> String {
    let mut s = String::new();
    let status = r.status.as_str();
    let _ = write!(
        s,
        "<section class=\"case\" id=\"case-{}\"><h2>{}<span class=\"status {status}\">{}</span></h2><p>{}</p>",
        esc(&r.case),
        esc(&r.case),
        status.to_uppercase(),
        esc(&r.description)
    );
    let _ = write!(
        s,
        "<p>fixture <b>{}</b>; faults: {}</p>",
        esc(&r.fixture),
        esc(&r.faults.join(", "))
    );
    if let Some(m) = &r.message {
        let _ = write!(s, "<p><b>{}</b></p>", esc(m));
    }
    if !r.mismatches.is_empty() {
        s.push_str("<h3>Not as expected</h3><ul class=\"diff\">");
        for l in &r.mismatches {
            let _ = write!(s, "<li>{}</li>", esc(l));
        }
        s.push_str("</ul>");
    }
    if let Some(m) = &r.matrix {
        s.push_str("<h3>Matrix with the faults in</h3>");
        s.push_str(&matrix_table(m, r.baseline.as_ref()));
    }
    if let Some(svg) = &r.diagram {
        let _ = write!(s, "<h3>Diagram</h3><div class=\"diagram\">{svg}</div>");
    }
    s.push_str("<h3>Diagnosis</h3>");
    if r.diagnoses.is_empty() {
        s.push_str("<p>No pair got worse.</p>");
    } else {
        let mut text = String::new();
        for d in &r.diagnoses {
            text.push_str(&d.render(false));
            text.push('\n');
        }
        let _ = write!(s, "<pre>{}</pre>", esc(&text));
    }
    s.push_str("<h3>What the faults changed</h3><ul class=\"diff\">");
    if r.state_diff.is_empty() {
        s.push_str("<li>(nothing)</li>");
    }
    for l in &r.state_diff {
        let _ = write!(s, "<li>{}</li>", esc(l));
    }
    s.push_str("</ul>");
    if !pcaps.is_empty() {
        s.push_str("<h3>Packet captures (the last packets on each interface while the faults were in)</h3><ul class=\"diff\">");
        for p in pcaps {
            let rel = p
                .path
                .strip_prefix(dir)
                .unwrap_or(&p.path)
                .display()
                .to_string();
            let _ = write!(
                s,
                "<li><a href=\"{}\">{}</a> — {} packets on {} {}{}</li>",
                esc(&rel),
                esc(&rel),
                p.packets,
                esc(&p.host),
                esc(&p.ifname),
                if p.last_packets_of.is_empty() {
                    String::new()
                } else {
                    esc(&format!(
                        "; the last packets of {}",
                        p.last_packets_of.join(", ")
                    ))
                }
            );
        }
        s.push_str("</ul>");
    }
    s.push_str("</section>");
    s
}

/// Writes `dir/index.html` (and each failing case's pcaps under `dir/CASE/`); returns the page.
pub fn write(
    dir: &Path,
    reports: &[CaseReport],
) -> Result<(PathBuf, BTreeMap<String, Vec<PcapFile>>)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut pcaps: BTreeMap<String, Vec<PcapFile>> = BTreeMap::new();
    for r in reports {
        if let (Some(c), Some(m)) = (&r.capture, &r.matrix) {
            if !c.is_empty() {
                let files = c.write_for(&dir.join(&r.case), m)?;
                pcaps.insert(r.case.clone(), files);
            }
        }
    }
    let count = |st: Status| reports.iter().filter(|r| r.status == st).count();
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>netfault report</title><style>{CSS}</style></head><body><h1>netfault report</h1>"
    );
    let _ = write!(s, "<p class=\"run\">{}</p>", esc(&provenance()));
    let _ = write!(
        s,
        "<p class=\"summary\">{} cases: {} passed, {} failed, {} errors, {} unsupported.</p>",
        reports.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Error),
        count(Status::Unsupported)
    );
    s.push_str("<table class=\"cases\"><tr><th>case</th><th>status</th><th>fixture</th><th>seconds</th><th>culprits</th></tr>");
    for r in reports {
        let mut culprits: Vec<String> = Vec::new();
        for c in &r.culprits {
            let k = format!("{} {}", c.host, c.component);
            if !culprits.contains(&k) {
                culprits.push(k);
            }
        }
        let _ = write!(
            s,
            "<tr><td><a href=\"#case-{}\">{}</a></td><td><span class=\"status {}\">{}</span></td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
            esc(&r.case),
            esc(&r.case),
            r.status.as_str(),
            r.status.as_str().to_uppercase(),
            esc(&r.fixture),
            r.timings.total_ms as f64 / 1000.0,
            esc(&culprits.join(", "))
        );
    }
    s.push_str("</table>");
    for r in reports {
        s.push_str(&case_section(
            r,
            pcaps.get(&r.case).map(Vec::as_slice).unwrap_or(&[]),
            dir,
        ));
    }
    s.push_str("</body></html>\n");
    let page = dir.join("index.html");
    std::fs::write(&page, s).map_err(|e| Error::io(format!("writing {}", page.display()), e))?;
    Ok((page, pcaps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Observation, ProbeSpec};
    use crate::topology::Proto;
    use std::net::Ipv4Addr;

    /// A wide matrix (hosts beyond eight, Kubernetes targets) is split in two tables with
    /// upright headers, so it fits the page.
    #[test]
    fn a_wide_matrix_splits_hosts_from_targets_and_turns_its_headers_upright() {
        let hosts: Vec<String> = (0..10).map(|i| format!("pod-{i}")).collect();
        let mut results = Vec::new();
        for a in &hosts {
            for b in hosts.iter().chain([&"svc/web".to_string()]) {
                if a != b {
                    let spec =
                        ProbeSpec::new(a, b, Proto::Tcp, Ipv4Addr::new(10, 0, 0, 1), Some(80));
                    results.push((spec, Observation::new(Outcome::Reachable, None)));
                }
            }
        }
        let mut m = Matrix::new(hosts, vec![Proto::Tcp], results, |_, _, _| {
            Some(Outcome::Reachable)
        });
        m.targets = vec!["svc/web".into()];
        let html = matrix_table(&m, None);
        assert_eq!(
            html.matches("<table class=\"matrix\">").count(),
            2,
            "{html}"
        );
        assert!(html.contains("<p class=\"key\">to Kubernetes targets</p>"));
        assert!(html.contains("<th class=\"v\">pod-9</th>"), "{html}");
        assert!(
            !html.contains("<th class=\"v\">svc/web</th>"),
            "a narrow table keeps its headers"
        );
    }
}
