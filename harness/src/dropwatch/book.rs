//! A probe run's book of evidence: per probe, how many of its sends the kernel was seen to drop
//! and why. The tracer fills it from the trace; echo servers add replies they could not send.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use super::tracer::{self, Sink, Tracer};

/// The evidence of one probe run. Dropping it stops the tracer filling it.
pub struct Book {
    inner: Arc<Inner>,
    tracer: &'static Tracer,
}

struct Inner {
    run: u64,
    slots: Vec<Slot>,
    /// (the probe's source as the echo server saw it, the server's port) → probe.
    flows: Mutex<HashMap<(SocketAddrV4, u16), usize>>,
}

struct Slot {
    /// The probe's source (where known) and destination addresses.
    ends: (Option<Ipv4Addr>, Ipv4Addr),
    state: Mutex<State>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// Sends whose window has been read back.
    closed: u32,
    /// Sends (or replies) the kernel was seen to drop.
    dropped: u32,
    evidence: Vec<String>,
    /// Sends dropped by the queue of the sender's own device, and that device: final only if
    /// the device cannot send (see `fate::Verdict::QueueDrop`).
    queue_drops: u32,
    queue_dev: Option<String>,
}

impl Book {
    /// A book for probes with these (source, destination) addresses; None where drops cannot be
    /// seen (no tracefs: not root of the machine; or `NETFAULT_DROPWATCH=0`).
    pub fn open(ends: Vec<(Option<Ipv4Addr>, Ipv4Addr)>) -> Option<Book> {
        let tracer = tracer::shared()?;
        let inner = Arc::new(Inner {
            run: tracer.next_run(),
            slots: ends
                .into_iter()
                .map(|ends| Slot {
                    ends,
                    state: Mutex::default(),
                    changed: tokio::sync::Notify::new(),
                })
                .collect(),
            flows: Mutex::default(),
        });
        let sink: std::sync::Weak<dyn Sink> = Arc::downgrade(&inner) as _;
        tracer.register(inner.run, sink);
        Some(Book { inner, tracer })
    }

    /// The handle probe `i` sends through.
    pub fn probe(&self, i: usize) -> Watched {
        Watched {
            inner: self.inner.clone(),
            tracer: self.tracer,
            probe: i,
        }
    }

    /// An echo server's reply to `peer` (from its port `port`) to the datagram `request`, sent
    /// inside that probe's window where the probe is known: what the kernel drops of the reply
    /// is the probe's too.
    pub fn reply_window<T>(
        &self,
        peer: SocketAddrV4,
        port: u16,
        request: &[u8],
        send: impl FnOnce() -> T,
    ) -> T {
        match self.probe_of(peer, port, request) {
            Some(p) => self.tracer.window(self.inner.run, p, send),
            None => send(),
        }
    }

    /// The probe a request came from: by the tag it carries ([`Watched::tag`]: exact, whatever
    /// a translation did to its source on the way), else by the flow it was sent on.
    fn probe_of(&self, peer: SocketAddrV4, port: u16, request: &[u8]) -> Option<usize> {
        self.tagged(request)
            .or_else(|| self.inner.flows.lock().unwrap().get(&(peer, port)).copied())
    }

    fn tagged(&self, request: &[u8]) -> Option<usize> {
        let text = std::str::from_utf8(request).ok()?;
        let tag = text.split(TAG).nth(1)?.split_whitespace().next()?;
        let (run, p) = tag.split_once(':')?;
        let (run, p): (u64, usize) = (run.parse().ok()?, p.parse().ok()?);
        (run == self.inner.run && p < self.inner.slots.len()).then_some(p)
    }

    /// An echo server could not send its reply to `peer` (from its port `port`) to `request`:
    /// that probe's answer was dropped on the way back.
    pub fn reply_failed(
        &self,
        peer: SocketAddrV4,
        port: u16,
        request: &[u8],
        why: &std::io::Error,
    ) {
        if let Some(p) = self.probe_of(peer, port, request) {
            let host = peer.ip();
            self.inner.record(
                p,
                format!("the echo reply to {host} could not be sent: {why}"),
            );
        }
    }
}

/// What a probe's datagram carries to name it: `nfw=RUN:PROBE`.
const TAG: &str = "nfw=";

impl Drop for Book {
    fn drop(&mut self) {
        self.tracer.unregister(self.inner.run);
    }
}

impl Sink for Inner {
    fn closed(&self, p: usize, drops: Vec<String>, queue_drop: Option<String>) {
        let Some(slot) = self.slots.get(p) else {
            return;
        };
        let mut st = slot.state.lock().unwrap();
        st.closed += 1;
        if let Some(dev) = queue_drop {
            st.queue_drops += 1;
            st.queue_dev = Some(dev);
        }
        if let Some(first) = drops.into_iter().next() {
            st.dropped += 1;
            if !st.evidence.contains(&first) {
                st.evidence.push(first);
            }
        }
        drop(st);
        slot.changed.notify_one();
    }

    fn concerns(&self, p: usize, dst: Ipv4Addr) -> bool {
        self.slots
            .get(p)
            .is_some_and(|s| s.ends.1 == dst || s.ends.0 == Some(dst))
    }
}

impl Inner {
    fn record(&self, p: usize, what: String) {
        let Some(slot) = self.slots.get(p) else {
            return;
        };
        let mut st = slot.state.lock().unwrap();
        st.dropped += 1;
        if !st.evidence.contains(&what) {
            st.evidence.push(what);
        }
        drop(st);
        slot.changed.notify_one();
    }
}

/// One probe's view of the book.
pub struct Watched {
    inner: Arc<Inner>,
    tracer: &'static Tracer,
    probe: usize,
}

impl Watched {
    /// Runs one send inside a window: what the kernel drops of it on this thread is this probe's.
    pub fn window<T>(&self, send: impl FnOnce() -> T) -> T {
        self.tracer.window(self.inner.run, self.probe, send)
    }

    /// Notes the probe's flow as an echo server will see it (its bound source, the server's
    /// port), so a reply that cannot be sent is booked to it.
    pub fn flow(&self, local: SocketAddrV4, server_port: u16) {
        self.inner
            .flows
            .lock()
            .unwrap()
            .insert((local, server_port), self.probe);
    }

    /// The tag a datagram of this probe carries, so that an echo server can name the probe
    /// whatever address translation did to its source.
    pub fn tag(&self) -> String {
        format!("{TAG}{}:{}", self.inner.run, self.probe)
    }

    /// How many of this probe's sends (or their replies) the kernel was seen to drop.
    pub fn dropped(&self) -> u32 {
        self.state(|s| s.dropped)
    }

    /// How many sends the queue of the sender's own device dropped, and the device.
    pub fn queue_drops(&self) -> (u32, Option<String>) {
        self.state(|s| (s.queue_drops, s.queue_dev.clone()))
    }

    /// What the kernel said, for the observation's detail.
    pub fn evidence(&self) -> String {
        self.state(|s| s.evidence.join("; "))
    }

    /// Waits until the book learns something new of this probe.
    pub async fn changed(&self) {
        match self.inner.slots.get(self.probe) {
            Some(s) => s.changed.notified().await,
            None => std::future::pending().await,
        }
    }

    fn state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let slot = &self.inner.slots[self.probe];
        f(&slot.state.lock().unwrap())
    }
}
