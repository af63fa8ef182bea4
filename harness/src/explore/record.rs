//! What an exploration reports: each round, the failures it shrank, and the totals.

use std::path::PathBuf;

use serde::Serialize;

use super::judge::Verdict;
use crate::diagnose::Component;

/// One round as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRecord {
    pub round: u64,
    pub faults: Vec<String>,
    /// `judged`, `not-injected` (the faults did not go in together: nothing to judge),
    /// `unsupported` (the kernel lacks what a fault needs) or `error` (the lab or the probes
    /// failed).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub pairs_broken: usize,
    pub pairs_diagnosed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shrunk: Option<Shrunk>,
}

/// A check a round failed, as shrinking keeps it: the same wrong culprit, the same kind
/// missed, or heal failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "check", rename_all = "kebab-case")]
pub enum Failure {
    Wrong { host: String, component: Component },
    Heal,
    Missed { kind: String },
}

impl Failure {
    /// Every check the verdict fails, the ones that fail the exploration first.
    pub fn all(v: &Verdict) -> Vec<Failure> {
        let mut out: Vec<Failure> = Vec::new();
        for w in &v.wrong {
            let f = Failure::Wrong {
                host: w.host.clone(),
                component: w.component,
            };
            if !out.contains(&f) {
                out.push(f);
            }
        }
        if v.heal.is_some() {
            out.push(Failure::Heal);
        }
        for m in &v.missed {
            let kind = m.split(':').next().unwrap_or(m).to_string();
            out.push(Failure::Missed { kind });
        }
        out
    }

    pub fn describe(&self) -> String {
        match self {
            Failure::Wrong { host, component } => format!("wrong culprit {host} {component}"),
            Failure::Heal => "heal failed".into(),
            Failure::Missed { kind } => format!("{kind} missed"),
        }
    }
}

/// A failing round shrunk to its minimal faults.
#[derive(Debug, Clone, Serialize)]
pub struct Shrunk {
    pub failure: Failure,
    pub faults: Vec<String>,
    /// Rounds run while shrinking.
    pub trials: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<PathBuf>,
}

/// The totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub rounds: usize,
    pub judged: usize,
    pub not_injected: usize,
    pub unsupported: usize,
    pub errors: usize,
    pub faults_injected: usize,
    pub pairs_diagnosed: usize,
    pub wrong: usize,
    pub missed: usize,
    pub unexplained: usize,
    pub heal_failures: usize,
    pub cases_written: usize,
}

impl Summary {
    pub fn of(rounds: &[RoundRecord]) -> Summary {
        let mut s = Summary {
            rounds: rounds.len(),
            ..Summary::default()
        };
        for r in rounds {
            match r.status {
                "judged" => s.judged += 1,
                "not-injected" => s.not_injected += 1,
                "unsupported" => s.unsupported += 1,
                _ => s.errors += 1,
            }
            if r.status == "judged" {
                s.faults_injected += r.faults.len();
            }
            s.pairs_diagnosed += r.pairs_diagnosed;
            if let Some(v) = &r.verdict {
                s.wrong += v.wrong.len();
                s.missed += v.missed.len();
                s.unexplained += v.unexplained;
                s.heal_failures += usize::from(v.heal.is_some());
            }
            s.cases_written += usize::from(r.shrunk.as_ref().is_some_and(|x| x.case.is_some()));
        }
        s
    }

    /// Whether the exploration found what fails it: a wrong culprit or a heal failure.
    pub fn failed(&self) -> bool {
        self.wrong > 0 || self.heal_failures > 0
    }

    /// The table people read.
    pub fn table(&self) -> String {
        let rows = [
            ("rounds", self.rounds),
            ("  judged", self.judged),
            ("  faults did not go in together", self.not_injected),
            ("  unsupported by this kernel", self.unsupported),
            ("  errors", self.errors),
            ("faults injected", self.faults_injected),
            ("pairs diagnosed", self.pairs_diagnosed),
            ("wrong culprits", self.wrong),
            ("missed faults", self.missed),
            ("unexplained pairs", self.unexplained),
            ("heal failures", self.heal_failures),
            ("shrunk cases written", self.cases_written),
        ];
        rows.iter()
            .map(|(k, v)| format!("{k:<34}{v:>6}\n"))
            .collect()
    }
}

/// A whole exploration.
#[derive(Debug, Clone, Serialize)]
pub struct Exploration {
    pub fixture: String,
    pub seed: u64,
    pub max_faults: usize,
    /// Kinds and faults the fixture offers.
    pub kinds_offered: usize,
    pub faults_offered: usize,
    pub summary: Summary,
    pub rounds: Vec<RoundRecord>,
}
