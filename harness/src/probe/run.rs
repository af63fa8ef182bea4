//! Running probes: every probe of a lab at once, in fd-bounded batches, each a Rust socket
//! opened inside its source namespace; and the matrix of a whole lab.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::time::Instant;

use super::classify::classify_errno;
use super::held::{EndGuard, Held};
use super::resend::Resender;
use super::sock::{echo_server, errqueue, parse_echo, recv, register};
use super::spec::*;
use super::watch::{changed, decisive, dropped, in_window, TCP_GRACE};
use super::{dns, echo};
use crate::dropwatch::{Book, Watched};
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::topology::{Family, Outcome, Proto};

/// Runs every probe at once and returns observations in the same order.
pub async fn run(lab: &Lab, specs: &[ProbeSpec], timeout: Duration) -> Result<Vec<Observation>> {
    let results = run_held(lab, specs, timeout, None).await?;
    Ok(infer_rate_limited(specs, results))
}

/// Each probe's observation as it saw it (no inference across probes), with the probes `held`
/// names waiting their turn.
async fn run_held(
    lab: &Lab,
    specs: &[ProbeSpec],
    timeout: Duration,
    held: Option<&Arc<Held>>,
) -> Result<Vec<Observation>> {
    let _end = held.map(|h| EndGuard(h));
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    // Echo listeners in every target namespace, for the whole run.
    let targets = listener_targets(specs);
    let t0 = std::time::Instant::now();
    // Where the kernel can be watched, a probe whose packets it drops ends at once, in either
    // family: a window is the sending thread's, whatever the packet; its ends name the failed
    // route lookups that are its own (nft traces, the rootless watch, are read as IPv4).
    let book = Book::open(
        specs
            .iter()
            .map(|s| {
                let family = s.proto.family();
                let from = lab.topology().host(&s.from);
                (from.and_then(|h| h.address_of(family)), s.dst)
            })
            .collect(),
    )
    .map(Arc::new);
    // Without tracefs, nft verdicts are watched instead; set up while the servers start.
    let watch = async {
        if let Some(b) = book.as_ref().filter(|b| !b.traces_kernel()) {
            b.watch_nft(&super::watch::filtering_namespaces(lab).await)
                .await;
        }
    };
    // An earlier run's unresolved neighbours would answer this run's probes (lab/settle.rs).
    let ((), servers, _) = tokio::join!(
        watch,
        start_servers(lab, &targets, &book),
        lab.settle_neighbours()
    );
    let (servers, occupied) = servers?;
    let t_servers = t0.elapsed();
    crate::testhook::pause("probe:listening");
    // Open sockets are bounded (the fd limit, and each socket's kernel memory): big matrices
    // run in batches of whole pairs, each batch all at once.
    let budget = socket_budget();
    let mut results = Vec::with_capacity(specs.len());
    let mut start = 0;
    while start < specs.len() {
        let mut end = (start + budget).min(specs.len());
        while end < specs.len()
            && end > start + 1
            && specs[end].from == specs[end - 1].from
            && specs[end].to == specs[end - 1].to
        {
            end -= 1;
        }
        let watch = |i: usize| book.as_ref().map(|b| b.probe(start + i));
        let turn = held.map(|h| Turn {
            held: h.clone(),
            offset: start,
        });
        let batch = run_batch(lab, &specs[start..end], &occupied, timeout, watch, turn);
        results.extend(batch.await?);
        start = end;
    }
    if std::env::var_os("NETFAULT_PROFILE").is_some() {
        eprintln!(
            "profile: {} probes, budget {budget}: servers {t_servers:?}, all {:?}",
            specs.len(),
            t0.elapsed()
        );
    }
    servers.stop().await;
    if let Some(b) = &book {
        b.finish().await;
    }
    Ok(results)
}

/// The echo listeners probes `specs` need: (host, protocol, address, port), each once.
pub(super) fn listener_targets(specs: &[ProbeSpec]) -> Vec<(String, Proto, IpAddr, u16)> {
    let mut targets: Vec<(String, Proto, IpAddr, u16)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in specs {
        let mut keys: Vec<(String, Proto, IpAddr, u16)> = s
            .listeners
            .iter()
            .map(|(pod, ip, port)| (pod.clone(), s.proto, *ip, *port))
            .collect();
        if let (Some(port), true) = (s.port, s.listens_at_dst()) {
            keys.push((s.to.clone(), s.proto, s.dst, port));
        }
        for key in keys {
            if seen.insert(key.clone()) {
                targets.push(key);
            }
        }
    }
    targets
}

/// A target whose port a server that is not netfault's holds: (host, protocol, port).
type Occupied = std::collections::HashSet<(String, Proto, u16)>;

/// Echo listeners for every (host, protocol, address, port) target, and the targets whose port
/// is another server's.
pub(super) async fn start_servers(
    lab: &Lab,
    targets: &[(String, Proto, IpAddr, u16)],
    book: &Option<Arc<Book>>,
) -> Result<(echo::Servers, Occupied)> {
    let mut servers = echo::Servers::default();
    let mut occupied = Occupied::new();
    for (host, proto, ip, port) in targets {
        let ns = &lab.host(host)?.ns;
        let ours = servers
            .start(ns, host, *proto, *ip, *port, book.clone())
            .await?;
        if !ours {
            occupied.insert((host.clone(), *proto, *port));
        }
    }
    Ok((servers, occupied))
}

/// Whether a probe's target port is another server's (a Service's probe: any endpoint's).
fn is_foreign(s: &ProbeSpec, occupied: &Occupied) -> bool {
    if occupied.is_empty() {
        return false;
    }
    let direct = s
        .port
        .is_some_and(|p| occupied.contains(&(s.to.clone(), s.proto, p)));
    direct
        || s.listeners
            .iter()
            .any(|(pod, _, p)| occupied.contains(&(pod.clone(), s.proto, *p)))
}

/// How many probe sockets may be open at once: a quarter of the fd limit (raised to its hard
/// limit first), at least 256, at most 8192.
fn socket_budget() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (mut soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        soft = hard;
    }
    std::env::var("NETFAULT_PROBE_BUDGET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(((soft / 4) as usize).clamp(256, 8192))
}

/// Probes one batch: every probe at once.
async fn run_batch(
    lab: &Lab,
    specs: &[ProbeSpec],
    occupied: &Occupied,
    timeout: Duration,
    watch: impl Fn(usize) -> Option<Watched>,
    turn: Option<Turn>,
) -> Result<Vec<Observation>> {
    // Client sockets, opened inside each source namespace (one thread per source).
    let mut by_source: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        match by_source.iter_mut().find(|(h, _)| *h == s.from) {
            Some((_, v)) => v.push(i),
            None => by_source.push((s.from.clone(), vec![i])),
        }
    }
    // A TCP probe with a count opens that many connections; others use one socket.
    let per_spec = |s: &ProbeSpec| {
        if s.proto.is_stream() {
            s.count.max(1) as usize
        } else {
            1
        }
    };
    let mut sockets: Vec<Vec<std::io::Result<Socket>>> =
        (0..specs.len()).map(|_| Vec::new()).collect();
    let opened = futures::future::try_join_all(by_source.iter().map(|(host, idx)| {
        let kinds: Vec<(Proto, usize, Option<u16>)> = idx
            .iter()
            .map(|&i| (specs[i].proto, per_spec(&specs[i]), specs[i].sport))
            .collect();
        async move {
            let ns = &lab.host(host)?.ns;
            let socks = ns
                .run_async(move || {
                    kinds
                        .into_iter()
                        .map(|(p, n, sport)| {
                            (0..n).map(|_| open_client(p, sport)).collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(|e| Error::io(format!("{host}: opening probe sockets"), e))?;
            Ok::<_, Error>((idx.clone(), socks))
        }
    }))
    .await?;
    for (idx, socks) in opened {
        for (i, s) in idx.into_iter().zip(socks) {
            sockets[i] = s;
        }
    }

    let start = Instant::now();
    // Routers rate-limit routing errors per source (about 5, then 1 a second): ICMP probes go
    // first so each (source, destination) gets its answer, and TCP and UDP follow.
    let icmp_pairs: std::collections::HashSet<(&str, &str)> = specs
        .iter()
        .filter(|o| o.proto.base() == Proto::Icmp)
        .map(|o| (o.from.as_str(), o.to.as_str()))
        .collect();
    let icmp_pairs = &icmp_pairs;
    let has_icmp = |s: &ProbeSpec| icmp_pairs.contains(&(s.from.as_str(), s.to.as_str()));
    // A source's TCP and UDP probes wait until all its ICMP probes are answered (at most
    // STAGGER): routing errors are spent on ICMP first, and a healthy lab waits for nothing.
    // (Per group of a two-group round: the second's ICMP probes wait for the first to end.)
    let later = |i: usize| turn.as_ref().is_some_and(|t| t.held.is_later(t.offset + i));
    let mut icmp_left: std::collections::HashMap<(&str, bool), usize> = Default::default();
    for (i, s) in specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.proto.base() == Proto::Icmp)
    {
        *icmp_left.entry((s.from.as_str(), later(i))).or_default() += 1;
    }
    let gates: std::collections::HashMap<(&str, bool), Arc<IcmpGate>> = icmp_left
        .into_iter()
        .map(|(src, n)| {
            let (tx, _) = tokio::sync::watch::channel(false);
            (
                src,
                Arc::new(IcmpGate {
                    left: AtomicUsize::new(n),
                    done: tx,
                }),
            )
        })
        .collect();
    // Each probe is a task of its own, so both of the runtime's workers probe.
    let handles: Vec<_> = specs
        .iter()
        .zip(sockets)
        .enumerate()
        .map(|(i, (spec, socks))| {
            let gate = gates.get(&(spec.from.as_str(), later(i))).cloned();
            let wait = (spec.proto.base() != Proto::Icmp && has_icmp(spec))
                .then(|| gate.as_ref().map(|g| g.done.subscribe()))
                .flatten();
            let signal = (spec.proto.base() == Proto::Icmp).then_some(gate).flatten();
            let resolv = spec
                .query
                .as_ref()
                .and_then(|_| lab.resolv_conf(&spec.from));
            // Counted probes measure loss: a drop is one of their outcomes, not the end.
            let watch = (spec.count <= 1).then(|| watch(i)).flatten();
            let mut spec = spec.clone();
            spec.foreign = is_foreign(&spec, occupied);
            let turn = turn.as_ref().map(|t| (t.held.clone(), t.offset + i));
            tokio::spawn(async move {
                let mut begin = start;
                if let Some((held, j)) = &turn {
                    held.wait_turn(*j).await;
                    begin = begin.max(Instant::now());
                }
                let o = probe_one(spec, socks, begin, timeout, wait, resolv, watch).await;
                if let Some((held, j)) = &turn {
                    held.ended(*j, o.outcome);
                }
                if let Some(g) = signal {
                    if g.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        g.done.send_replace(true);
                    }
                }
                o
            })
        })
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await.unwrap_or_else(|e| {
            Observation::new(Outcome::Unsupported, format!("the probe task failed: {e}"))
        }));
    }
    Ok(results)
}

/// One probe on its opened socket(s).
async fn probe_one(
    spec: ProbeSpec,
    socks: Vec<std::io::Result<Socket>>,
    start: Instant,
    timeout: Duration,
    wait: Option<tokio::sync::watch::Receiver<bool>>,
    resolv: Option<String>,
    watch: Option<Watched>,
) -> Observation {
    let mut deadline = start + timeout;
    if let Some(mut rx) = wait {
        let _ = tokio::time::timeout_at(start + STAGGER, rx.wait_for(|d| *d)).await;
        deadline = Instant::now() + timeout;
    }
    let mut ready = Vec::new();
    for s in socks {
        match s {
            Ok(s) => {
                if spec.size.is_some() || spec.full {
                    if let Err(e) = set_dont_fragment(&s) {
                        return Observation::new(
                            Outcome::Unsupported,
                            format!("cannot set DF on a probe socket: {e}"),
                        );
                    }
                }
                ready.push(s)
            }
            Err(e) => return open_failure(spec.proto, e),
        }
    }
    let port = |d| SocketAddr::new(spec.dst, spec.port.unwrap_or(d));
    if let Some((name, want)) = &spec.query {
        let sock = ready.into_iter().next().expect("one socket");
        return dns::lookup(sock, resolv.as_deref(), name, *want, deadline, watch).await;
    }
    if spec.count > 1 {
        return match spec.proto.base() {
            Proto::Tcp | Proto::Sctp => {
                let all = futures::future::join_all(
                    ready
                        .into_iter()
                        .map(|s| tcp(s, port(80), spec.size, deadline, None)),
                )
                .await;
                loss_outcome(
                    &spec,
                    all.len()
                        - all
                            .iter()
                            .filter(|o| o.outcome == Outcome::Reachable)
                            .count(),
                    &all,
                )
            }
            _ => {
                let sock = ready.into_iter().next().expect("one socket");
                let dst = if spec.proto.base() == Proto::Icmp {
                    SocketAddr::new(spec.dst, 0)
                } else {
                    port(7)
                };
                counted(sock, &spec, dst, deadline).await
            }
        };
    }
    let sock = ready.into_iter().next().expect("one socket");
    match spec.proto.base() {
        Proto::Icmp => icmp(sock, spec.dst, spec.size, spec.full, deadline, watch).await,
        Proto::Tcp if spec.foreign => foreign_tcp(sock, port(80), deadline, watch).await,
        Proto::Tcp | Proto::Sctp => tcp(sock, port(80), spec.size, deadline, watch).await,
        Proto::Udp if spec.foreign => foreign_udp(sock, port(7), deadline, watch).await,
        Proto::Udp => udp(sock, port(7), spec.size, deadline, watch).await,
        _ => Observation::new(
            Outcome::Unsupported,
            "a dns probe without a name".to_string(),
        ),
    }
}

/// A batch's place in a two-group round: the round's gate, and the batch's first index in it.
struct Turn {
    held: Arc<Held>,
    offset: usize,
}

/// Counts a source's ICMP probes still running; flips `done` when the last one ends.
struct IcmpGate {
    left: AtomicUsize,
    done: tokio::sync::watch::Sender<bool>,
}

/// Stagger between ICMP probes and the TCP and UDP probes of the same pairs.
const STAGGER: Duration = Duration::from_millis(100);

/// A TCP or UDP probe that timed out where the ICMP probe of the same pair got a routing error
/// (net or host unreachable) from a router met the router's rate limit on routing errors, not a
/// different fate: routing does not look at the protocol. It takes the ICMP probe's outcome.
fn infer_rate_limited(specs: &[ProbeSpec], mut results: Vec<Observation>) -> Vec<Observation> {
    let icmp: Vec<(usize, IpAddr)> = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.proto.base() == Proto::Icmp)
        .filter_map(|(i, _)| results[i].routing_error_from.map(|r| (i, r)))
        .collect();
    for i in 0..specs.len() {
        if specs[i].proto.base() == Proto::Icmp || results[i].outcome != Outcome::Timeout {
            continue;
        }
        let sibling = icmp.iter().find(|(j, _)| {
            specs[*j].from == specs[i].from
                && specs[*j].to == specs[i].to
                && specs[*j].proto.family() == specs[i].proto.family()
        });
        if let Some((j, router)) = sibling {
            let what = results[*j].detail.clone().unwrap_or_default();
            results[i] = Observation {
                outcome: results[*j].outcome,
                seen_as: None,
                detail: Some(format!("{what} (to the {} probe; {router} rate-limits routing errors, so this probe got none)", specs[*j].proto)),
                routing_error_from: Some(*router),
                next_hop_mtu: None,
                served_by: None,
            };
        }
    }
    results
}

/// The outcome of a counted probe: reachable within the loss tolerance, else what failed most.
fn loss_outcome(spec: &ProbeSpec, lost: usize, seen: &[Observation]) -> Observation {
    let count = spec.count.max(1) as usize;
    let pct = lost * 100 / count;
    let seen_as = seen.iter().find_map(|o| o.seen_as);
    if pct <= usize::from(spec.tolerance) {
        let detail =
            (lost > 0).then(|| format!("{pct}% of {count} lost (tolerance {}%)", spec.tolerance));
        return Observation {
            outcome: Outcome::Reachable,
            seen_as,
            detail,
            routing_error_from: None,
            next_hop_mtu: None,
            served_by: None,
        };
    }
    // Some got through: a lossy path, not a refusal.
    if seen.iter().any(|o| o.outcome == Outcome::Reachable) {
        return Observation::new(
            Outcome::Timeout,
            format!("{pct}% of {count} lost (tolerance {}%)", spec.tolerance),
        );
    }
    // None got through: the most frequent failure names the outcome, a timeout if nothing said.
    let mut tally: Vec<(Outcome, usize)> = Vec::new();
    for o in seen.iter().filter(|o| o.outcome != Outcome::Reachable) {
        match tally.iter_mut().find(|(x, _)| *x == o.outcome) {
            Some(t) => t.1 += 1,
            None => tally.push((o.outcome, 1)),
        }
    }
    let unanswered = lost.saturating_sub(tally.iter().map(|t| t.1).sum());
    if unanswered > 0 {
        match tally.iter_mut().find(|(x, _)| *x == Outcome::Timeout) {
            Some(t) => t.1 += unanswered,
            None => tally.push((Outcome::Timeout, unanswered)),
        }
    }
    tally.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let outcome = tally.first().map(|t| t.0).unwrap_or(Outcome::Timeout);
    Observation::new(
        outcome,
        format!("{pct}% of {count} lost (tolerance {}%)", spec.tolerance),
    )
}

/// Sends `count` numbered ICMP or UDP packets, paced, and counts the distinct answers.
async fn counted(
    sock: Socket,
    spec: &ProbeSpec,
    dst: SocketAddr,
    deadline: Instant,
) -> Observation {
    if let Err(e) = sock.connect(&SockAddr::from(dst)) {
        return classify_errno(&e, "connect");
    }
    let afd = match register(sock) {
        Ok(a) => a,
        Err(e) => {
            return Observation::new(
                Outcome::Unsupported,
                format!("cannot poll a probe socket: {e}"),
            )
        }
    };
    let count = spec.count.max(1);
    let payload = |seq: u32| -> Vec<u8> {
        let line = format!("{PROBE_LINE} {seq}\n").into_bytes();
        let icmp = spec.proto.base() == Proto::Icmp;
        let mut p = if icmp {
            let mut h = vec![echo_type(spec.proto.family()), 0, 0, 0, 0, 0];
            h.extend_from_slice(&((seq & 0xffff) as u16).to_be_bytes());
            h.extend_from_slice(&line);
            h
        } else {
            line
        };
        if let Some(sz) = spec.size {
            let ip = ip_header(spec.proto.family());
            let want = if icmp {
                sz.saturating_sub(ip)
            } else {
                sz.saturating_sub(ip + 8)
            };
            if p.len() < want {
                p.resize(want, b'.');
            }
        }
        p
    };
    let parse = |b: &[u8]| -> Option<(u32, Option<IpAddr>)> {
        if spec.proto.base() == Proto::Icmp {
            if b.len() >= 8 && b[0] == echo_reply_type(spec.proto.family()) {
                return Some((u32::from(u16::from_be_bytes([b[6], b[7]])), None));
            }
            return None;
        }
        let text = String::from_utf8_lossy(b);
        let seen = parse_echo(b);
        let seq = text
            .split(PROBE_LINE)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some((seq, seen))
    };
    let mut answered = std::collections::HashSet::new();
    let mut seen_as = None;
    let mut errors: Vec<Observation> = Vec::new();
    let mut next = 0u32;
    let mut next_send = Instant::now();
    // Echoes are about as long as the probe: no 64 KiB buffer per probe (thousands run at once).
    let mut buf = vec![0u8; spec.size.map_or(2048, |n| n + 512).max(2048)];
    loop {
        while next < count && Instant::now() >= next_send {
            next += 1;
            if let Err(e) = afd.get_ref().send(&payload(next)) {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    errors.push(
                        errqueue(afd.get_ref()).unwrap_or_else(|| classify_errno(&e, "send")),
                    );
                }
            }
            next_send += Duration::from_millis(2);
        }
        if answered.len() as u32 >= count {
            break;
        }
        let wake = if next < count {
            next_send.min(deadline)
        } else {
            deadline
        };
        tokio::select! {
            r = afd.ready(Interest::READABLE | Interest::ERROR) => {
                let mut guard = match r {
                    Ok(g) => g,
                    Err(e) => return classify_errno(&e, "poll"),
                };
                if let Some(o) = errqueue(afd.get_ref()) {
                    errors.push(o);
                    continue;
                }
                match recv(afd.get_ref(), &mut buf) {
                    Ok(n) => {
                        if let Some((seq, seen)) = parse(&buf[..n]) {
                            answered.insert(seq);
                            seen_as = seen_as.or(seen);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                    Err(e) => errors.push(errqueue(afd.get_ref()).unwrap_or_else(|| classify_errno(&e, "recv"))),
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    let lost = count as usize - answered.len().min(count as usize);
    let mut all = errors;
    all.extend((0..answered.len()).map(|_| Observation {
        outcome: Outcome::Reachable,
        seen_as,
        detail: None,
        routing_error_from: None,
        next_hop_mtu: None,
        served_by: None,
    }));
    loss_outcome(spec, lost, &all)
}

pub(super) fn open_client(proto: Proto, sport: Option<u16>) -> std::io::Result<Socket> {
    let v6 = proto.family() == Family::V6;
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = match (proto.base(), v6) {
        (Proto::Icmp, false) => Socket::new(domain, Type::DGRAM, Some(Protocol::ICMPV4))?,
        (Proto::Icmp, true) => Socket::new(domain, Type::DGRAM, Some(Protocol::ICMPV6))?,
        (Proto::Tcp, _) => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
        // A one-to-one SCTP socket: connect, write and read as TCP (RFC 6458's TCP style).
        (Proto::Sctp, _) => Socket::new(domain, Type::STREAM, Some(super::sock::sctp()))?,
        _ => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?,
    };
    s.set_nonblocking(true)?;
    if !proto.is_stream() {
        use nix::sys::socket::{setsockopt, sockopt};
        if v6 {
            setsockopt(&s, sockopt::Ipv6RecvErr, &true)?;
        } else {
            setsockopt(&s, sockopt::Ipv4RecvErr, &true)?;
        }
    }
    if let Some(port) = sport {
        s.set_reuse_address(true)?;
        let any: IpAddr = if v6 {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        s.bind(&SockAddr::from(SocketAddr::new(any, port)))?;
    }
    Ok(s)
}

/// The ICMP echo request and reply types of a family (ICMPv6: 128 and 129).
fn echo_type(f: Family) -> u8 {
    match f {
        Family::V4 => 8,
        Family::V6 => 128,
    }
}

fn echo_reply_type(f: Family) -> u8 {
    match f {
        Family::V4 => 0,
        Family::V6 => 129,
    }
}

/// The IP header the kernel puts before a probe's payload.
fn ip_header(f: Family) -> usize {
    match f {
        Family::V4 => 20,
        Family::V6 => 40,
    }
}

fn open_failure(proto: Proto, e: std::io::Error) -> Observation {
    match (proto, e.raw_os_error()) {
        (Proto::Icmp | Proto::Icmp6, Some(libc::EACCES) | Some(libc::EPERM)) => Observation::new(
            Outcome::Unsupported,
            "ICMP echo sockets are not permitted in the source namespace (net.ipv4.ping_group_range)".to_string(),
        ),
        (
            _,
            Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT) | Some(libc::ESOCKTNOSUPPORT),
        ) => Observation::kernel_lacks(format!("this kernel cannot open {proto} sockets")),
        _ => Observation::new(Outcome::Unsupported, format!("cannot open a {proto} socket: {e}")),
    }
}

async fn icmp(
    sock: Socket,
    dst: IpAddr,
    size: Option<usize>,
    full: bool,
    deadline: Instant,
    watch: Option<Watched>,
) -> Observation {
    let f = Family::of(dst);
    let full_size: fn(usize, Family) -> Vec<u8> = |mtu, f| echo_request(Some(mtu), f);
    let reply = echo_reply_type(f);
    datagram(
        sock,
        SocketAddr::new(dst, 0),
        &echo_request(size, f),
        full.then_some(full_size),
        deadline,
        watch,
        |b| (b.first() == Some(&reply)).then(|| Observation::new(Outcome::Reachable, None)),
    )
    .await
}

/// An ICMP echo request for an IP packet of `size` bytes (small without): type 8 (ICMPv6:
/// 128), code 0, sequence 1; the kernel fills in the identifier and checksum.
fn echo_request(size: Option<usize>, f: Family) -> Vec<u8> {
    let len = size.map_or(24, |s| s.saturating_sub(ip_header(f)).max(24));
    let mut pkt = vec![0u8; len];
    pkt[0] = echo_type(f);
    pkt[7] = 1;
    pkt[8..22].copy_from_slice(b"netfault-probe");
    pkt
}

async fn udp(
    sock: Socket,
    dst: SocketAddr,
    size: Option<usize>,
    deadline: Instant,
    watch: Option<Watched>,
) -> Observation {
    // The tag names the probe to the echo server, so a reply to a translated source is sent
    // inside the probe's window too.
    let tag = watch
        .as_ref()
        .map(|w| format!(" {}", w.tag()))
        .unwrap_or_default();
    let mut line = format!("{PROBE_LINE}{tag}\n").into_bytes();
    if let Some(s) = size {
        let headers = ip_header(Family::of(dst.ip())) + 8;
        line.resize(s.saturating_sub(headers).max(line.len()), b'.');
    }
    let mut o = datagram(sock, dst, &line, None, deadline, watch, |b| {
        parse_echo(b).map(|seen| Observation {
            outcome: Outcome::Reachable,
            seen_as: Some(seen),
            detail: None,
            routing_error_from: None,
            next_hop_mtu: None,
            served_by: echo_server(b),
        })
    })
    .await;
    super::classify::note_hidden_from_udp_clients(&mut o);
    o
}

/// Sends `payload` on a connected datagram socket every RESEND until `reply` accepts an answer,
/// a queued ICMP error decides, the kernel is seen dropping it `DROPS_DECIDE` times (sent again
/// `SPACING` after each drop), or the deadline passes.
/// Sends `payload` to `dst` until `reply` recognises an answer, an error decides, or the
/// deadline. With `full_size`, the payload is rebuilt for the path MTU the kernel knows for
/// `dst` (at first, and again whenever an error comes with a smaller one: path MTU discovery).
async fn datagram(
    sock: Socket,
    dst: SocketAddr,
    payload: &[u8],
    full_size: Option<fn(usize, Family) -> Vec<u8>>,
    deadline: Instant,
    watch: Option<Watched>,
    reply: impl Fn(&[u8]) -> Option<Observation>,
) -> Observation {
    if let Err(e) = sock.connect(&SockAddr::from(dst)) {
        return classify_errno(&e, "connect");
    }
    let f = Family::of(dst.ip());
    let mut payload = match full_size.and_then(|build| Some(build(path_mtu(&sock, f)?, f))) {
        Some(full) => full,
        None => payload.to_vec(),
    };
    // The IP header the kernel adds: a packet of the path MTU carries MTU - 20 (40) bytes.
    let shrink = |s: &Socket, p: &mut Vec<u8>, learned: Option<usize>| {
        let Some(build) = full_size else { return false };
        let mtu = match (path_mtu(s, f), learned) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match mtu {
            Some(mtu) if mtu < p.len() + ip_header(f) => {
                *p = build(mtu, f);
                true
            }
            _ => false,
        }
    };
    if let Some(w) = &watch {
        w.flow(&sock, dst.port());
    }
    let afd = match register(sock) {
        Ok(a) => a,
        Err(e) => {
            return Observation::new(
                Outcome::Unsupported,
                format!("cannot poll a probe socket: {e}"),
            )
        }
    };
    let mut sends = Resender::new(&watch);
    let mut buf = vec![0u8; (payload.len() + 512).max(2048)];
    loop {
        if let Some(o) = sends.send_if_due(afd.get_ref(), &payload) {
            if shrink(afd.get_ref(), &mut payload, o.next_hop_mtu) {
                sends.now();
                continue;
            }
            return o;
        }
        tokio::select! {
            biased;
            r = afd.ready(Interest::READABLE | Interest::ERROR) => {
                let mut guard = match r {
                    Ok(g) => g,
                    Err(e) => return classify_errno(&e, "poll"),
                };
                if let Some(o) = errqueue(afd.get_ref()) {
                    if shrink(afd.get_ref(), &mut payload, o.next_hop_mtu) {
                        sends.now();
                        continue;
                    }
                    return o;
                }
                match recv(afd.get_ref(), &mut buf) {
                    Ok(n) => {
                        if let Some(o) = reply(&buf[..n]) {
                            return o;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                    Err(e) => return errqueue(afd.get_ref()).unwrap_or_else(|| classify_errno(&e, "recv")),
                }
            }
            _ = changed(&watch) => {
                if let Some(o) = sends.on_drops(afd.get_ref()) {
                    return o;
                }
            }
            _ = tokio::time::sleep_until(sends.next().min(deadline)) => {
                if Instant::now() >= deadline {
                    return sends.timed_out(Observation::new(Outcome::Timeout, None));
                }
            }
        }
    }
}

async fn tcp(
    sock: Socket,
    dst: SocketAddr,
    size: Option<usize>,
    deadline: Instant,
    watch: Option<Watched>,
) -> Observation {
    let stream = match connect(sock, dst, deadline, watch).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let bulk = size.unwrap_or(0);
    let exchange = async {
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::with_capacity(if bulk > 0 { 64 * 1024 } else { 512 }, rd);
        wr.write_all(format!("{PROBE_LINE}\n").as_bytes()).await?;
        let mut line = String::new();
        rd.read_line(&mut line).await?;
        if bulk > 0 {
            // A transfer large enough to need full-size segments both ways.
            let send = async {
                let chunk = vec![b'x'; 16 * 1024];
                let mut left = bulk;
                while left > 0 {
                    let n = left.min(chunk.len());
                    wr.write_all(&chunk[..n]).await?;
                    left -= n;
                }
                Ok::<_, std::io::Error>(())
            };
            let recv = async {
                let mut got = 0;
                let mut buf = vec![0u8; 64 * 1024];
                while got < bulk {
                    let n = tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "echo closed early",
                        ));
                    }
                    got += n;
                }
                Ok(())
            };
            tokio::try_join!(send, recv)?;
        }
        Ok::<_, std::io::Error>(line)
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => Observation::new(
            Outcome::Timeout,
            "connected, but the echo never came back".to_string(),
        ),
        Ok(Err(e)) => classify_errno(&e, "echo"),
        Ok(Ok(line)) => match parse_echo(line.as_bytes()) {
            Some(seen) => Observation {
                outcome: Outcome::Reachable,
                seen_as: Some(seen),
                detail: None,
                routing_error_from: None,
                next_hop_mtu: None,
                served_by: echo_server(line.as_bytes()),
            },
            None => Observation::new(
                Outcome::Refused,
                "connected, but something other than netfault's echo server answered".to_string(),
            ),
        },
    }
}

/// A TCP probe of a server that is not netfault's: the connection it accepts is the answer
/// (nothing is sent to it).
async fn foreign_tcp(
    sock: Socket,
    dst: SocketAddr,
    deadline: Instant,
    watch: Option<Watched>,
) -> Observation {
    match connect(sock, dst, deadline, watch).await {
        Ok(_) => Observation::new(Outcome::Reachable, FOREIGN_SERVER.to_string()),
        Err(o) => o,
    }
}

/// A UDP probe of a server that is not netfault's: any datagram back is the answer; silence is
/// a timeout that says the server may simply not answer netfault's probe.
async fn foreign_udp(
    sock: Socket,
    dst: SocketAddr,
    deadline: Instant,
    watch: Option<Watched>,
) -> Observation {
    let line = format!("{PROBE_LINE}\n").into_bytes();
    let mut o = datagram(sock, dst, &line, None, deadline, watch, |_| {
        Some(Observation::new(
            Outcome::Reachable,
            FOREIGN_SERVER.to_string(),
        ))
    })
    .await;
    if o.outcome == Outcome::Timeout {
        let was = o.detail.take().unwrap_or_default();
        o.detail = Some(format!("{was} ({FOREIGN_SILENT})"));
    }
    o
}

/// Connects, the SYN sent inside a window: a SYN the kernel is seen dropping (and no answer
/// within TCP_GRACE) ends the probe as the timeout it would have become.
pub(super) async fn connect(
    sock: Socket,
    dst: SocketAddr,
    deadline: Instant,
    watch: Option<Watched>,
) -> std::result::Result<tokio::net::TcpStream, Observation> {
    let addr = SockAddr::from(dst);
    let started = in_window(&watch, || sock.connect(&addr));
    match started {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(classify_errno(&e, "connect")),
    }
    if let Some(w) = &watch {
        w.flow(&sock, dst.port());
    }
    let std: std::net::TcpStream = sock.into();
    let stream = tokio::net::TcpStream::from_std(std).map_err(|e| {
        Observation::new(
            Outcome::Unsupported,
            format!("cannot poll a probe socket: {e}"),
        )
    })?;
    let mut end = deadline;
    loop {
        tokio::select! {
            biased;
            r = stream.writable() => {
                if let Err(e) = r {
                    return Err(classify_errno(&e, "connect"));
                }
                return match stream.take_error() {
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => Ok(stream),
                        // Writable but not connected: ask the socket what went wrong.
                        Err(_) => Err(Observation::new(Outcome::Unreachable, "connect failed".to_string())),
                    },
                    Ok(Some(e)) | Err(e) => Err(classify_errno(&e, "connect")),
                };
            }
            _ = changed(&watch), if end == deadline => {
                if watch.as_ref().is_some_and(|w| decisive(w, stream.as_raw_fd()) > 0) {
                    end = (Instant::now() + TCP_GRACE).min(deadline);
                }
            }
            _ = tokio::time::sleep_until(end) => {
                return Err(match (&watch, end < deadline) {
                    (Some(w), true) => dropped(w, stream.as_raw_fd()),
                    _ => Observation::new(Outcome::Timeout, None),
                });
            }
        }
    }
}

/// Sets DF on a probe socket (IP_PMTUDISC_DO; IPv6 routers never fragment, and
/// IPV6_PMTUDISC_DO keeps the sender from doing it): a packet too big for the path is
/// refused, not fragmented, so size problems show.
fn set_dont_fragment(s: &Socket) -> std::io::Result<()> {
    let v6 = s.domain().is_ok_and(|d| d == Domain::IPV6);
    let (level, opt, v) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    // SAFETY: a valid fd, and a pointer to a c_int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The path MTU the kernel knows for a connected socket's destination (IP_MTU, IPV6_MTU): its
/// route's device MTU, or less once a router answered "fragmentation needed" ("packet too big").
fn path_mtu(s: &Socket, f: Family) -> Option<usize> {
    let (level, opt) = match f {
        Family::V4 => (libc::IPPROTO_IP, libc::IP_MTU),
        Family::V6 => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
    };
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid fd, and a pointer to a c_int with its size.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0 && v > 0).then_some(v as usize)
}

/// Every ordered pair of topology hosts, for every protocol the fixture probes.
pub fn all_pairs(lab: &Lab) -> Vec<ProbeSpec> {
    pairs_of(lab.topology())
}

/// Probes every pair of the lab and returns the matrix against the fixture's healthy outcomes.
pub async fn matrix(lab: &Lab) -> Result<crate::matrix::Matrix> {
    let t = lab.topology();
    let specs = all_pairs(lab);
    let obs = run(lab, &specs, Duration::from_millis(t.probe.timeout_ms)).await?;
    crate::testhook::pause("probe:done");
    Ok(matrix_of(lab, specs, obs).await)
}

/// How long evidence is recorded around a two-group round's first group at most: its packets
/// cross the lab in well under a millisecond, and ICMP and UDP resend after 200 ms. A probe
/// still waiting then (a packet parked on a neighbour that never answers) goes on unrecorded,
/// while the second group runs.
const RECORD_WINDOW: Duration = Duration::from_millis(250);

/// Probes every pair of the lab in two groups, sharing echo servers and drop watch: the probes
/// `first` picks, then the rest, once the first group has ended or its window is over (at most
/// [`RECORD_WINDOW`]). `before` runs before any probe; `between` when the first group is over,
/// told whether one of its probes failed or still waits; the second group starts after it.
/// Evidence recorded from `before` to `between` is then the first group's alone. The matrix
/// is as [`matrix`]'s.
pub async fn matrix_in_two<T, U>(
    lab: &Lab,
    first: impl Fn(&ProbeSpec) -> bool,
    before: impl std::future::Future<Output = T>,
    between: impl AsyncFnOnce(T, bool) -> U,
) -> Result<(crate::matrix::Matrix, U)> {
    let t = lab.topology();
    let timeout = Duration::from_millis(t.probe.timeout_ms);
    let specs = all_pairs(lab);
    let (held, mut release) = Held::new(specs.iter().map(|s| !first(s)).collect());
    let state = before.await;
    let control = async {
        let failed = release.first_over(&held, RECORD_WINDOW).await;
        let u = between(state, failed).await;
        release.go();
        u
    };
    let (seen, u) = tokio::join!(run_held(lab, &specs, timeout, Some(&held)), control);
    let obs = infer_rate_limited(&specs, seen?);
    crate::testhook::pause("probe:done");
    Ok((matrix_of(lab, specs, obs).await, u))
}

/// The matrix of probes `specs` and what they saw, against the fixture's healthy outcomes.
async fn matrix_of(
    lab: &Lab,
    specs: Vec<ProbeSpec>,
    obs: Vec<Observation>,
) -> crate::matrix::Matrix {
    let t = lab.topology();
    let mut m = crate::matrix::Matrix::new(
        t.host_names().into_iter().map(String::from).collect(),
        t.probe.protocols.clone(),
        specs.into_iter().zip(obs).collect(),
        |f, to, p| t.healthy(f, to, p),
    )
    .with_targets(t.target_names())
    .with_coverage(t);
    judge_translations(lab, &mut m).await;
    m
}

/// Marks reachable cells whose server saw another source than the plan intends: neither an
/// address the plan gives the intended host nor one it holds now (a pod given a new address by
/// hand still sends untranslated).
async fn judge_translations(lab: &Lab, m: &mut crate::matrix::Matrix) {
    let (t, plan) = (lab.topology(), lab.plan());
    let mut suspects = Vec::new();
    for (i, c) in m.cells.iter().enumerate() {
        let Some(seen) = c.seen_as.filter(|_| c.observed == Outcome::Reachable) else {
            continue;
        };
        let Some(want) = crate::lab::intent::intended_source(plan, t, &c.from, &c.to) else {
            continue;
        };
        if !want.accepts(plan, seen) {
            suspects.push((i, want, seen));
        }
    }
    let mut live: std::collections::HashMap<String, Vec<Ipv4Addr>> = Default::default();
    for (i, want, seen) in suspects {
        let host = want.host().to_string();
        if !live.contains_key(&host) {
            let held = match lab.host(&host) {
                Ok(h) => crate::nl::addresses(h.handle()).await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            live.insert(host.clone(), held.iter().map(|a| a.net.addr()).collect());
        }
        if matches!(seen, IpAddr::V4(a) if live[&host].contains(&a)) {
            continue;
        }
        let c = &mut m.cells[i];
        c.translation = Some(format!(
            "but seen as {seen}: the plan intends {}",
            want.describe(&c.from)
        ));
    }
}
