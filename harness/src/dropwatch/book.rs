//! A probe run's book of evidence: per probe, how many of its sends the kernel was seen to drop
//! and why. The tracer fills it from the trace (root of the machine); where there is no tracer,
//! nft trace monitors fill it with the drop verdicts of the probes' own flows; echo servers add
//! replies they could not send.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};

use super::nfttrace::{self, Packet, RuleNames, Trace, TraceMonitor};
use super::tracer::{self, Sink, Tracer};
use crate::netns::Netns;
use crate::topology::Proto;

/// The evidence of one probe run. Dropping it stops the tracer filling it.
pub struct Book {
    inner: Arc<Inner>,
    tracer: Option<&'static Tracer>,
    monitors: Mutex<Vec<TraceMonitor>>,
}

struct Inner {
    run: u64,
    slots: Vec<Slot>,
    /// (the probe's source as the echo server saw it, the server's port) → probe.
    flows: Mutex<HashMap<(SocketAddr, u16), usize>>,
    /// Each watched probe's protocol and socket (an ICMP echo's identifier as its port), for
    /// the drops nft traces show; and traced drops no flow had claimed yet (a SYN's drop can
    /// be printed before its probe has noted its flow).
    sockets: Mutex<Vec<(usize, Proto, SocketAddrV4)>>,
    unclaimed: Mutex<Vec<(Vec<Packet>, String)>>,
}

/// The nft trace table of a probe run's live watch.
const WATCH_TABLE: &str = "netfault_watch";
/// Traced drops kept for flows not noted yet (the latest).
const UNCLAIMED_KEPT: usize = 256;

struct Slot {
    /// The probe's source (where known) and destination addresses.
    ends: (Option<IpAddr>, IpAddr),
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
    /// A book for probes with these (source, destination) addresses; None with
    /// `NETFAULT_DROPWATCH=0` (nothing decides early). Without tracefs (not root of the
    /// machine) only what [`Book::watch_nft`] and the echo servers add fills it.
    pub fn open(ends: Vec<(Option<IpAddr>, IpAddr)>) -> Option<Book> {
        if std::env::var("NETFAULT_DROPWATCH").as_deref() == Ok("0") {
            return None;
        }
        let tracer = tracer::shared();
        let inner = Arc::new(Inner::new(tracer.map_or(0, |t| t.next_run()), ends));
        if let Some(t) = tracer {
            let sink: Weak<dyn Sink> = Arc::downgrade(&inner) as _;
            t.register(inner.run, sink);
        }
        Some(Book {
            inner,
            tracer,
            monitors: Mutex::default(),
        })
    }

    /// Whether the kernel's drops are traced (tracefs): else only nft verdicts and echo
    /// servers' failed replies are seen.
    pub fn traces_kernel(&self) -> bool {
        self.tracer.is_some()
    }

    /// Watches these namespaces' nft verdicts for the run: a drop of a probe's own packet (its
    /// socket's address and port as source, or as destination of its reply) is that probe's.
    /// A namespace whose monitor cannot start is not watched (its drops are waited out).
    pub async fn watch_nft(&self, namespaces: &[Netns]) {
        let starts = namespaces.iter().map(|ns| {
            let lister = ns.clone();
            let mut seen = Seen {
                inner: Arc::downgrade(&self.inner),
                packets: HashMap::new(),
                rules: RuleNames::new(Box::new(move |family: &str, table: &str| {
                    nfttrace::rule_texts(&lister, family, table)
                })),
            };
            TraceMonitor::start(ns, WATCH_TABLE, move |t| seen.trace(t))
        });
        let started = futures::future::join_all(starts).await;
        let mut monitors = self.monitors.lock().unwrap();
        monitors.extend(started.into_iter().flatten());
    }

    /// Ends the run's nft watch, if any.
    pub async fn finish(&self) {
        let monitors = std::mem::take(&mut *self.monitors.lock().unwrap());
        let mutes = monitors
            .into_iter()
            .map(|mut m| async move { m.mute().await });
        futures::future::join_all(mutes).await;
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
        peer: SocketAddr,
        port: u16,
        request: &[u8],
        send: impl FnOnce() -> T,
    ) -> T {
        match (self.tracer, self.probe_of(peer, port, request)) {
            (Some(t), Some(p)) => t.window(self.inner.run, p, send),
            _ => send(),
        }
    }

    /// The probe a request came from: by the tag it carries ([`Watched::tag`]: exact, whatever
    /// a translation did to its source on the way), else by the flow it was sent on.
    fn probe_of(&self, peer: SocketAddr, port: u16, request: &[u8]) -> Option<usize> {
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
    pub fn reply_failed(&self, peer: SocketAddr, port: u16, request: &[u8], why: &std::io::Error) {
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
        if let Some(t) = self.tracer {
            t.unregister(self.inner.run);
        }
    }
}

/// What one namespace's watch has seen: packets by trace id (each chain's view), and the rules
/// of the tables that dropped them.
struct Seen {
    inner: Weak<Inner>,
    packets: HashMap<u32, Vec<Packet>>,
    rules: RuleNames<ListRules>,
}

/// How a watch lists a table's rules (`nfttrace::rule_texts` in its namespace).
type ListRules = Box<dyn FnMut(&str, &str) -> HashMap<u64, String> + Send>;

impl Seen {
    /// A drop goes to the probe whose flow it is; a reject is left to the error the probe
    /// itself receives.
    fn trace(&mut self, t: Trace) {
        match t {
            Trace::Packet { id, packet, .. } => self.packets.entry(id).or_default().push(packet),
            Trace::Dropped {
                id,
                family,
                table,
                chain,
                rule,
            } => {
                let (Some(inner), Some(views)) = (self.inner.upgrade(), self.packets.remove(&id))
                else {
                    return;
                };
                let first = &views[0];
                let named =
                    (self.rules).name(family, &table, &chain, rule, first.saddr, first.daddr);
                if !named.rejected {
                    inner.traced_drop(views, named.text);
                }
            }
            Trace::TableDeleted { .. } => {}
        }
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

    fn concerns(&self, p: usize, dst: IpAddr) -> bool {
        self.slots
            .get(p)
            .is_some_and(|s| s.ends.1 == dst || s.ends.0 == Some(dst))
    }
}

impl Inner {
    fn new(run: u64, ends: Vec<(Option<IpAddr>, IpAddr)>) -> Inner {
        Inner {
            run,
            slots: ends
                .into_iter()
                .map(|ends| Slot {
                    ends,
                    state: Mutex::default(),
                    changed: tokio::sync::Notify::new(),
                })
                .collect(),
            flows: Mutex::default(),
            sockets: Mutex::default(),
            unclaimed: Mutex::default(),
        }
    }

    /// A drop an nft trace showed, with the packet as each chain saw it: it is the probe's
    /// whose socket one view names as source (or as destination, for its reply), if exactly
    /// one probe's does. (A translated view names neither end of the probe: ambiguous, and a
    /// drop given to the wrong probe would decide it wrongly.)
    fn traced_drop(&self, seen: Vec<Packet>, text: String) {
        match self.claimant(&seen) {
            Some(p) => self.record(p, text),
            None => {
                let mut u = self.unclaimed.lock().unwrap();
                if u.len() >= UNCLAIMED_KEPT {
                    u.remove(0);
                }
                u.push((seen, text));
            }
        }
    }

    fn claimant(&self, seen: &[Packet]) -> Option<usize> {
        let sockets = self.sockets.lock().unwrap();
        let who: BTreeSet<usize> = seen
            .iter()
            .flat_map(|pkt| {
                sockets
                    .iter()
                    .filter(|(_, proto, local)| of_socket(pkt, *proto, *local))
                    .map(|(p, ..)| *p)
            })
            .collect();
        (who.len() == 1).then(|| *who.first().expect("one"))
    }

    /// Notes probe `p`'s socket, and books to it the unclaimed drops that are its own.
    fn note_socket(&self, p: usize, proto: Proto, local: SocketAddrV4) {
        self.sockets.lock().unwrap().push((p, proto, local));
        let mine: Vec<(Vec<Packet>, String)> = {
            let mut u = self.unclaimed.lock().unwrap();
            let (mine, rest) = std::mem::take(&mut *u)
                .into_iter()
                .partition(|(seen, _)| seen.iter().any(|pkt| of_socket(pkt, proto, local)));
            *u = rest;
            mine
        };
        for (seen, text) in mine {
            if self.claimant(&seen) == Some(p) {
                self.record(p, text);
            }
        }
    }

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

/// Whether a traced packet is of the socket `local` of protocol `proto`: sent from it, or a
/// reply to it.
fn of_socket(pkt: &Packet, proto: Proto, local: SocketAddrV4) -> bool {
    let Some(f) = pkt.flow.filter(|f| f.proto == proto) else {
        return false;
    };
    let sent = pkt.saddr == *local.ip() && f.sport == local.port();
    let reply = pkt.daddr == *local.ip() && f.dport == local.port();
    match f.reply {
        Some(r) => {
            if r {
                reply
            } else {
                sent
            }
        }
        None => sent || reply,
    }
}

/// One probe's view of the book.
pub struct Watched {
    inner: Arc<Inner>,
    tracer: Option<&'static Tracer>,
    probe: usize,
}

impl Watched {
    /// Runs one send inside a window: what the kernel drops of it on this thread is this probe's.
    pub fn window<T>(&self, send: impl FnOnce() -> T) -> T {
        match self.tracer {
            Some(t) => t.window(self.inner.run, self.probe, send),
            None => send(),
        }
    }

    /// Notes the probe's flow, once its socket is connected: as an echo server will see it
    /// (its bound source, the server's port), so a reply that cannot be sent is booked to it;
    /// and as nft traces show it.
    pub fn flow(&self, sock: &socket2::Socket, server_port: u16) {
        let Some(local) = sock.local_addr().ok().and_then(|a| a.as_socket()) else {
            return;
        };
        self.inner
            .flows
            .lock()
            .unwrap()
            .insert((local, server_port), self.probe);
        // nft traces are read as IPv4 packets only.
        let SocketAddr::V4(local) = local else {
            return;
        };
        let proto = match (sock.r#type(), sock.protocol()) {
            (Ok(socket2::Type::STREAM), _) => Proto::Tcp,
            (_, Ok(Some(socket2::Protocol::ICMPV4))) => Proto::Icmp,
            _ => Proto::Udp,
        };
        self.inner.note_socket(self.probe, proto, local);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dropwatch::nfttrace::Flow;

    fn inner(probes: usize) -> Inner {
        Inner::new(
            0,
            vec![(None, std::net::Ipv4Addr::UNSPECIFIED.into()); probes],
        )
    }

    fn udp(s: &str, sport: u16, d: &str, dport: u16) -> Packet {
        Packet {
            saddr: s.parse().unwrap(),
            daddr: d.parse().unwrap(),
            flow: Some(Flow {
                proto: Proto::Udp,
                sport,
                dport,
                reply: None,
            }),
        }
    }

    fn dropped(i: &Inner, p: usize) -> u32 {
        i.slots[p].state.lock().unwrap().dropped
    }

    #[test]
    fn a_traced_drop_is_booked_to_the_one_probe_whose_flow_it_is() {
        let i = inner(3);
        let sock = |s: &str| s.parse::<SocketAddrV4>().unwrap();
        i.note_socket(0, Proto::Udp, sock("10.244.1.2:40001"));
        i.note_socket(1, Proto::Udp, sock("10.244.1.3:40001"));
        // Its own datagram, and the reply to it.
        i.traced_drop(
            vec![udp("10.244.1.2", 40001, "203.0.113.10", 7)],
            "a".into(),
        );
        i.traced_drop(
            vec![udp("203.0.113.10", 7, "10.244.1.2", 40001)],
            "b".into(),
        );
        assert_eq!((dropped(&i, 0), dropped(&i, 1)), (2, 0));
        // Translated (masqueraded) views name neither probe's socket: nobody's.
        i.traced_drop(
            vec![udp("203.0.113.1", 40001, "203.0.113.10", 7)],
            "c".into(),
        );
        assert_eq!((dropped(&i, 0), dropped(&i, 1)), (2, 0));
        // Views naming both probes are ambiguous: nobody's.
        i.traced_drop(
            vec![
                udp("10.244.1.2", 40001, "203.0.113.10", 7),
                udp("10.244.1.3", 40001, "203.0.113.10", 7),
            ],
            "d".into(),
        );
        assert_eq!((dropped(&i, 0), dropped(&i, 1)), (2, 0));
        // Another protocol's socket of the same port is another flow.
        let mut icmp = udp("10.244.1.3", 40001, "203.0.113.10", 40001);
        icmp.flow.as_mut().unwrap().proto = Proto::Icmp;
        i.traced_drop(vec![icmp], "e".into());
        assert_eq!(dropped(&i, 1), 0);
        // A drop printed before its probe noted its socket is booked once it does.
        i.traced_drop(
            vec![udp("10.244.1.4", 40002, "203.0.113.10", 7)],
            "f".into(),
        );
        assert_eq!(dropped(&i, 2), 0);
        i.note_socket(2, Proto::Udp, sock("10.244.1.4:40002"));
        assert_eq!(dropped(&i, 2), 1);
        assert_eq!(
            i.slots[2].state.lock().unwrap().evidence,
            vec!["f".to_string()]
        );
    }

    #[test]
    fn an_icmp_echo_is_matched_by_its_direction() {
        let local = "10.244.1.2:4242".parse::<SocketAddrV4>().unwrap();
        let echo = |s: &str, d: &str, reply: bool| Packet {
            saddr: s.parse().unwrap(),
            daddr: d.parse().unwrap(),
            flow: Some(Flow {
                proto: Proto::Icmp,
                sport: 4242,
                dport: 4242,
                reply: Some(reply),
            }),
        };
        assert!(of_socket(
            &echo("10.244.1.2", "203.0.113.10", false),
            Proto::Icmp,
            local
        ));
        assert!(of_socket(
            &echo("203.0.113.10", "10.244.1.2", true),
            Proto::Icmp,
            local
        ));
        // Someone else's echo request to this pod, with the same identifier, is not its own.
        assert!(!of_socket(
            &echo("10.244.1.3", "10.244.1.2", false),
            Proto::Icmp,
            local
        ));
    }
}
