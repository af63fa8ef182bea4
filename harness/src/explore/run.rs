//! Running an exploration: `jobs` labs at once, each taking the next round until the rounds or
//! the time budget run out; every round judged, its unnamed faults run alone once (cached), and
//! a failing round shrunk and written as a case when asked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::draw::{draw, Offer};
use super::judge::{judge, unnamed, Alone, Verdict};
use super::record::{Exploration, Failure, RoundRecord, Shrunk, Summary};
use super::round::{self, Ran, RoundRun};
use super::shrink::{self, Trial};
use super::target::Target;
use crate::fault::Fault;
use crate::lab::Lab;

/// How to explore.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Stop after this many rounds...
    pub rounds: Option<u64>,
    /// ...or start none after this long (at least one round runs).
    pub budget: Option<Duration>,
    pub max_faults: usize,
    pub jobs: usize,
    /// Shrink failing rounds and write each as a case here.
    pub write_cases: Option<PathBuf>,
}

/// What every job shares: the draw, the round counter, the solo runs seen so far.
struct Shared<'a> {
    target: &'a Target,
    offer: Offer,
    opts: &'a Options,
    next: AtomicU64,
    started: Instant,
    /// What each fault breaks alone, by its spec.
    alone: Mutex<HashMap<String, Alone>>,
}

impl Shared<'_> {
    /// The next round's number, while rounds and time last.
    fn take(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        let rounds = self.opts.rounds.unwrap_or(u64::MAX);
        let over = self
            .opts
            .budget
            .is_some_and(|b| self.started.elapsed() >= b);
        (i < rounds && (i == 0 || !over)).then_some(i)
    }
}

/// Explores `target`; `progress` hears of each round as it ends.
pub async fn explore(
    target: &Target,
    opts: &Options,
    progress: &(dyn Fn(&RoundRecord) + Sync),
) -> Exploration {
    let offer = crate::fault::variants(&target.topology);
    let shared = Shared {
        target,
        offer,
        opts,
        next: AtomicU64::new(0),
        started: Instant::now(),
        alone: Mutex::new(HashMap::new()),
    };
    let jobs = (0..opts.jobs.max(1)).map(|_| job(&shared, progress));
    let mut rounds: Vec<RoundRecord> = futures::future::join_all(jobs)
        .await
        .into_iter()
        .flatten()
        .collect();
    rounds.sort_by_key(|r| r.round);
    Exploration {
        fixture: target.topology.name.clone(),
        seed: opts.seed,
        max_faults: opts.max_faults,
        kinds_offered: shared.offer.len(),
        faults_offered: shared.offer.iter().map(|(_, v)| v.len()).sum(),
        summary: Summary::of(&rounds),
        rounds,
    }
}

/// Runs one round of `faults` and, if it fails a check, shrinks it (writing the case where
/// `opts` says): what `explore` does for each round it draws.
pub async fn replay(target: &Target, opts: &Options, faults: Vec<Fault>) -> RoundRecord {
    let shared = Shared {
        target,
        offer: crate::fault::variants(&target.topology),
        opts,
        next: AtomicU64::new(0),
        started: Instant::now(),
        alone: Mutex::new(HashMap::new()),
    };
    let mut labs = Labs::default();
    match labs.get(&shared).await {
        Ok(()) => one(&shared, &mut labs, 0, faults).await,
        Err(e) => error_record(0, &faults, format!("the lab did not come up: {e}")),
    }
}

/// One lab's rounds; a lab whose heal failed is replaced before the next.
async fn job(shared: &Shared<'_>, progress: &(dyn Fn(&RoundRecord) + Sync)) -> Vec<RoundRecord> {
    let mut out = Vec::new();
    let mut lab = Labs::default();
    while let Some(i) = shared.take() {
        let faults = draw(&shared.offer, shared.opts.seed, i, shared.opts.max_faults);
        let rec = match lab.get(shared).await {
            Ok(()) => one(shared, &mut lab, i, faults).await,
            Err(e) => error_record(i, &faults, format!("the lab did not come up: {e}")),
        };
        progress(&rec);
        out.push(rec);
    }
    out
}

/// A job's lab, brought up when needed and dropped when a heal failed.
#[derive(Default)]
struct Labs(Option<Lab>);

impl Labs {
    async fn get(&mut self, shared: &Shared<'_>) -> crate::error::Result<()> {
        if self.0.is_none() {
            self.0 = Some(Lab::up(&shared.target.topology).await?);
        }
        Ok(())
    }

    /// Runs a round; forgets the lab unless the round ended with it healthy (healed, or
    /// nothing injected), so the next round starts on a fresh one.
    async fn round(&mut self, shared: &Shared<'_>, faults: &[Fault]) -> Option<RoundRun> {
        self.get(shared).await.ok()?;
        let lab = self.0.as_mut()?;
        let run = round::run(lab, &shared.target.topology, faults).await;
        if matches!(run.ran, Ran::HealFailed(_) | Ran::Error(_)) {
            self.0 = None;
        }
        Some(run)
    }
}

async fn one(shared: &Shared<'_>, labs: &mut Labs, i: u64, faults: Vec<Fault>) -> RoundRecord {
    let Some(run) = labs.round(shared, &faults).await else {
        return error_record(i, &faults, "the lab did not come up".into());
    };
    let (status, detail) = match &run.ran {
        Ran::Whole | Ran::HealFailed(_) => ("judged", None),
        Ran::NotInjected(m) => ("not-injected", Some(m.clone())),
        Ran::Unsupported(m) => ("unsupported", Some(m.clone())),
        Ran::Error(m) => ("error", Some(m.clone())),
    };
    let verdict = match status {
        "judged" => Some(verdict_of(shared, labs, &run).await),
        _ => None,
    };
    let mut rec = RoundRecord {
        round: i,
        faults: faults.iter().map(Fault::spec).collect(),
        status,
        detail,
        pairs_broken: run.broken.len(),
        pairs_diagnosed: run.diagnoses.len(),
        verdict,
        shrunk: None,
    };
    let first = rec
        .verdict
        .as_ref()
        .and_then(|v| Failure::all(v).into_iter().next());
    if let (Some(failure), Some(dir)) = (first, &shared.opts.write_cases) {
        rec.shrunk = Some(shrink_and_write(shared, labs, faults, failure, dir, i).await);
    }
    rec
}

/// Judges a round, running each fault no culprit named alone first (once per exploration).
async fn verdict_of(shared: &Shared<'_>, labs: &mut Labs, run: &RoundRun) -> Verdict {
    let t = &shared.target.topology;
    if run.faults.len() > 1 {
        for f in unnamed(run, t) {
            if shared.alone.lock().expect("alone").contains_key(&f.spec()) {
                continue;
            }
            let broke = match labs.round(shared, std::slice::from_ref(&f)).await {
                Some(r) if r.ran == Ran::Whole => r.broken,
                _ => Vec::new(),
            };
            shared.alone.lock().expect("alone").insert(f.spec(), broke);
        }
    }
    let alone = shared.alone.lock().expect("alone").clone();
    judge(run, t, &|f| alone.get(&f.spec()).cloned())
}

/// A trial of a smaller round: does it still fail the same check?
struct Again<'s, 'a> {
    shared: &'s Shared<'a>,
    labs: &'s mut Labs,
    failure: Failure,
    trials: usize,
    last: Option<RoundRun>,
}

impl Trial for Again<'_, '_> {
    async fn fails(&mut self, faults: Vec<Fault>) -> bool {
        self.trials += 1;
        let Some(run) = self.labs.round(self.shared, &faults).await else {
            return false;
        };
        if !matches!(run.ran, Ran::Whole | Ran::HealFailed(_)) {
            return false;
        }
        let v = verdict_of(self.shared, self.labs, &run).await;
        let same = Failure::all(&v).contains(&self.failure);
        if same {
            self.last = Some(run);
        }
        same
    }
}

async fn shrink_and_write(
    shared: &Shared<'_>,
    labs: &mut Labs,
    faults: Vec<Fault>,
    failure: Failure,
    dir: &std::path::Path,
    round: u64,
) -> Shrunk {
    let mut again = Again {
        shared,
        labs,
        failure: failure.clone(),
        trials: 0,
        last: None,
    };
    let set = shrink::fault_set(faults, &mut again).await;
    let set = shrink::params(set, &shared.offer, &mut again).await;
    // The report to write from: the last trial that failed, if it ran the final set.
    let report = match again.last.take().filter(|r| r.faults == set) {
        Some(r) => Some(r),
        None => again.labs.round(shared, &set).await,
    };
    let case =
        report.and_then(|r| super::write::case(shared.target, dir, round, &set, &failure, &r).ok());
    Shrunk {
        failure,
        faults: set.iter().map(Fault::spec).collect(),
        trials: again.trials,
        case,
    }
}

fn error_record(i: u64, faults: &[Fault], detail: String) -> RoundRecord {
    RoundRecord {
        round: i,
        faults: faults.iter().map(Fault::spec).collect(),
        status: "error",
        detail: Some(detail),
        pairs_broken: 0,
        pairs_diagnosed: 0,
        verdict: None,
        shrunk: None,
    }
}
