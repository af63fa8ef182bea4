//! Who reaches whom: expected against observed, for every (from, to, protocol).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::Serialize;

use crate::probe::{Observation, ProbeSpec, FOREIGN_SERVER, FOREIGN_SILENT};
use crate::topology::{Outcome, Proto};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    /// `203.0.113.10:80`, or the bare address for ICMP.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Outcome>,
    pub observed: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_as: Option<std::net::IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Reachable, but the server saw another source than the lab's plan intends (see
    /// `lab::intent`): what it saw and what was intended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translation: Option<String>,
    /// The host that answered (for a Service: the endpoint that served this probe). Which one
    /// does is numgen's draw: in JSON, never in a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
}

impl Cell {
    /// A probe this kernel cannot make (no SCTP here): it expects nothing, as the fixture's
    /// expectation holds on a kernel that has the protocol; shown, not judged.
    pub fn undecidable(&self) -> bool {
        crate::probe::kernel_lacked(self.observed, self.detail.as_deref())
    }

    pub fn matches(&self) -> bool {
        self.expected.is_none_or(|e| e == self.observed) && self.translation.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matrix {
    pub hosts: Vec<String>,
    /// Kubernetes targets probed besides hosts (columns only: they never send).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    pub protocols: Vec<Proto>,
    pub cells: Vec<Cell>,
    /// A bounded matrix: which pairs it probed of all, and why those (see `Topology::coverage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<String>,
    /// A bounded matrix's anchor hosts: the columns its table draws.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anchors: Vec<String>,
    #[serde(skip)]
    index: CellIndex,
}

/// Where each (from, to, protocol) sits in `cells`, built on the first lookup: a 1,000-pod
/// matrix has ~30,000 cells, and comparing two rounds cell by cell must not be quadratic. Not
/// part of what a matrix is (equal, cloned and printed as nothing).
#[derive(Default)]
struct CellIndex(std::sync::OnceLock<HashMap<(String, String, Proto), usize>>);

impl Clone for CellIndex {
    fn clone(&self) -> Self {
        CellIndex::default()
    }
}

impl PartialEq for CellIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CellIndex {}

impl std::fmt::Debug for CellIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellIndex")
    }
}

impl Matrix {
    /// Builds a matrix from probe results; `expect` gives the outcome each probe should have.
    pub fn new(
        hosts: Vec<String>,
        protocols: Vec<Proto>,
        results: Vec<(ProbeSpec, Observation)>,
        expect: impl Fn(&str, &str, Proto) -> Option<Outcome>,
    ) -> Matrix {
        let cells = results
            .into_iter()
            .map(|(s, o)| Cell {
                expected: (!o.is_kernel_lacking())
                    .then(|| expect(&s.from, &s.to, s.proto))
                    .flatten(),
                target: match s.port {
                    Some(p) => format!("{}:{p}", s.dst),
                    None => s.dst.to_string(),
                },
                from: s.from,
                to: s.to,
                proto: s.proto,
                observed: o.outcome,
                seen_as: o.seen_as,
                detail: o.detail,
                translation: None,
                served_by: o.served_by,
            })
            .collect();
        Matrix {
            hosts,
            targets: Vec::new(),
            protocols,
            cells,
            coverage: None,
            anchors: Vec::new(),
            index: CellIndex::default(),
        }
    }

    /// The same matrix, saying which pairs of `t` it covers when that is not all of them.
    pub fn with_coverage(mut self, t: &crate::topology::Topology) -> Matrix {
        let c = t.coverage();
        if c.is_bounded() {
            self.coverage = Some(c.describe());
            self.anchors = c.anchors.iter().map(|&i| t.hosts[i].name.clone()).collect();
        }
        self
    }

    /// The same matrix with target columns after the host columns.
    pub fn with_targets(mut self, targets: Vec<String>) -> Matrix {
        self.targets = targets;
        self
    }

    /// Every column: hosts (a bounded matrix's anchors), then targets.
    pub fn columns(&self) -> Vec<&String> {
        let hosts = if self.anchors.is_empty() {
            &self.hosts
        } else {
            &self.anchors
        };
        hosts.iter().chain(&self.targets).collect()
    }

    /// The protocols a column's cells use from `from`, in order: the matrix's protocols for a
    /// host, whatever the target is probed with for a target.
    pub fn protocols_of(&self, from: &str, to: &str) -> Vec<Proto> {
        if self.hosts.iter().any(|h| h == to) {
            return self.protocols.clone();
        }
        self.cells
            .iter()
            .filter(|c| c.from == from && c.to == to)
            .map(|c| c.proto)
            .collect()
    }

    pub fn cell(&self, from: &str, to: &str, proto: Proto) -> Option<&Cell> {
        let is = |c: &&Cell| c.from == from && c.to == to && c.proto == proto;
        let index = self.index.0.get_or_init(|| {
            self.cells
                .iter()
                .enumerate()
                .map(|(i, c)| ((c.from.clone(), c.to.clone(), c.proto), i))
                .collect()
        });
        let key = (from.to_string(), to.to_string(), proto);
        match index.get(&key).and_then(|&i| self.cells.get(i)) {
            Some(c) if is(&c) => Some(c),
            // `cells` is public: if it changed since the index was built, look it up plainly.
            _ if index.len() != self.cells.len() || index.contains_key(&key) => {
                self.cells.iter().find(is)
            }
            _ => None,
        }
    }

    pub fn observed(&self, from: &str, to: &str, proto: Proto) -> Option<Outcome> {
        self.cell(from, to, proto).map(|c| c.observed)
    }

    pub fn mismatches(&self) -> Vec<&Cell> {
        self.cells.iter().filter(|c| !c.matches()).collect()
    }

    /// One line: "36 probes, 30 reachable, 6 as expected unreachable, 0 not as expected".
    pub fn summary(&self) -> String {
        let ok = |c: &&Cell| c.matches();
        let reachable = self
            .cells
            .iter()
            .filter(ok)
            .filter(|c| c.observed == Outcome::Reachable)
            .count();
        let negative = self.cells.iter().filter(ok).count() - reachable;
        format!(
            "{} probes, {reachable} reachable, {negative} as expected unreachable, {} not as expected",
            self.cells.len(),
            self.mismatches().len()
        )
    }

    /// Sets every cell's expectation anew.
    pub fn expect_with(&mut self, expect: impl Fn(&str, &str, Proto) -> Option<Outcome>) {
        for c in &mut self.cells {
            c.expected = (!c.undecidable())
                .then(|| expect(&c.from, &c.to, c.proto))
                .flatten();
        }
    }

    /// The observed outcomes only, for comparing two runs.
    pub fn outcomes(&self) -> BTreeMap<(String, String, Proto), Outcome> {
        self.cells
            .iter()
            .map(|c| ((c.from.clone(), c.to.clone(), c.proto), c.observed))
            .collect()
    }

    /// A table for people: rows are sources, columns destinations, one symbol per protocol.
    pub fn render(&self) -> String {
        let width = self
            .hosts
            .iter()
            .map(|h| h.chars().count())
            .max()
            .unwrap_or(4)
            .max(self.protocols.len() + 1)
            + 2;
        let pad =
            |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
        let mut out = String::new();
        out.push_str(&pad("from \\ to", width.max(11)));
        // Target columns are as wide as their names; host columns share one width.
        let col_width = |h: &str| {
            if self.hosts.iter().any(|x| x == h) {
                width
            } else {
                h.chars().count() + 2
            }
        };
        for h in self.columns() {
            out.push_str(&pad(h, col_width(h)));
        }
        out.truncate(out.trim_end().len());
        let _ = writeln!(out);
        for from in &self.hosts {
            let mut line = pad(from, width.max(11));
            for to in self.columns() {
                let cell = if from == to {
                    "·".to_string()
                } else {
                    let mut s = String::new();
                    let mut wrong = false;
                    for p in self.protocols_of(from, to) {
                        match self.cell(from, to, p) {
                            Some(c) => {
                                s.push(c.observed.symbol());
                                wrong |= !c.matches();
                            }
                            None => s.push(' '),
                        }
                    }
                    if wrong {
                        s.push('!');
                    }
                    s
                };
                line.push_str(&pad(&cell, col_width(to)));
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let protos: Vec<&str> = self.protocols.iter().map(|p| p.as_str()).collect();
        let dns = if self.cells.iter().any(|c| c.proto == Proto::Dns) {
            ", N nxdomain, S servfail"
        } else {
            ""
        };
        let ports = self.targets.iter().any(|t| {
            matches!(
                crate::topology::Target::parse(t),
                Some(crate::topology::Target::Port { .. })
            )
        });
        let targets = match (self.targets.is_empty(), ports) {
            (true, _) => String::new(),
            (false, false) => "; targets: their Service's protocol, dns/ a lookup".to_string(),
            (false, true) => "; targets: their Service's protocol, dns/ a lookup, POD:PORT each protocol the pod declares there".to_string(),
        };
        let _ = writeln!(
            out,
            "({}{targets}; ✓ reachable, R refused, U unreachable, T timeout{dns}, - unsupported, ! not as expected)",
            protos.join(" ")
        );
        if let Some(c) = &self.coverage {
            let _ = writeln!(out, "{c}");
            let _ = writeln!(out, "{}", self.beyond_columns());
        }
        out
    }

    /// The table when it fits `width` columns; otherwise the matrix grouped by source
    /// ([`Matrix::render_by_source`]). No width: the table.
    pub fn render_fit(&self, width: Option<usize>) -> String {
        let table = self.render();
        let widest = table.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        match width {
            Some(w) if widest > w => self.render_by_source(w),
            _ => table,
        }
    }

    /// One block per source, for terminals narrower than the table: how many of its probes
    /// are reachable, then each probe that is not (as expected, or marked `!` when not), its
    /// lines wrapped at `width`.
    pub fn render_by_source(&self, width: usize) -> String {
        let name_w = self
            .hosts
            .iter()
            .map(|h| h.chars().count())
            .max()
            .unwrap_or(4)
            + 2;
        let mut out = String::new();
        for from in &self.hosts {
            let cells: Vec<&Cell> = self.cells.iter().filter(|c| &c.from == from).collect();
            if cells.is_empty() {
                continue;
            }
            let reachable = cells
                .iter()
                .filter(|c| c.matches() && c.observed == Outcome::Reachable)
                .count();
            let item = |c: &&Cell| {
                let mark = if c.matches() { "" } else { "!" };
                let want = match (c.matches(), c.expected) {
                    (false, Some(e)) => format!(" (expected {})", e.symbol()),
                    _ => String::new(),
                };
                format!("{} {} {}{mark}{want}", c.to, c.proto, c.observed.symbol())
            };
            let negative: Vec<String> = cells
                .iter()
                .filter(|c| c.matches() && c.observed != Outcome::Reachable)
                .map(item)
                .collect();
            let wrong: Vec<String> = cells.iter().filter(|c| !c.matches()).map(item).collect();
            let head = format!(
                "{from:<name_w$}✓ {reachable} of {} reachable as expected",
                cells.len()
            );
            let _ = writeln!(out, "{head}");
            let indent = " ".repeat(name_w);
            for (label, items) in [
                ("not as expected", wrong),
                ("not reachable, as expected", negative),
            ] {
                if items.is_empty() {
                    continue;
                }
                let first = format!("{indent}{label}: ");
                out.push_str(&wrap(&first, &indent, &items, width));
            }
        }
        let _ = writeln!(
            out,
            "(grouped by source to fit {width} columns; --matrix table draws the table)\n\
             (✓ reachable, R refused, U unreachable, T timeout, N nxdomain, S servfail,\n \
             - unsupported, ! not as expected)"
        );
        out
    }

    /// A bounded matrix's probes outside the drawn columns, counted by outcome.
    fn beyond_columns(&self) -> String {
        let mut counts: BTreeMap<Outcome, usize> = BTreeMap::new();
        let mut wrong = 0;
        let columns: std::collections::HashSet<&String> = self.columns().into_iter().collect();
        for c in self.cells.iter().filter(|c| !columns.contains(&c.to)) {
            *counts.entry(c.observed).or_default() += 1;
            wrong += usize::from(!c.matches());
        }
        let n: usize = counts.values().sum();
        let by: Vec<String> = counts
            .iter()
            .map(|(o, k)| format!("{k} {}", o.as_str()))
            .collect();
        format!(
            "besides the columns drawn: {n} probes ({}), {wrong} not as expected",
            if by.is_empty() {
                "none".to_string()
            } else {
                by.join(", ")
            }
        )
    }

    /// Probes whose echo came back from a translated source: "pod-a → ext: seen as 203.0.113.1".
    /// `is_own(host, address)` says whether an address is one of the host's own.
    pub fn translations(&self, is_own: impl Fn(&str, std::net::IpAddr) -> bool) -> Vec<String> {
        let mut seen: BTreeMap<(String, String, std::net::IpAddr), Vec<Proto>> = BTreeMap::new();
        for c in &self.cells {
            if let Some(s) = c.seen_as {
                if !is_own(&c.from, s) {
                    seen.entry((c.from.clone(), c.to.clone(), s))
                        .or_default()
                        .push(c.proto);
                }
            }
        }
        seen.into_iter()
            .map(|((f, t, s), ps)| {
                let ps: Vec<&str> = ps.iter().map(|p| p.as_str()).collect();
                format!("{f} → {t}: seen as {s} ({})", ps.join(", "))
            })
            .collect()
    }

    /// The targets whose port a server that is not netfault's holds, one line each
    /// (`pod-b tcp/80: a server that is not netfault's ...`).
    pub fn foreign_servers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .cells
            .iter()
            .filter(|c| {
                c.detail
                    .as_deref()
                    .is_some_and(|d| d.contains(FOREIGN_SERVER) || d.contains(FOREIGN_SILENT))
            })
            .map(|c| {
                let port = c.target.rsplit(':').next().unwrap_or("");
                format!(
                    "{} {}/{port}: a server that is not netfault's listens there; probed as it is \
                     (a connection it accepts, or any UDP answer, counts as reachable)",
                    c.to, c.proto
                )
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every cell that is not as expected, one line each.
    pub fn render_mismatches(&self) -> Vec<String> {
        self.mismatches()
            .iter()
            .map(|c| {
                if let (Some(t), true) =
                    (&c.translation, c.expected.is_none_or(|e| e == c.observed))
                {
                    return format!("{} → {} {}: {} {t}", c.from, c.to, c.proto, c.observed);
                }
                format!(
                    "{} → {} {}: expected {}, observed {}{}",
                    c.from,
                    c.to,
                    c.proto,
                    c.expected.map(|e| e.as_str()).unwrap_or("?"),
                    c.observed,
                    c.detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )
            })
            .collect()
    }
}

/// What a fixture expects of every probe, decided from the fixture alone (nothing runs): the
/// matrix with expected outcomes as "observed", and why each pair that is not reachable is not.
pub fn truth_table(t: &crate::topology::Topology) -> (Matrix, Vec<String>) {
    let mut results = Vec::new();
    let mut why: BTreeMap<(String, String, Outcome, String), Vec<Proto>> = BTreeMap::new();
    for s in crate::probe::pairs_of(t) {
        let Some((o, origin)) = t.healthy_with_origin(&s.from, &s.to, s.proto) else {
            continue;
        };
        if o != Outcome::Reachable {
            why.entry((s.from.clone(), s.to.clone(), o, origin))
                .or_default()
                .push(s.proto);
        }
        results.push((s, crate::probe::Observation::new(o, None)));
    }
    let m = Matrix::new(
        t.host_names().into_iter().map(String::from).collect(),
        t.probe.protocols.clone(),
        results,
        |f, to, p| t.healthy(f, to, p),
    )
    .with_targets(t.target_names())
    .with_coverage(t);
    let lines = why
        .into_iter()
        .map(|((f, to, o, origin), ps)| {
            let ps: Vec<&str> = ps.iter().map(|p| p.as_str()).collect();
            format!("{f} → {to} {}: {o} ({origin})", ps.join(","))
        })
        .collect();
    (m, lines)
}

/// `items` after `first`, comma-separated, lines broken before `width` and continued at `indent`.
fn wrap(first: &str, indent: &str, items: &[String], width: usize) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    for (i, it) in items.iter().enumerate() {
        let sep = if i + 1 < items.len() { ", " } else { "" };
        let piece = format!("{it}{sep}");
        let fits = line.chars().count() + piece.trim_end().chars().count() <= width;
        if !fits && line.trim().len() > first.trim().len() {
            out.push_str(line.trim_end());
            out.push('\n');
            line = format!("{indent}  ");
        }
        line.push_str(&piece);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn m() -> Matrix {
        let spec = |f: &str, t: &str, p| ProbeSpec::new(f, t, p, Ipv4Addr::new(10, 0, 0, 1), None);
        let obs = |o| Observation::new(o, None);
        Matrix::new(
            vec!["a".into(), "b".into()],
            vec![Proto::Icmp, Proto::Tcp],
            vec![
                (spec("a", "b", Proto::Icmp), obs(Outcome::Reachable)),
                (spec("a", "b", Proto::Tcp), obs(Outcome::Timeout)),
                (spec("b", "a", Proto::Icmp), obs(Outcome::Unreachable)),
                (spec("b", "a", Proto::Tcp), obs(Outcome::Refused)),
            ],
            |f, _, _| {
                if f == "a" {
                    Some(Outcome::Reachable)
                } else {
                    None
                }
            },
        )
    }

    #[test]
    fn a_narrow_terminal_gets_the_matrix_grouped_by_source() {
        let m = m();
        assert_eq!(m.render_fit(None), m.render());
        assert_eq!(m.render_fit(Some(200)), m.render());
        let narrow = m.render_fit(Some(20));
        assert_eq!(narrow, m.render_by_source(20));
        let lines: Vec<&str> = narrow.lines().collect();
        assert_eq!(lines[0], "a  ✓ 1 of 2 reachable as expected");
        assert_eq!(lines[1], "   not as expected: b tcp T! (expected ✓)");
        assert_eq!(lines[2], "b  ✓ 0 of 2 reachable as expected");
        assert_eq!(lines[3], "   not reachable, as expected: a icmp U,");
        assert_eq!(lines[4], "     a tcp R", "wrapped at the width");
    }

    #[test]
    fn table_marks_cells_not_as_expected() {
        let t = m().render();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].starts_with("a") && lines[1].contains("✓T!"), "{t}");
        assert!(lines[2].contains("UR") && !lines[2].contains('!'), "{t}");
        assert_eq!(m().mismatches().len(), 1);
        assert_eq!(
            m().render_mismatches(),
            ["a → b tcp: expected reachable, observed timeout"]
        );
    }
}
