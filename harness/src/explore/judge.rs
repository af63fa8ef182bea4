//! The checks a round must pass, from what it showed and what each of its faults shows alone:
//! no culprit any injected fault cannot be blamed as (wrong), every fault that breaks something
//! alone named or covered by the others (missed), and heal restoring the lab.

use serde::Serialize;

use super::round::{Ran, RoundRun};
use crate::diagnose::{Component, Culprit, Diagnosis};
use crate::fault::{Blamable, Fault};
use crate::topology::Topology;

/// What one round found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Pairs blamed where no injected fault can be: "from → to: host component".
    pub wrong: Vec<Wrong>,
    /// Faults that break pairs alone and that the round neither named nor covered.
    pub missed: Vec<String>,
    /// Pairs the diagnosis called unexplained.
    pub unexplained: usize,
    /// Why heal failed, if it did.
    pub heal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wrong {
    pub from: String,
    pub to: String,
    pub host: String,
    pub component: Component,
    pub summary: String,
}

impl Verdict {
    /// Whether the round fails a check that fails the exploration (wrong, heal).
    pub fn fails(&self) -> bool {
        !self.wrong.is_empty() || self.heal.is_some()
    }
}

/// What a fault does alone: the pairs it breaks (a round of its own).
pub type Alone = Vec<(String, String)>;

/// The faults of a round that no culprit names: only these need their solo run to be judged
/// missed or not.
pub fn unnamed(run: &RoundRun, t: &Topology) -> Vec<Fault> {
    run.faults
        .iter()
        .filter(|f| !named(run, &f.blamable(t)))
        .cloned()
        .collect()
}

/// Whether some culprit of the round is one a fault may be blamed as.
fn named(run: &RoundRun, b: &Blamable) -> bool {
    run.diagnoses.iter().any(|d| b.allows(&d.culprit))
}

/// Judges a round; `alone` gives what each unnamed fault breaks by itself.
pub fn judge(run: &RoundRun, t: &Topology, alone: &dyn Fn(&Fault) -> Option<Alone>) -> Verdict {
    let blamable: Vec<Blamable> = run.faults.iter().map(|f| f.blamable(t)).collect();
    let mut v = Verdict {
        heal: match &run.ran {
            Ran::HealFailed(m) => Some(m.clone()),
            _ => None,
        },
        ..Verdict::default()
    };
    for d in &run.diagnoses {
        if d.culprit.component == Component::Unexplained {
            v.unexplained += 1;
        } else if !blamable.iter().any(|b| b.allows(&d.culprit)) {
            v.wrong.push(wrong(d));
        }
    }
    for (i, f) in run.faults.iter().enumerate() {
        if named(run, &blamable[i]) {
            continue;
        }
        let broken_alone = match run.faults.len() {
            1 => run.broken.clone(),
            _ => alone(f).unwrap_or_default(),
        };
        let others = |c: &Culprit| (0..blamable.len()).any(|j| j != i && blamable[j].allows(c));
        let covered = |pair: &(String, String)| {
            run.diagnoses
                .iter()
                .any(|d| (&d.from, &d.to) == (&pair.0, &pair.1) && others(&d.culprit))
        };
        if !broken_alone.is_empty() && !broken_alone.iter().all(covered) {
            v.missed.push(f.spec());
        }
    }
    v
}

fn wrong(d: &Diagnosis) -> Wrong {
    Wrong {
        from: d.from.clone(),
        to: d.to.clone(),
        host: d.culprit.host.clone(),
        component: d.culprit.component,
        summary: d.culprit.summary.clone(),
    }
}
