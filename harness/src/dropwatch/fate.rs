//! The fate of every packet a window saw: a probe's packet can die without a reason the kernel
//! trusts on its own (a bridge floods a frame to hosts it was not for, each drops its copy as
//! `OTHERHOST`), yet be plainly dead because no copy of it survived the window.
//!
//! A window's sends are handled synchronously on the sender's thread (veths hand a packet to
//! the next namespace inside the same softirq), so every copy the kernel makes of the probe's
//! packet — clones for each bridge port, the packet re-encapsulated — shows up (queued, received)
//! between its markers. A copy that reaches a socket stays open (it is read later), one queued
//! somewhere (a qdisc, a neighbour waiting for ARP) stays open too: only a window whose every
//! copy was freed, at least one of them dropped for a reason that ends a path, decides.

/// What happened to the packets (by `skbaddr`) seen inside one window.
#[derive(Debug, Default)]
pub(crate) struct Fates {
    skbs: Vec<(String, State)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    Consumed,
    Dropped { reason: String, location: String },
}

impl Fates {
    /// A packet queued to or received by a device.
    pub(crate) fn seen(&mut self, addr: &str) {
        match self.last(addr) {
            Some(State::Open) => {}
            // A freed address taken again is a new packet.
            _ => self.skbs.push((addr.to_string(), State::Open)),
        }
    }

    /// A packet freed as handled (delivered to the kernel's own end, such as ARP).
    pub(crate) fn consumed(&mut self, addr: &str) {
        self.close(addr, State::Consumed);
    }

    /// A packet dropped, with the kernel's reason.
    pub(crate) fn dropped(&mut self, addr: &str, reason: &str, location: &str) {
        let s = State::Dropped {
            reason: reason.to_string(),
            location: location.to_string(),
        };
        if self.last(addr).is_none() {
            // Dropped before any device saw it (on the sender's way out).
            self.skbs.push((addr.to_string(), s));
        } else {
            self.close(addr, s);
        }
    }

    /// The evidence, when no copy of the window's packets survived and one of them died for a
    /// reason that ends its path; None while any copy may still arrive somewhere.
    pub(crate) fn verdict(&self) -> Option<String> {
        if self.skbs.is_empty() || self.skbs.iter().any(|(_, s)| *s == State::Open) {
            return None;
        }
        let (reason, location) = self.skbs.iter().find_map(|(_, s)| match s {
            State::Dropped { reason, location } if ends_path(reason, location) => {
                Some((reason, location))
            }
            _ => None,
        })?;
        Some(format!(
            "the kernel dropped every copy of it: {reason} at {location}"
        ))
    }

    fn last(&self, addr: &str) -> Option<&State> {
        self.skbs
            .iter()
            .rev()
            .find(|(a, _)| a == addr)
            .map(|(_, s)| s)
    }

    fn close(&mut self, addr: &str, to: State) {
        if let Some((_, s)) = self
            .skbs
            .iter_mut()
            .rev()
            .find(|(a, s)| a == addr && *s == State::Open)
        {
            *s = to;
        }
    }
}

/// Reasons that end a packet's path once no copy of it survived: a frame a host was not for
/// (flooded, or sent to the wrong port), no socket where a packet (an overlay's, say) was
/// delivered, and a bridge that had no port to send a frame to (the bridge frees such frames
/// without a reason). Queue and memory limits are left out: the next send may pass.
fn ends_path(reason: &str, location: &str) -> bool {
    match reason {
        "OTHERHOST" | "NO_SOCKET" => true,
        "NOT_SPECIFIED" => location.starts_with("br_"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_whose_every_copy_died_decides() {
        let mut f = Fates::default();
        f.seen("a");
        f.seen("b");
        f.dropped("b", "OTHERHOST", "ip_rcv_core");
        assert_eq!(f.verdict(), None, "copy a may still arrive");
        f.dropped("a", "OTHERHOST", "ip_rcv_core");
        assert_eq!(
            f.verdict().as_deref(),
            Some("the kernel dropped every copy of it: OTHERHOST at ip_rcv_core")
        );
    }

    #[test]
    fn a_copy_that_reached_a_socket_or_a_queue_keeps_the_window_open() {
        // The frame flooded to pod-a (dropped) and to its destination (in a socket now).
        let mut f = Fates::default();
        f.seen("a");
        f.seen("b");
        f.dropped("a", "OTHERHOST", "ip_rcv_core");
        assert_eq!(f.verdict(), None);
        // A transient drop, or a free the kernel gives no reason for outside a bridge.
        let mut g = Fates::default();
        g.seen("c");
        g.dropped("c", "QDISC_DROP", "__dev_queue_xmit");
        assert_eq!(g.verdict(), None);
        let mut h = Fates::default();
        h.seen("d");
        h.dropped("d", "NOT_SPECIFIED", "tcp_v4_rcv");
        assert_eq!(h.verdict(), None);
        assert_eq!(Fates::default().verdict(), None);
    }

    #[test]
    fn an_address_freed_and_taken_again_is_a_new_packet() {
        // The overlay packet died for want of a socket; the ICMP error made for it took the
        // same address, and was consumed by the sender's kernel.
        let mut f = Fates::default();
        f.seen("a");
        f.dropped("a", "NO_SOCKET", "__udp4_lib_rcv");
        f.seen("a");
        assert_eq!(f.verdict(), None);
        f.consumed("a");
        assert_eq!(
            f.verdict().as_deref(),
            Some("the kernel dropped every copy of it: NO_SOCKET at __udp4_lib_rcv")
        );
        // A bridge with nowhere to send a frame frees it without a reason.
        let mut g = Fates::default();
        g.seen("b");
        g.dropped("b", "NOT_SPECIFIED", "br_handle_frame_finish");
        assert!(g.verdict().is_some());
    }
}
