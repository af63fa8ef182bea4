//! One round on a lab that is up and healthy: the faults in, the matrix probed, every changed
//! pair explained, the faults healed and the lab checked healthy again — a case's run with no
//! expectations of its own.

use std::path::Path;

use crate::case::{Case, CaseReport, Phase, Status};
use crate::diagnose::Diagnosis;
use crate::fault::Fault;
use crate::lab::Lab;
use crate::topology::Topology;

/// What a round showed.
#[derive(Debug, Clone)]
pub struct RoundRun {
    pub faults: Vec<Fault>,
    pub ran: Ran,
    /// The pairs whose outcome changed, as (from, to).
    pub broken: Vec<(String, String)>,
    pub diagnoses: Vec<Diagnosis>,
    /// The whole report, for writing a case from it.
    pub report: CaseReport,
}

/// How far a round got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// Injected, probed, explained and healed.
    Whole,
    /// A fault did not go in (it does not apply to the lab as the others left it): nothing to
    /// judge; those before it were healed.
    NotInjected(String),
    /// The kernel lacks what a fault needs (netem, say): nothing to judge.
    Unsupported(String),
    /// Heal failed, or left the lab other than it was.
    HealFailed(String),
    /// Anything else went wrong (the baseline, the probes): nothing to judge.
    Error(String),
}

/// Runs `faults` on `lab` (built from `topology`).
pub async fn run(lab: &mut Lab, topology: &Topology, faults: &[Fault]) -> RoundRun {
    let case = Case {
        name: "explore".into(),
        path: Path::new("explore").into(),
        description: String::new(),
        fixture_path: Path::new(&topology.name).into(),
        topology: topology.clone(),
        faults: faults.to_vec(),
        expect: Vec::new(),
        culprits: None,
        snapshot_dataplane: false,
        snapshot_evidence: true,
        steps: Vec::new(),
    };
    let mut report = case.empty_report();
    case.run_on(lab, &mut report).await;
    let message = report.message.clone().unwrap_or_default();
    let ran = match (report.status, report.failed_at) {
        (Status::Pass | Status::Fail, None) => Ran::Whole,
        (Status::Unsupported, _) => Ran::Unsupported(message),
        (_, Some(Phase::Inject)) => Ran::NotInjected(message),
        (_, Some(Phase::Heal)) => Ran::HealFailed(message),
        _ => Ran::Error(message),
    };
    RoundRun {
        faults: faults.to_vec(),
        ran,
        broken: broken_pairs(&report),
        diagnoses: report.diagnoses.clone(),
        report,
    }
}

/// The pairs with a cell other than the healthy lab's.
fn broken_pairs(r: &CaseReport) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = r
        .matrix
        .iter()
        .flat_map(|m| m.mismatches())
        .map(|c| (c.from.clone(), c.to.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}
