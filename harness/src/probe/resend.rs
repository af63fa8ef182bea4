//! A datagram probe's send schedule (ICMP, UDP, DNS): a send every `RESEND` until answered,
//! sooner after a drop the kernel showed or a send a local queue refused; and what those drops
//! decide.

use socket2::Socket;
use tokio::time::Instant;

use super::sock::{send_failed, SendFailed, AFTER_LOCAL_DROP};
use super::spec::{Observation, RESEND};
use super::watch::{decisive, dropped, in_window, DROPS_DECIDE, SPACING};
use crate::dropwatch::Watched;

pub(crate) struct Resender<'a> {
    watch: &'a Option<Watched>,
    next: Instant,
    drops: u32,
    /// The last send, if a local queue refused it (what the probe saw if nothing else came).
    local_drop: Option<Observation>,
}

impl<'a> Resender<'a> {
    pub(crate) fn new(watch: &'a Option<Watched>) -> Self {
        Resender {
            watch,
            next: Instant::now(),
            drops: 0,
            local_drop: None,
        }
    }

    /// When the next send is due.
    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    /// The next send is due now (the payload changed: a smaller path MTU was learned).
    pub(crate) fn now(&mut self) {
        self.next = Instant::now();
        self.local_drop = None;
    }

    /// Sends `payload` if a send is due; `Some` when the send failed with the path's answer.
    pub(crate) fn send_if_due(&mut self, sock: &Socket, payload: &[u8]) -> Option<Observation> {
        if Instant::now() < self.next {
            return None;
        }
        self.next += RESEND;
        self.local_drop = None;
        match in_window(self.watch, || sock.send(payload)) {
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => match send_failed(sock, &e) {
                SendFailed::Answer(o) => Some(o),
                SendFailed::Dropped(o) => {
                    self.local_drop = Some(o);
                    self.next = Instant::now() + AFTER_LOCAL_DROP;
                    None
                }
            },
            _ => None,
        }
    }

    /// After the watch saw more drops: `Some` timeout once they decide the probe, else the
    /// next send comes `SPACING` after the first drop seen.
    pub(crate) fn on_drops(&mut self, sock: &Socket) -> Option<Observation> {
        let w = self.watch.as_ref().expect("a change comes from a watch");
        let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
        let now = decisive(w, fd);
        if now >= DROPS_DECIDE {
            return Some(dropped(w, fd));
        }
        if now > self.drops {
            self.drops = now;
            self.next = self.next.min(Instant::now() + SPACING);
        }
        None
    }

    /// At the deadline: the refused last send if there was one, else `timeout`.
    pub(crate) fn timed_out(self, timeout: Observation) -> Observation {
        self.local_drop.unwrap_or(timeout)
    }
}
