//! Ending the neighbour resolutions an earlier probe run left behind.
//!
//! Why: a packet queued on an unresolved neighbour is answered with an ICMP host unreachable
//! when the resolution fails, three seconds after it began (mcast_solicit × retrans_time). The
//! error goes to the 5-tuple that sent it; probes reuse their source ports, so a run started
//! within those seconds would take the previous run's error for its own and say `unreachable`
//! where a fresh client times out. Steps of a case and rounds of an exploration follow each
//! other that closely; a cluster changed by hand does not. Deleting an `incomplete` entry drops
//! its queue without those errors, and the next packet starts a resolution of its own, so the
//! run sees what a fresh client sees (waiting them out instead cost a stepped case 12 s).

use super::Lab;

impl Lab {
    /// Deletes every `incomplete` neighbour entry of every host; returns how many it deleted.
    /// A host it cannot read is skipped: this only spares the next run a stray error.
    pub async fn settle_neighbours(&self) -> usize {
        let forget = self
            .hosts()
            .map(|h| crate::nl::forget_resolving_neighbours(h.handle()));
        futures::future::join_all(forget)
            .await
            .into_iter()
            .map(|n| n.unwrap_or(0))
            .sum()
    }
}
