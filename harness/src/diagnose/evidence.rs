//! Kernel evidence, all from the round whose outcomes it explains (no second round of probes):
//! - what decided each probe: the drops the kernel showed of its packets (see `dropwatch`,
//!   [`attach_decided`]);
//! - what [`recorded_matrix`] records around the probes of the cells expected reachable (run
//!   first, the others after, so that only probes that broke move it): per-namespace counter
//!   deltas (`/proc/net/snmp` and `netstat`: IpInAddrErrors, IpOutNoRoutes,
//!   TcpExtIPReversePathFilter, ...) and nft trace verdicts for the probes' packets
//!   (`meta nftrace set 1` in a temporary table and `nft monitor`, in every namespace that has
//!   base chains).
//!
//! Evidence supports the walk's verdict; where the two disagree, the diagnosis says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::vocab::{Component, Culprit, Diagnosis, Evidence};
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::probe::ProbeSpec;
use crate::topology::Outcome;

/// Counters whose moving depends on the round's timing, not only on the lab: ICMP errors the
/// kernel rate-limits, and a listener's dropped handshakes (whether a client's SYN, or its
/// retransmission, reaches the listener before the client's probe has ended or the recording
/// has: a watched root round ends early, a rootless one waits).
const TIMING_DEPENDENT: [&str; 3] = [
    "IcmpInDestUnreachs",
    "IcmpOutDestUnreachs",
    "TcpExtListenDrops",
];

/// Counters that only move when something goes wrong.
const COUNTERS: [&str; 17] = [
    "IpInHdrErrors",
    "IpInAddrErrors",
    "IpInUnknownProtos",
    "IpInDiscards",
    "IpOutDiscards",
    "IpOutNoRoutes",
    "IpFragFails",
    "IpExtInNoRoutes",
    "IpExtInTruncatedPkts",
    "IcmpInDestUnreachs",
    "IcmpOutDestUnreachs",
    "IcmpInTimeExcds",
    "IcmpOutTimeExcds",
    "UdpNoPorts",
    "UdpInErrors",
    "TcpExtIPReversePathFilter",
    "TcpExtListenDrops",
];

type Counters = BTreeMap<String, BTreeMap<String, u64>>;

/// Evidence being recorded around one probe round: nft traces running, counters read before.
struct Recorder {
    tracers: Vec<Tracer>,
    hosts: Vec<String>,
    before: Counters,
}

/// What a round left as evidence: the counters before and after it and its nft trace drops.
pub struct Recording {
    hosts: Vec<String>,
    before: Counters,
    after: Counters,
    traces: Vec<TracedDrop>,
    /// The addresses (source, destination) of the recorded probes that did not reach: a
    /// traced drop with exactly these addresses, either way, is one of theirs.
    failed: BTreeSet<(Ipv4Addr, Ipv4Addr)>,
}

impl Recorder {
    /// Starts nft traces in every namespace with base chains (`known` where already read) and
    /// reads every counter.
    async fn start(lab: &Lab, known: &HashMap<String, bool>) -> Result<Recorder> {
        let hosts: Vec<String> = lab.hosts().map(|h| h.name.clone()).collect();
        let tracers = start_traces(lab, known).await;
        let before = read_counters(lab, &hosts).await?;
        Ok(Recorder {
            tracers,
            hosts,
            before,
        })
    }

    /// Ends the recording: reads the counters again and stops tracing new packets. With `read`,
    /// the monitors go on printing what they traced (it takes them a while, ~40 µs a line) for
    /// [`Stopped::collect`]; without, they are stopped at once.
    async fn stop(self, lab: &Lab, read: bool) -> Result<Stopped> {
        let after = read_counters(lab, &self.hosts).await?;
        let tracers = if read {
            mute_traces(lab, self.tracers).await
        } else {
            stop_traces(lab, self.tracers, false).await;
            Vec::new()
        };
        Ok(Stopped {
            tracers,
            recording: Recording {
                hosts: self.hosts,
                before: self.before,
                after,
                traces: Vec::new(),
                failed: BTreeSet::new(),
            },
        })
    }
}

/// A recording ended, its traces still being printed: [`Stopped::collect`] reads them, while
/// the walk runs.
pub struct Stopped {
    tracers: Vec<Tracer>,
    recording: Recording,
}

impl Stopped {
    /// Reads the traces to their end and stops the monitors.
    pub async fn collect(self, lab: &Lab) -> Recording {
        let mut r = self.recording;
        r.traces = stop_traces(lab, self.tracers, true).await;
        r
    }
}

type Decided = Vec<(String, String, crate::topology::Proto, String)>;

const SEEN_DROPPED_KIND: &str = "seen-dropped";

/// The probes of a round that the kernel was seen dropping, with what it showed.
fn decided_by_drops(m: &crate::matrix::Matrix) -> Decided {
    m.cells
        .iter()
        .filter_map(|c| decided_one(&c.from, &c.to, c.proto, c.detail.as_deref()))
        .collect()
}

/// One probe, if its outcome's `detail` says the kernel was seen dropping it.
fn decided_one(
    from: &str,
    to: &str,
    proto: crate::topology::Proto,
    detail: Option<&str>,
) -> Option<(String, String, crate::topology::Proto, String)> {
    let text = detail?.strip_prefix(crate::probe::SEEN_DROPPED)?;
    Some((from.to_string(), to.to_string(), proto, text.to_string()))
}

/// Adds to each diagnosis what decided its probes in the round `m` (the drops the kernel showed):
/// the evidence the outcome rests on, in place of what a later look at the pair saw.
pub fn attach_decided(ds: &mut [Diagnosis], m: &crate::matrix::Matrix) {
    let decided = decided_by_drops(m);
    for d in ds.iter_mut() {
        d.evidence.retain(|e| e.kind != SEEN_DROPPED_KIND);
        for e in decided_evidence(d, &decided) {
            if !d.evidence.contains(&e) {
                d.evidence.push(e);
            }
        }
    }
}

fn decided_evidence(d: &Diagnosis, decided: &Decided) -> Vec<Evidence> {
    decided
        .iter()
        .filter(|(from, to, proto, _)| {
            *from == d.from && *to == d.to && d.protocols.contains(proto)
        })
        .map(|(_, _, proto, text)| Evidence {
            host: "kernel".into(),
            kind: SEEN_DROPPED_KIND.into(),
            text: format!("{proto}: {text}"),
            count: None,
            stable: false,
        })
        .collect()
}

/// Probes the lab's matrix, recording evidence (counters, nft traces) around the probes of the
/// cells `record` picks, which run first; the others run after, unrecorded. Pick the cells
/// expected reachable: error counters and drop traces then move only for probes that broke, and
/// a diagnosis shows what its own round recorded, no second round of probes.
/// `known`: hosts whose ruleset the caller read, and whether it has base chains.
pub async fn recorded_matrix(
    lab: &Lab,
    record: impl Fn(&str, &str, crate::topology::Proto) -> bool,
    known: &HashMap<String, bool>,
) -> Result<(crate::matrix::Matrix, Stopped)> {
    let (m, rec) = crate::probe::matrix_in_two(
        lab,
        |s: &ProbeSpec| record(&s.from, &s.to, s.proto),
        Recorder::start(lab, known),
        // Drops are only of interest where a probe failed (or still waits).
        async |rec: Result<Recorder>, failed: bool| rec?.stop(lab, failed).await,
    )
    .await?;
    let mut rec = rec?;
    rec.recording.failed = m
        .cells
        .iter()
        .filter(|c| c.observed != Outcome::Reachable && record(&c.from, &c.to, c.proto))
        .filter_map(|c| pair_addresses(lab, &c.from, &c.to))
        .collect();
    Ok((m, rec))
}

/// The addresses a pair's probes go between: the hosts', or a target's virtual address.
fn pair_addresses(lab: &Lab, from: &str, to: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let t = lab.topology();
    let src = t.host(from)?.address();
    let dst = match t.host(to) {
        Some(h) => h.address(),
        None => t.target_probe(from, to)?.dst,
    };
    Some((src, dst))
}

/// Whether each host's captured ruleset has base chains (the hosts an nft trace can see).
pub fn base_chains(state: &super::LabState) -> HashMap<String, bool> {
    state
        .hosts
        .iter()
        .map(|(h, s)| {
            let hooked = s
                .nft
                .values()
                .flat_map(|chains| chains.values())
                .any(|rules| rules.first().is_some_and(|head| head.contains(" hook ")));
            (h.clone(), hooked)
        })
        .collect()
}

/// Adds to each diagnosis what a recorded round shows of its pair and what decided its
/// probes (see [`attach_decided`]).
pub fn attach_round(lab: &Lab, ds: &mut [Diagnosis], m: &crate::matrix::Matrix, r: &Recording) {
    attach_recorded(lab, ds, r);
    attach_decided(ds, m);
}

/// Attaches what a recorded round shows to each diagnosis it concerns, and reconciles: evidence
/// can name a culprit the walk could not, or contradict it.
fn attach_recorded(lab: &Lab, ds: &mut [Diagnosis], r: &Recording) {
    for d in ds.iter_mut() {
        let addrs = pair_addresses(lab, &d.from, &d.to);
        let (src, dst) = (addrs.map(|a| a.0), addrs.map(|a| a.1));
        let on_path: BTreeSet<&str> = d
            .forward
            .iter()
            .chain(&d.reply)
            .map(|h| h.host.as_str())
            .collect();
        let mut ev = counter_evidence(r, &on_path);
        for tr in &r.traces {
            if belongs(tr, src, dst, &on_path, &r.failed) {
                let e = Evidence {
                    host: tr.host.clone(),
                    kind: "nft-trace".into(),
                    text: tr.text.clone(),
                    count: None,
                    stable: true,
                };
                if !ev.contains(&e) {
                    ev.push(e);
                }
            }
        }
        // Trace lines arrive in no particular order: sort them, after the counters.
        let (mut counters, mut rest): (Vec<Evidence>, Vec<Evidence>) =
            ev.into_iter().partition(|e| e.kind == "counter");
        counters.sort_by(|a, b| a.host.cmp(&b.host).then(a.text.cmp(&b.text)));
        rest.sort_by(|a, b| {
            a.kind
                .cmp(&b.kind)
                .then(a.host.cmp(&b.host))
                .then(a.text.cmp(&b.text))
        });
        counters.extend(rest);
        reconcile(d, &counters);
        d.evidence = counters;
    }
}

/// Whether a traced drop is of the pair `src` → `dst` whose path crosses `on_path`: its addresses
/// are the pair's (either way), or — a packet translated on the way shares one address with its
/// pair — one of them is, on a host of the path, and they are not exactly another failed
/// probe's (`failed`), whose it then is.
fn belongs(
    tr: &TracedDrop,
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
    on_path: &BTreeSet<&str>,
    failed: &BTreeSet<(Ipv4Addr, Ipv4Addr)>,
) -> bool {
    let (s, d) = (Some(tr.saddr), Some(tr.daddr));
    if (s == src && d == dst) || (s == dst && d == src) {
        return true;
    }
    let owned = failed.contains(&(tr.saddr, tr.daddr)) || failed.contains(&(tr.daddr, tr.saddr));
    !owned && on_path.contains(tr.host.as_str()) && (s == src || d == dst || s == dst)
}

/// The error counters that moved on the hosts of a diagnosis's path.
fn counter_evidence(r: &Recording, on_path: &BTreeSet<&str>) -> Vec<Evidence> {
    let mut ev = Vec::new();
    for h in r.hosts.iter().filter(|h| on_path.contains(h.as_str())) {
        for name in COUNTERS {
            let get = |c: &Counters| c.get(h).and_then(|m| m.get(name)).copied().unwrap_or(0);
            let delta = get(&r.after).saturating_sub(get(&r.before));
            if delta > 0 {
                ev.push(Evidence {
                    host: h.clone(),
                    kind: "counter".into(),
                    text: format!("{name} increased"),
                    count: Some(delta),
                    // Destination-unreachable errors are rate-limited machine-wide per source
                    // (route.error_cost), and listen drops race the probe's end: whether a
                    // round sees them depends on its timing, so they are not a stable fact.
                    stable: !TIMING_DEPENDENT.contains(&name),
                });
            }
        }
    }
    ev
}

/// Lets the evidence confirm, complete or contradict the walk.
fn reconcile(d: &mut Diagnosis, ev: &[Evidence]) {
    let drops: Vec<&Evidence> = ev.iter().filter(|e| e.kind == "nft-trace").collect();
    match d.culprit.component {
        Component::Unexplained => {
            if let Some(e) = drops.first() {
                d.notes.push(format!(
                    "the walk could not decide; the kernel's nft trace did: {} {}",
                    e.host, e.text
                ));
                d.culprit = Culprit {
                    host: e.host.clone(),
                    component: Component::Filter,
                    summary: format!("the nft trace on {} shows it: {}", e.host, e.text),
                };
            }
        }
        // A NetworkPolicy and a Service's kube-proxy rules are nft rules too.
        Component::Filter | Component::Policy | Component::Service => {
            let traced_here = drops.iter().any(|e| e.host == d.culprit.host);
            if !traced_here && !drops.is_empty() {
                let others: Vec<String> = drops
                    .iter()
                    .map(|e| format!("{} {}", e.host, e.text))
                    .collect();
                d.notes.push(format!(
                    "evidence disagrees: the nft trace shows drops elsewhere: {}",
                    others.join("; ")
                ));
            }
        }
        _ => {
            for e in drops {
                d.notes.push(format!(
                    "evidence disagrees: the nft trace also shows {} {}",
                    e.host, e.text
                ));
            }
        }
    }
}

/// Reads every namespace's SNMP counters (`Ip: InAddrErrors ...` as `IpInAddrErrors`).
async fn read_counters(lab: &Lab, hosts: &[String]) -> Result<Counters> {
    let reads = hosts.iter().map(|h| async move {
        let ns = &lab.host(h)?.ns;
        let m = ns
            .run_async(|| {
                let mut m = BTreeMap::new();
                for f in [
                    "/proc/thread-self/net/snmp",
                    "/proc/thread-self/net/netstat",
                ] {
                    if let Ok(text) = std::fs::read_to_string(f) {
                        parse_snmp(&text, &mut m);
                    }
                }
                m
            })
            .await
            .map_err(|e| Error::io(format!("{h}: reading counters"), e))?;
        Ok::<_, Error>((h.clone(), m))
    });
    futures::future::try_join_all(reads)
        .await
        .map(|v| v.into_iter().collect())
}

fn parse_snmp(text: &str, out: &mut BTreeMap<String, u64>) {
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((p1, names)), Some((p2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                out.insert(format!("{p1}{n}"), v);
            }
        }
    }
}

/// One namespace's `nft monitor trace`, with the lines it printed.
struct Tracer {
    host: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

/// The monitor is our child: it ends with the tracer however the diagnosis ends (an interrupted
/// run drops it half-way), never orphaned.
impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A drop the trace recorded.
struct TracedDrop {
    host: String,
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
    text: String,
}

const TRACE_TABLE: &str = "netfault_trace";

async fn start_traces(lab: &Lab, known: &HashMap<String, bool>) -> Vec<Tracer> {
    // Every namespace at once: each waits for its own monitor to show a marker.
    futures::future::join_all(
        lab.hosts()
            .map(|h| start_trace(h, known.get(&h.name).copied())),
    )
    .await
    .into_iter()
    .flatten()
    .collect()
}

async fn start_trace(h: &crate::lab::LabHost, has_base: Option<bool>) -> Option<Tracer> {
    {
        // Only namespaces with base chains have verdicts to trace.
        let has_base = match has_base {
            Some(b) => b,
            None => has_base_chains(h).await?,
        };
        if !has_base {
            return None;
        }
        // TCP only as far as its handshake (SYN, SYN-ACK, and a reset's cause): a filter drops
        // or rejects a connection there, and the monitor takes ~40 µs to print a traced event
        // (a Kubernetes round's every segment through kube-proxy's chains took it 220 ms).
        let setup = format!(
            "add table ip {TRACE_TABLE}\n\
             add chain ip {TRACE_TABLE} pre {{ type filter hook prerouting priority -350; }}\n\
             add chain ip {TRACE_TABLE} out {{ type filter hook output priority -350; }}\n\
             add rule ip {TRACE_TABLE} pre meta l4proto != tcp meta nftrace set 1\n\
             add rule ip {TRACE_TABLE} out meta l4proto != tcp meta nftrace set 1\n\
             add rule ip {TRACE_TABLE} pre tcp flags syn meta nftrace set 1\n\
             add rule ip {TRACE_TABLE} out tcp flags syn meta nftrace set 1\n"
        );
        let ns = h.ns.clone();
        let started =
            h.ns.run_async(
                move || -> std::io::Result<(Child, Arc<Mutex<Vec<String>>>)> {
                    run_nft_stdin(&setup)?;
                    // Every event, not only traces: the table's deletion, printed after the
                    // traces before it, tells when a round's traces are all printed.
                    // At a low priority: printing a round's traces takes the monitor a while
                    // (~40 µs a line), and on a busy machine it must not starve the probes and
                    // echo servers of the labs still probing. (`nice` execs nft: same pid.)
                    let mut cmd = Command::new("nice");
                    cmd.args(["-n", "10", "nft", "monitor"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null());
                    // Tied: a SIGKILLed netfault must not leave the monitor running.
                    let mut child = ns.spawn_tied(cmd)?;
                    let out = child.stdout.take().expect("piped");
                    let lines = Arc::new(Mutex::new(Vec::new()));
                    let l2 = lines.clone();
                    crate::netns::spawn_home("netfault-trace", move || {
                        for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
                            l2.lock().expect("trace lines").push(l);
                        }
                        Ok(())
                    })?;
                    if await_marker(&lines)? {
                        return Ok((child, lines));
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(std::io::Error::other(
                        "nft monitor trace never showed the marker",
                    ))
                },
            )
            .await;
        match started {
            Ok(Ok((child, lines))) => Some(Tracer {
                host: h.name.clone(),
                child,
                lines,
            }),
            _ => {
                delete_trace_table(h).await;
                None
            }
        }
    }
}

/// Ready when a marker packet shows in the trace. The marker goes to a socket of ours, so it
/// moves no error counter.
fn await_marker(lines: &Mutex<Vec<String>>) -> std::io::Result<bool> {
    let markers = || {
        let l = lines.lock().expect("trace lines");
        l.iter().filter(|l| l.contains("127.0.0.1")).count()
    };
    let before = markers();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let sink = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let to = sink.local_addr()?;
    for _ in 0..500 {
        let _ = sock.send_to(b"netfault-trace-marker", to);
        std::thread::sleep(Duration::from_millis(2));
        if markers() > before {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn has_base_chains(h: &crate::lab::LabHost) -> Option<bool> {
    let json = crate::nft::list_json(&h.ns, &h.name).await.ok()?;
    let chains = json.get("nftables")?.as_array()?;
    Some(
        chains
            .iter()
            .any(|o| o.get("chain").and_then(|c| c.get("hook")).is_some()),
    )
}

/// Stops tracing: removes the trace tables. The monitors go on printing what they traced.
async fn mute_traces(lab: &Lab, tracers: Vec<Tracer>) -> Vec<Tracer> {
    let mutes = tracers.iter().map(|t| async move {
        if let Ok(h) = lab.host(&t.host) {
            delete_trace_table(h).await;
        }
    });
    futures::future::join_all(mutes).await;
    tracers
}

async fn delete_trace_table(h: &crate::lab::LabHost) {
    let _ =
        h.ns.run_async(|| run_nft_stdin(&format!("delete table ip {TRACE_TABLE}\n")))
            .await;
}

/// Waits (a while at most) until a muted monitor has printed its table's deletion: the monitor
/// prints a namespace's events in order, so every trace before it has been printed.
fn await_deletion(lines: &Mutex<Vec<String>>) {
    let deleted = format!("delete table ip {TRACE_TABLE}");
    let mut read = 0;
    for _ in 0..2000 {
        let l = lines.lock().expect("trace lines");
        if l[read..].contains(&deleted) {
            return;
        }
        read = l.len();
        drop(l);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stops the monitors (by their pid): with `read`, muted tracers once each has printed the
/// round, returning the drops they printed; without, at once, removing their tables (nothing
/// they printed is read).
async fn stop_traces(lab: &Lab, tracers: Vec<Tracer>, read: bool) -> Vec<TracedDrop> {
    let stops = tracers.into_iter().map(|mut t| async move {
        if read {
            let lines = t.lines.clone();
            let _ = tokio::task::spawn_blocking(move || await_deletion(&lines)).await;
        }
        let _ = t.child.kill();
        let _ = t.child.wait();
        if let (false, Ok(h)) = (read, lab.host(&t.host)) {
            delete_trace_table(h).await;
        }
        if !read {
            return Vec::new();
        }
        let lines = t.lines.lock().expect("trace lines").clone();
        parse_trace(&t.host, &lines)
    });
    // Every namespace's at once, kept in the tracers' order.
    futures::future::join_all(stops)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn run_nft_stdin(script: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut c = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    c.stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())?;
    let out = c.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Drops and rejects from `nft monitor trace` text, one per distinct (chain, rule, packet
/// addresses), with the packet's addresses from the trace id's `packet:` line.
fn parse_trace(host: &str, lines: &[String]) -> Vec<TracedDrop> {
    let mut packets: BTreeMap<String, (Ipv4Addr, Ipv4Addr)> = BTreeMap::new();
    let mut out: Vec<TracedDrop> = Vec::new();
    for l in lines {
        let Some(rest) = l.strip_prefix("trace id ") else {
            continue;
        };
        let Some((id, rest)) = rest.split_once(' ') else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() < 4 {
            continue;
        }
        let (family, table, chain) = (words[0], words[1], words[2]);
        if table == TRACE_TABLE {
            if let Some(p) = rest.find("packet:") {
                let pkt = &rest[p..];
                if let (Some(s), Some(d)) = (field(pkt, "ip saddr "), field(pkt, "ip daddr ")) {
                    packets.insert(id.to_string(), (s, d));
                }
            }
            continue;
        }
        if let Some(p) = rest.find("packet:") {
            let pkt = &rest[p..];
            if let (Some(s), Some(d)) = (field(pkt, "ip saddr "), field(pkt, "ip daddr ")) {
                packets.entry(id.to_string()).or_insert((s, d));
            }
            continue;
        }
        let body = words[3..].join(" ");
        let dropped = body.ends_with("(verdict drop)")
            || body == "verdict drop"
            || body.starts_with("policy drop");
        let rejected = body.contains("reject");
        if !(dropped || rejected) {
            continue;
        }
        let Some(&(saddr, daddr)) = packets.get(id) else {
            continue;
        };
        let what = if body.starts_with("rule ") {
            let rule = body
                .trim_start_matches("rule ")
                .trim_end_matches(" (verdict drop)");
            format!(
                "table {family} {table} chain {chain} {} {saddr} → {daddr} by rule: {rule}",
                if rejected { "rejected" } else { "dropped" }
            )
        } else {
            format!("table {family} {table} chain {chain} dropped {saddr} → {daddr} by its policy")
        };
        if !out.iter().any(|d| d.text == what) {
            out.push(TracedDrop {
                host: host.to_string(),
                saddr,
                daddr,
                text: what,
            });
        }
    }
    out
}

fn field(s: &str, key: &str) -> Option<Ipv4Addr> {
    let i = s.find(key)? + key.len();
    s[i..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traced_drop_belongs_to_its_own_pair_or_a_translated_one() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let drop = |host: &str, s: &str, d: &str| TracedDrop {
            host: host.into(),
            saddr: ip(s),
            daddr: ip(d),
            text: String::new(),
        };
        let (pod_a, pod_b, ext) = (ip("10.244.1.2"), ip("10.244.1.3"), ip("203.0.113.10"));
        let path: BTreeSet<&str> = ["pod-a", "node1", "ext"].into();
        let failed: BTreeSet<(Ipv4Addr, Ipv4Addr)> = [(pod_a, ext), (pod_a, pod_b)].into();
        let pod_a_ext = |tr: &TracedDrop| belongs(tr, Some(pod_a), Some(ext), &path, &failed);
        // Its own packet, and its reply.
        assert!(pod_a_ext(&drop("node1", "10.244.1.2", "203.0.113.10")));
        assert!(pod_a_ext(&drop("node1", "203.0.113.10", "10.244.1.2")));
        // Masqueraded on the way (node1's address to ext), on the path.
        assert!(pod_a_ext(&drop("ext", "203.0.113.1", "203.0.113.10")));
        assert!(!pod_a_ext(&drop("node2", "203.0.113.1", "203.0.113.10")));
        // Another broken pair's packet shares pod-a's address: it is that pair's.
        assert!(!pod_a_ext(&drop("node1", "10.244.1.2", "10.244.1.3")));
        // Unless that pair reached: then it can only be a translated packet of this one.
        let reached = BTreeSet::from([(pod_a, ext)]);
        assert!(belongs(
            &drop("node1", "10.244.1.2", "10.244.1.3"),
            Some(pod_a),
            Some(ext),
            &path,
            &reached
        ));
    }

    #[test]
    fn snmp_counters_are_named_by_section() {
        let mut m = BTreeMap::new();
        parse_snmp(
            "Ip: Forwarding InAddrErrors\nIp: 1 5\nIcmp: InMsgs\nIcmp: 3\n",
            &mut m,
        );
        assert_eq!(m["IpInAddrErrors"], 5);
        assert_eq!(m["IcmpInMsgs"], 3);
    }

    #[test]
    fn trace_drops_carry_the_packet_addresses() {
        let lines: Vec<String> = [
            "trace id 1a2b ip netfault_trace pre packet: iif \"cni0\" ether saddr 02:00 ip saddr 10.244.1.2 ip daddr 203.0.113.10 ip protocol icmp",
            "trace id 1a2b ip netfault_trace pre rule meta nftrace set 1 (verdict continue)",
            "trace id 1a2b ip extra fwd packet: iif \"cni0\" oif \"eth0\" ip saddr 10.244.1.2 ip daddr 203.0.113.10",
            "trace id 1a2b ip extra fwd rule ip saddr 10.244.1.0/24 oifname \"eth0\" drop (verdict drop)",
            "trace id 3c4d ip filter FORWARD packet: iif \"cni0\" ip saddr 10.244.1.3 ip daddr 203.0.113.10",
            "trace id 3c4d ip filter FORWARD policy drop",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let d = parse_trace("node1", &lines);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0].text,
            "table ip extra chain fwd dropped 10.244.1.2 → 203.0.113.10 by rule: ip saddr 10.244.1.0/24 oifname \"eth0\" drop"
        );
        assert_eq!(
            d[1].text,
            "table ip filter chain FORWARD dropped 10.244.1.3 → 203.0.113.10 by its policy"
        );
    }
}
