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
    /// Per packet (as in `skbs`): the devices it was seen on.
    devs: Vec<Vec<String>>,
    /// Events were lost while the window was open (the buffer overflowed): a copy that
    /// survived may be missing from `skbs`, so nothing is decided from them.
    incomplete: bool,
}

/// What a window's fates decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No copy survived, and one died for a reason that ends a path: the evidence.
    Dead(String),
    /// The packet never left its first device: that device's queue dropped it. Final only if
    /// the device cannot send at all (no carrier: its queue is the kernel's discard-all one),
    /// which the sender checks in its own namespace; a full queue (a shaper's) is not.
    QueueDrop { dev: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    Consumed,
    Dropped { reason: String, location: String },
}

impl Fates {
    /// The trace lost events while this window was open.
    pub(crate) fn lost(&mut self) {
        self.incomplete = true;
    }

    /// A packet queued to or received by device `dev`.
    pub(crate) fn seen(&mut self, addr: &str, dev: &str) {
        if self.last(addr) != Some(&State::Open) {
            // A freed address taken again is a new packet.
            self.skbs.push((addr.to_string(), State::Open));
            self.devs.push(Vec::new());
        }
        if let Some(i) = self.open_index(addr) {
            self.devs[i].push(dev.to_string());
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
            self.devs.push(Vec::new());
        } else {
            self.close(addr, s);
        }
    }

    /// What the window decides once no copy of its packets survived; None while any copy may
    /// still arrive somewhere.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        if self.incomplete
            || self.skbs.is_empty()
            || self.skbs.iter().any(|(_, s)| *s == State::Open)
        {
            return None;
        }
        let dead = self.skbs.iter().find_map(|(_, s)| match s {
            State::Dropped { reason, location } if ends_path(reason, location) => Some(format!(
                "the kernel dropped every copy of it: {reason} at {location}"
            )),
            _ => None,
        });
        dead.map(Verdict::Dead).or_else(|| self.queue_drop())
    }

    /// A packet dropped by the queue of the one device it was seen on (the sender's own).
    fn queue_drop(&self) -> Option<Verdict> {
        self.skbs
            .iter()
            .zip(&self.devs)
            .find_map(|((_, s), devs)| match (s, &devs[..]) {
                (State::Dropped { reason, .. }, [dev]) if reason == "QDISC_DROP" => {
                    Some(Verdict::QueueDrop { dev: dev.clone() })
                }
                _ => None,
            })
    }

    fn open_index(&self, addr: &str) -> Option<usize> {
        self.skbs
            .iter()
            .rposition(|(a, s)| a == addr && *s == State::Open)
    }

    fn last(&self, addr: &str) -> Option<&State> {
        self.skbs
            .iter()
            .rev()
            .find(|(a, _)| a == addr)
            .map(|(_, s)| s)
    }

    fn close(&mut self, addr: &str, to: State) {
        if let Some(i) = self.open_index(addr) {
            self.skbs[i].1 = to;
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
        f.seen("a", "cni0");
        f.seen("b", "veth-pod-a");
        f.dropped("b", "OTHERHOST", "ip_rcv_core");
        assert_eq!(f.verdict(), None, "copy a may still arrive");
        f.dropped("a", "OTHERHOST", "ip_rcv_core");
        assert_eq!(f.verdict(), Some(dead("OTHERHOST at ip_rcv_core")));
    }

    #[test]
    fn a_copy_that_reached_a_socket_or_a_queue_keeps_the_window_open() {
        // The frame flooded to pod-a (dropped) and to its destination (in a socket now).
        let mut f = Fates::default();
        f.seen("a", "cni0");
        f.seen("b", "veth-pod-a");
        f.dropped("a", "OTHERHOST", "ip_rcv_core");
        assert_eq!(f.verdict(), None);
        // A queue drop past the first device (a shaper on the way), or a free the kernel gives
        // no reason for outside a bridge.
        let mut g = Fates::default();
        g.seen("c", "eth0");
        g.seen("c", "veth-pod-a");
        g.dropped("c", "QDISC_DROP", "__dev_queue_xmit");
        assert_eq!(g.verdict(), None);
        let mut h = Fates::default();
        h.seen("d", "eth0");
        h.dropped("d", "NOT_SPECIFIED", "tcp_v4_rcv");
        assert_eq!(h.verdict(), None);
        assert_eq!(Fates::default().verdict(), None);
    }

    #[test]
    fn an_address_freed_and_taken_again_is_a_new_packet() {
        // The overlay packet died for want of a socket; the ICMP error made for it took the
        // same address, and was consumed by the sender's kernel.
        let mut f = Fates::default();
        f.seen("a", "eth0");
        f.dropped("a", "NO_SOCKET", "__udp4_lib_rcv");
        f.seen("a", "eth0");
        assert_eq!(f.verdict(), None);
        f.consumed("a");
        assert_eq!(f.verdict(), Some(dead("NO_SOCKET at __udp4_lib_rcv")));
        // A bridge with nowhere to send a frame frees it without a reason.
        let mut g = Fates::default();
        g.seen("b", "veth-pod-a");
        g.dropped("b", "NOT_SPECIFIED", "br_handle_frame_finish");
        assert!(matches!(g.verdict(), Some(Verdict::Dead(_))));
    }

    #[test]
    fn a_window_that_lost_events_decides_nothing_from_its_fates() {
        let mut f = Fates::default();
        f.seen("a", "cni0");
        f.lost();
        f.dropped("a", "OTHERHOST", "ip_rcv_core");
        assert_eq!(
            f.verdict(),
            None,
            "a surviving copy may be among the lost events"
        );
    }

    #[test]
    fn a_packet_its_first_device_queue_dropped_is_for_the_sender_to_judge() {
        let mut f = Fates::default();
        f.seen("a", "eth0");
        f.dropped("a", "QDISC_DROP", "__dev_queue_xmit");
        assert_eq!(f.verdict(), Some(Verdict::QueueDrop { dev: "eth0".into() }));
    }

    fn dead(what: &str) -> Verdict {
        Verdict::Dead(format!("the kernel dropped every copy of it: {what}"))
    }
}
