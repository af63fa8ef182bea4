//! A whole lab's diagnosis (`netfault diagnose LAB`): every pair not as the fixture expects,
//! explained, as one report.

use serde::Serialize;

use super::vocab::{Component, Culprit, Diagnosis, Evidence, Hop};
use super::walk::{explain_pairs, explain_translations};
use crate::error::Result;
use crate::lab::Lab;
use crate::topology::{Outcome, Proto};

/// `netfault diagnose` (JSON contract): every healthy pair of the fixture, probed; the broken
/// ones explained.
#[derive(Debug, Clone, Serialize)]
pub struct LabDiagnosis {
    pub lab: String,
    pub healthy: bool,
    pub pairs: Vec<PairReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairReport {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub outcome: Outcome,
    pub expected: Outcome,
    pub culprit: Option<Culprit>,
    pub hops: Vec<Hop>,
    pub evidence: Vec<Evidence>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Probes a lab's healthy pairs and explains each that is not as the fixture expects.
pub async fn diagnose_lab(lab: &Lab, name: &str) -> Result<(LabDiagnosis, Vec<Diagnosis>)> {
    let t = lab.topology();
    let expected_reachable = |f: &str, to: &str, p| t.healthy(f, to, p) == Some(Outcome::Reachable);
    let (m, recorded) =
        super::evidence::recorded_matrix(lab, expected_reachable, &Default::default()).await?;
    let broken: Vec<(String, String, Proto, Outcome)> = m
        .cells
        .iter()
        .filter(|c| c.expected == Some(Outcome::Reachable) && c.observed != Outcome::Reachable)
        .map(|c| (c.from.clone(), c.to.clone(), c.proto, c.observed))
        .collect();
    // The monitors finish printing the round's traces while the walk runs.
    let (ds, recorded) = tokio::join!(explain_pairs(lab, &broken, None), recorded.collect());
    let mut ds = ds?;
    // What the round recorded, and what decided each probe, as the kernel showed it.
    super::evidence::attach_round(lab, &mut ds, &m, &recorded);
    ds.extend(explain_translations(lab, &m, None).await?);
    let mut pairs = Vec::new();
    for c in m.cells.iter().filter(|c| c.expected.is_some()) {
        let expected = c.expected.expect("filtered");
        let d = ds
            .iter()
            .find(|d| d.from == c.from && d.to == c.to && d.protocols.contains(&c.proto));
        let culprit = match d {
            Some(d) => Some(d.culprit.clone()),
            None if c.observed != expected => Some(Culprit {
                host: c.from.clone(),
                component: Component::Unexplained,
                summary: format!("expected {expected}, observed {}: the walk explains only pairs that should be reachable", c.observed),
            }),
            None => None,
        };
        pairs.push(PairReport {
            from: c.from.clone(),
            to: c.to.clone(),
            proto: c.proto,
            outcome: c.observed,
            expected,
            culprit,
            hops: d
                .map(|d| d.forward.iter().chain(&d.reply).cloned().collect())
                .unwrap_or_default(),
            evidence: d.map(|d| d.evidence.clone()).unwrap_or_default(),
            notes: d.map(|d| d.notes.clone()).unwrap_or_default(),
        });
    }
    let healthy = pairs.iter().all(|p| p.culprit.is_none());
    Ok((
        LabDiagnosis {
            lab: name.to_string(),
            healthy,
            pairs,
        },
        ds,
    ))
}
