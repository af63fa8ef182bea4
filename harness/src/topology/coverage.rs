//! Which host pairs a lab's matrix probes: every ordered pair, or — for big labs, where all
//! pairs are ~N² probes per protocol — a bounded set whose size and rule the output states.

use std::collections::BTreeSet;

use super::model::{MatrixKind, Topology};

/// Up to this many ordered host pairs (~128 hosts) `auto` probes all of them: on two cores
/// that is a few seconds per round (100 pods: 2 s; 200 pods, 40,000 pairs: 8 s).
pub const AUTO_ALL_PAIRS: usize = 16_384;

/// The probed host pairs (indexes into `Topology::hosts`), and what they cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub pairs: Vec<(usize, usize)>,
    /// Ordered pairs of distinct hosts: what all pairs would be.
    pub all: usize,
    /// None for all pairs; else the rule that chose them, for people.
    pub bounded: Option<String>,
    /// In a bounded matrix, the hosts every host is probed with (the columns worth drawing).
    pub anchors: Vec<usize>,
}

impl Coverage {
    /// One line for the output: how many pairs were probed of how many, and why those.
    pub fn describe(&self) -> String {
        match &self.bounded {
            None => format!("all {} host pairs", self.all),
            Some(rule) => format!(
                "bounded matrix: {} of {} host pairs ({:.1}%): {rule}",
                self.pairs.len(),
                self.all,
                100.0 * self.pairs.len() as f64 / self.all.max(1) as f64
            ),
        }
    }

    pub fn is_bounded(&self) -> bool {
        self.bounded.is_some()
    }
}

impl Topology {
    /// The host pairs the matrix probes, in host order (sources, then destinations).
    pub fn coverage(&self) -> Coverage {
        let n = self.hosts.len();
        let all = n * n.saturating_sub(1);
        let bounded = match self.probe.matrix {
            MatrixKind::All => false,
            MatrixKind::Bounded => true,
            MatrixKind::Auto => all > AUTO_ALL_PAIRS,
        };
        if !bounded {
            let pairs = (0..n)
                .flat_map(|a| (0..n).filter(move |b| *b != a).map(move |b| (a, b)))
                .collect();
            return Coverage {
                pairs,
                all,
                bounded: None,
                anchors: Vec::new(),
            };
        }
        let anchors = self.anchors();
        let sample = self.probe.sample;
        let pods: Vec<usize> = (0..n)
            .filter(|i| self.hosts[*i].as_pod().is_some())
            .collect();
        let mut set = BTreeSet::new();
        for a in 0..n {
            for &b in &anchors {
                if a != b {
                    set.insert((a, b));
                    set.insert((b, a));
                }
            }
        }
        // Each pod to `sample` others spread evenly over the pod list (so across nodes).
        let m = pods.len();
        let step = (m / (sample + 1)).max(1);
        for (i, &p) in pods.iter().enumerate() {
            for j in 1..=sample.min(m.saturating_sub(1)) {
                let q = pods[(i + j * step) % m];
                if q != p {
                    set.insert((p, q));
                }
            }
        }
        Coverage {
            pairs: set.into_iter().collect(),
            all,
            bounded: Some(format!(
                "every host with every node, external host and the first pod of each node and \
                 namespace ({} anchors, both ways), and each pod to {sample} others spread over \
                 the pods",
                anchors.len()
            )),
            anchors,
        }
    }

    /// The hosts every host is probed with in a bounded matrix: nodes, external hosts, and the
    /// first pod of each (node, namespace).
    fn anchors(&self) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        (0..self.hosts.len())
            .filter(|&i| match self.hosts[i].as_pod() {
                Some(p) => seen.insert((p.node.clone(), p.namespace.clone())),
                None => true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::{parse_fixture, Source, Topology};

    /// Ordered host-name pairs of `coverage()`.
    fn probed_pairs(t: &Topology) -> Vec<(&str, &str)> {
        t.coverage()
            .pairs
            .into_iter()
            .map(|(a, b)| (t.hosts[a].name.as_str(), t.hosts[b].name.as_str()))
            .collect()
    }

    fn pods(n: usize, matrix: &str) -> crate::topology::Topology {
        let text = format!(
            "description = \"d\"\n[node.node1]\npod_cidr = \"10.244.0.0/20\"\nuplink = \"203.0.113.1/24\"\npods = {n}\n[external.ext]\nuplink = \"203.0.113.10/24\"\n[probe]\nmatrix = \"{matrix}\"\n"
        );
        parse_fixture(&Source::new("f.toml", &text)).unwrap()
    }

    #[test]
    fn small_labs_probe_every_pair_and_big_ones_a_bounded_set() {
        let c = pods(10, "auto").coverage();
        assert_eq!(
            (c.pairs.len(), c.all, c.is_bounded()),
            (12 * 11, 132, false)
        );
        assert_eq!(c.describe(), "all 132 host pairs");
        let c = pods(1000, "auto").coverage();
        assert!(c.is_bounded());
        // Anchors node1, pod-1, ext: with every host both ways (minus each anchor pair counted
        // once per direction), plus four sampled pods per pod.
        assert_eq!(c.anchors.len(), 3);
        assert!(c.pairs.len() > 2 * 1000 * 3 && c.pairs.len() < 2 * 1002 * 3 + 4 * 1000);
        assert!(c.describe().starts_with(&format!(
            "bounded matrix: {} of 1003002 host pairs",
            c.pairs.len()
        )));
        let mut sorted = c.pairs.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), c.pairs.len(), "no pair twice");
        assert!(c.pairs.iter().all(|(a, b)| a != b));
    }

    #[test]
    fn each_pod_probes_its_sample_spread_over_the_pods() {
        let t = pods(100, "bounded");
        let pairs = probed_pairs(&t);
        let mut from_pod_50: Vec<&str> = pairs
            .iter()
            .filter(|(a, b)| *a == "pod-50" && b.starts_with("pod-") && *b != "pod-1")
            .map(|(_, b)| *b)
            .collect();
        from_pod_50.sort();
        // 100 pods, 4 each: every 20th pod on from pod-50 (wrapping), across the whole list.
        assert_eq!(from_pod_50, ["pod-10", "pod-30", "pod-70", "pod-90"]);
        // And pod-50 is probed by the anchors and by the pods whose sample it is.
        assert!(pairs.contains(&("node1", "pod-50")) && pairs.contains(&("pod-30", "pod-50")));
    }

    #[test]
    fn a_wrong_matrix_or_sample_is_a_located_error() {
        let text = "description = \"d\"\n[node.node1]\npod_cidr = \"10.244.0.0/24\"\nuplink = \"203.0.113.1/24\"\n[probe]\nmatrix = \"some\"\nsample = 0\n";
        let e = parse_fixture(&Source::new("f.toml", text))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown matrix \"some\"") && e.contains("\"bounded\""),
            "{e}"
        );
        assert!(
            e.contains("sample = 0 is out of range") && e.contains("f.toml:"),
            "{e}"
        );
    }

    #[test]
    fn all_overrides_the_bound() {
        let c = pods(200, "all").coverage();
        assert_eq!(c.pairs.len(), c.all);
    }
}
