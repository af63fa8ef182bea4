//! A probe's drop watch: its sends inside marker windows, and what decides it once the kernel
//! showed its packets dropped (see `dropwatch`).

use std::os::fd::RawFd;
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
pub(crate) fn dropped(w: &Watched, sock: RawFd) -> Observation {
    let why = match (w.dropped(), dead_queue(w, sock)) {
        (0, Some(dev)) => format!("{dev} has no carrier: its queue dropped it"),
        _ => w.evidence(),
    };
    Observation::new(Outcome::Timeout, format!("{SEEN_DROPPED}{why}"))
}

/// The sends that decide: those the kernel was seen dropping, and those the queue of the
/// sender's own device dropped where that device cannot send at all.
pub(crate) fn decisive(w: &Watched, sock: RawFd) -> u32 {
    let queued = match dead_queue(w, sock) {
        Some(_) => w.queue_drops().0,
        None => 0,
    };
    w.dropped() + queued
}

/// The sender's device whose queue dropped its sends, if the device has no carrier (asked
/// through the probe's socket: in the sender's namespace).
fn dead_queue(w: &Watched, sock: RawFd) -> Option<String> {
    let (n, dev) = w.queue_drops();
    let dev = dev.filter(|_| n > 0)?;
    (!super::sock::can_send(sock, &dev)).then_some(dev)
}

/// `send` inside the probe's window where drops can be seen.
pub(crate) fn in_window<T>(watch: &Option<Watched>, send: impl FnOnce() -> T) -> T {
    match watch {
        Some(w) => w.window(send),
        None => send(),
    }
}

/// The lab's namespaces with base chains: where an nft verdict can drop a probe's packet, and
/// so where a watch without tracefs looks (see `Book::watch_nft`).
pub(crate) async fn filtering_namespaces(lab: &crate::lab::Lab) -> Vec<crate::netns::Netns> {
    let checks = lab.hosts().map(|h| async move {
        crate::nft::has_base_chains(&h.ns, &h.name)
            .await
            .unwrap_or(false)
            .then(|| h.ns.clone())
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

pub(crate) async fn changed(watch: &Option<Watched>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}
