//! Probes held back while a first group is recorded: a round in two groups that share one set
//! of echo servers and one drop watch. The second group starts once the first has ended, or
//! once its window is over (what the first group's slow probes do after that is not recorded).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::topology::Outcome;

/// Which probes wait, the signal that lets them go, and how the first group is doing.
pub(super) struct Held {
    later: Vec<bool>,
    go: watch::Receiver<bool>,
    /// First-group probes not yet ended; `first_done` flips when none is left.
    left: AtomicUsize,
    first_done: watch::Sender<bool>,
    /// A first-group probe has begun sending (the window runs from then).
    started: watch::Sender<bool>,
    failed: AtomicBool,
}

/// The controller's side of a [`Held`] round.
pub(super) struct Release {
    go: watch::Sender<bool>,
    first_done: watch::Receiver<bool>,
    started: watch::Receiver<bool>,
}

impl Held {
    /// A round where the probes with `later[i]` wait for the [`Release`].
    pub(super) fn new(later: Vec<bool>) -> (std::sync::Arc<Held>, Release) {
        let first = later.iter().filter(|l| !**l).count();
        let (go_tx, go_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(first == 0);
        let (started_tx, started_rx) = watch::channel(first == 0);
        let held = Held {
            later,
            go: go_rx,
            left: AtomicUsize::new(first),
            first_done: done_tx,
            started: started_tx,
            failed: AtomicBool::new(false),
        };
        let release = Release {
            go: go_tx,
            first_done: done_rx,
            started: started_rx,
        };
        (std::sync::Arc::new(held), release)
    }

    pub(super) fn is_later(&self, i: usize) -> bool {
        self.later.get(i).copied().unwrap_or(false)
    }

    /// Waits, for a probe of the second group, until the round lets it go.
    pub(super) async fn wait_turn(&self, i: usize) {
        if self.is_later(i) {
            let _ = self.go.clone().wait_for(|g| *g).await;
        } else {
            self.started.send_replace(true);
        }
    }

    /// Records the end of probe `i`.
    pub(super) fn ended(&self, i: usize, outcome: Outcome) {
        if self.is_later(i) {
            return;
        }
        if outcome != Outcome::Reachable {
            self.failed.store(true, Ordering::Release);
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.first_done.send_replace(true);
        }
    }
}

/// Ends the first group however the round ends (an error before any probe ran, a panic), so
/// that the controller never waits for it.
pub(super) struct EndGuard<'a>(pub(super) &'a Held);

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        self.0.started.send_replace(true);
        self.0.first_done.send_replace(true);
    }
}

impl Release {
    /// Waits until the first group has ended or `window` has passed since it began sending;
    /// returns whether a probe of it failed or is still waiting.
    pub(super) async fn first_over(&mut self, held: &Held, window: std::time::Duration) -> bool {
        let _ = self.started.wait_for(|s| *s).await;
        let ended = tokio::time::timeout(window, self.first_done.wait_for(|d| *d))
            .await
            .is_ok();
        !ended || held.failed.load(Ordering::Acquire)
    }

    /// Lets the second group go.
    pub(super) fn go(self) {
        self.go.send_replace(true);
    }
}
