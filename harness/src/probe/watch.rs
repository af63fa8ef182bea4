//! A probe's drop watch: its sends inside marker windows, and what decides it once the kernel
//! showed its packets dropped (see `dropwatch`).

use std::time::Duration;

use super::spec::{Observation, SEEN_DROPPED};
use crate::dropwatch::Watched;
use crate::topology::Outcome;

/// Seen drops of a datagram probe's sends (or their replies) that decide it: one could be a
/// packet of another flow handled in the same window, or a path still settling; two, the
/// second sent `SPACING` after the first was seen dropped, are the path's answer.
pub(crate) const DROPS_DECIDE: u32 = 2;
pub(crate) const SPACING: Duration = Duration::from_millis(10);
/// After a TCP SYN was seen dropped, how long an answer may still come (the drop could be
/// another packet's, handled in the same window) before the probe ends.
pub(crate) const TCP_GRACE: Duration = Duration::from_millis(20);

/// A negative decided by what the kernel showed: the outcome a timeout would have given.
pub(crate) fn dropped(w: &Watched) -> Observation {
    Observation::new(Outcome::Timeout, format!("{SEEN_DROPPED}{}", w.evidence()))
}

/// `send` inside the probe's window where drops can be seen.
pub(crate) fn in_window<T>(watch: &Option<Watched>, send: impl FnOnce() -> T) -> T {
    match watch {
        Some(w) => w.window(send),
        None => send(),
    }
}

pub(crate) async fn changed(watch: &Option<Watched>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}
