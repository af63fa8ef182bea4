//! Kernel evidence, all from the round whose outcomes it explains (no second round of probes):
//! - what decided each probe: the drops the kernel showed of its packets (see `dropwatch`,
//!   [`attach_decided`]);
//! - what [`recorded_matrix`] records around the probes of the cells expected reachable (run
//!   first, the others after, so that only probes that broke move it): per-namespace counter
//!   deltas (`/proc/net/snmp` and `netstat`: IpInAddrErrors, IpOutNoRoutes,
//!   TcpExtIPReversePathFilter, ...) and nft trace verdicts for the probes' packets
//!   (`meta nftrace set 1` in a temporary table, read over netlink: `dropwatch::nfttrace`) in
//!   every namespace that has base chains.
//!
//! Evidence supports the walk's verdict; where the two disagree, the diagnosis says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::vocab::{Component, Culprit, Diagnosis, Evidence};
use crate::dropwatch::nfttrace::{rule_texts, RuleNames, Trace, TraceMonitor};
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::probe::ProbeSpec;
use crate::topology::Outcome;

/// Counters whose moving depends on the round's timing, not only on the lab: ICMP errors the
/// kernel rate-limits, a listener's dropped handshakes (whether a client's SYN, or its
/// retransmission, reaches the listener before the client's probe has ended or the recording
/// has: a watched root round ends early, a rootless one waits), and local sends the device
/// refused (IpOutDiscards also counts a datagram a veth dropped because its peer's receive
/// backlog was full: a burst of probes on a busy machine moves it, seen on the DNS pod of
/// k8s-dns-server-down in about one run of ten).
const TIMING_DEPENDENT: [&str; 4] = [
    "IcmpInDestUnreachs",
    "IcmpOutDestUnreachs",
    "TcpExtListenDrops",
    "IpOutDiscards",
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
            mute_traces(self.tracers).await
        } else {
            stop_traces(self.tracers, false).await;
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
    pub async fn collect(self) -> Recording {
        let mut r = self.recording;
        r.traces = stop_traces(self.tracers, true).await;
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
        None => match t.target_probe(from, to, crate::topology::Family::V4)?.dst {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => return None,
        },
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
    let t = lab.topology();
    let lab_addr = |a: Ipv4Addr| t.owner_of(a).is_some();
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
            if belongs(tr, (src, dst), &on_path, &r.failed, &lab_addr) {
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
/// probe's (`failed`), whose it then is. A reply goes back to the source or to the address a
/// host translated it to (`lab_addr`): a packet from the pair's destination to anything else (a
/// Service address it queries itself) is its own.
fn belongs(
    tr: &TracedDrop,
    (src, dst): (Option<Ipv4Addr>, Option<Ipv4Addr>),
    on_path: &BTreeSet<&str>,
    failed: &BTreeSet<(Ipv4Addr, Ipv4Addr)>,
    lab_addr: &dyn Fn(Ipv4Addr) -> bool,
) -> bool {
    let (s, d) = (Some(tr.saddr), Some(tr.daddr));
    if (s == src && d == dst) || (s == dst && d == src) {
        return true;
    }
    let owned = failed.contains(&(tr.saddr, tr.daddr)) || failed.contains(&(tr.daddr, tr.saddr));
    let reply = s == dst && lab_addr(tr.daddr);
    !owned && on_path.contains(tr.host.as_str()) && (s == src || d == dst || reply)
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
        ev.extend(qdisc_evidence(r, h));
    }
    ev
}

/// The qdiscs of host `h` that dropped packets during the round. Whether a shaper's queue
/// overflows in a round depends on its timing, so this is shown, not snapshotted.
fn qdisc_evidence(r: &Recording, h: &str) -> Vec<Evidence> {
    let Some(after) = r.after.get(h) else {
        return Vec::new();
    };
    let before = r.before.get(h);
    after
        .iter()
        .filter(|(k, _)| k.starts_with(QDISC))
        .filter_map(|(k, n)| {
            let was = before.and_then(|b| b.get(k)).copied().unwrap_or(0);
            (*n > was).then(|| Evidence {
                host: h.to_string(),
                kind: "counter".into(),
                text: format!("{k} dropped packets"),
                count: Some(n - was),
                stable: false,
            })
        })
        .collect()
}

/// Lets the evidence confirm, complete or contradict the walk.
fn reconcile(d: &mut Diagnosis, ev: &[Evidence]) {
    let drops: Vec<&Evidence> = ev.iter().filter(|e| e.kind == "nft-trace").collect();
    match d.culprit.component {
        Component::Unexplained => {
            // Only when the drops single out one host and component (never a guess among
            // several).
            let mut named: Vec<(&str, Component)> = drops
                .iter()
                .map(|e| (e.host.as_str(), traced_component(&e.text)))
                .collect();
            named.sort();
            named.dedup();
            if let ([(host, component)], Some(e)) = (named.as_slice(), drops.first()) {
                d.notes.push(format!(
                    "the walk could not decide; the kernel's nft trace did: {} {}",
                    e.host, e.text
                ));
                d.culprit = Culprit {
                    host: host.to_string(),
                    component: *component,
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

/// The component a traced drop's table belongs to: the lab's NetworkPolicies, kube-proxy's
/// Service rules, or any other filter.
fn traced_component(text: &str) -> Component {
    if text.contains(&format!("table inet {}", crate::lab::policy::POLICY_TABLE)) {
        Component::Policy
    } else if text.contains(&format!(" {} ", crate::lab::kube_proxy::KUBE_PROXY_TABLE)) {
        Component::Service
    } else {
        Component::Filter
    }
}

/// Reads every namespace's SNMP counters (`Ip: InAddrErrors ...` as `IpInAddrErrors`) and the
/// drop counters of its qdiscs (`qdisc tbf root on eth0`).
async fn read_counters(lab: &Lab, hosts: &[String]) -> Result<Counters> {
    let reads = hosts.iter().map(|h| async move {
        let ns = &lab.host(h)?.ns;
        let mut m = ns
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
        m.extend(qdisc_drops(lab, h).await?);
        Ok::<_, Error>((h.clone(), m))
    });
    futures::future::try_join_all(reads)
        .await
        .map(|v| v.into_iter().collect())
}

/// The drops of every qdisc a host set up itself (not the kernel's `noqueue`), by name.
async fn qdisc_drops(lab: &Lab, host: &str) -> Result<Vec<(String, u64)>> {
    let h = lab.host(host)?.handle();
    let qs = crate::nl::qdiscs(h)
        .await
        .map_err(|e| crate::error::nl_error(host, "listing qdiscs", e))?;
    let qs: Vec<_> = qs
        .into_iter()
        .filter(|q| q.kind != "noqueue" && q.kind != "noop")
        .collect();
    if qs.is_empty() {
        return Ok(Vec::new());
    }
    let links = crate::nl::links(h)
        .await
        .map_err(|e| crate::error::nl_error(host, "listing links", e))?;
    let name = |ix: u32| {
        links
            .iter()
            .find(|l| l.index == ix)
            .map_or_else(|| format!("if{ix}"), |l| l.name.clone())
    };
    Ok(qs
        .iter()
        .map(|q| {
            (
                format!("{QDISC}{} {} on {}", q.kind, q.parent, name(q.index)),
                q.drops,
            )
        })
        .collect())
}

/// How a qdisc's drop counter is named among a host's counters.
const QDISC: &str = "qdisc ";

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

/// One namespace's trace, with the messages it read.
struct Tracer {
    host: String,
    ns: crate::netns::Netns,
    monitor: TraceMonitor,
    traces: Arc<Mutex<Vec<Trace>>>,
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
    // Only namespaces with base chains have verdicts to trace.
    let has_base = match has_base {
        Some(b) => b,
        None => crate::nft::has_base_chains(&h.ns, &h.name).await?,
    };
    if !has_base {
        return None;
    }
    let traces = Arc::new(Mutex::new(Vec::new()));
    let keep = traces.clone();
    let monitor = TraceMonitor::start(&h.ns, TRACE_TABLE, move |t| {
        keep.lock().expect("traces").push(t)
    })
    .await
    .ok()?;
    Some(Tracer {
        host: h.name.clone(),
        ns: h.ns.clone(),
        monitor,
        traces,
    })
}

/// Stops tracing: removes the trace tables.
async fn mute_traces(mut tracers: Vec<Tracer>) -> Vec<Tracer> {
    futures::future::join_all(tracers.iter_mut().map(|t| t.monitor.mute())).await;
    tracers
}

/// Waits (a while at most) until the reader has read the trace table's deletion: every trace
/// of a packet handled before it came before it.
fn await_deletion(traces: &Mutex<Vec<Trace>>) -> usize {
    let mut read = 0;
    for _ in 0..2000 {
        let t = traces.lock().expect("traces");
        if let Some(i) = t[read..].iter().position(is_end) {
            return read + i;
        }
        read = t.len();
        drop(t);
        std::thread::sleep(Duration::from_millis(1));
    }
    read
}

fn is_end(t: &Trace) -> bool {
    matches!(t, Trace::TableDeleted { table } if table == TRACE_TABLE)
}

/// Stops the traces: with `read`, muted tracers once each has read the round, returning the
/// drops they saw; without, at once, removing their tables.
async fn stop_traces(tracers: Vec<Tracer>, read: bool) -> Vec<TracedDrop> {
    let stops = tracers.into_iter().map(|mut t| async move {
        if !read {
            t.monitor.mute().await;
            return Vec::new();
        }
        let traces = t.traces.clone();
        let ns = t.ns.clone();
        let host = t.host.clone();
        drop(t.monitor);
        // Only what was traced before the recording's end: another table (a rootless run's
        // live watch) may still be tracing the next probes.
        tokio::task::spawn_blocking(move || {
            let end = await_deletion(&traces);
            let traces = traces.lock().expect("traces");
            parse_trace(&host, &traces[..end], |family, table| {
                rule_texts(&ns, family, table)
            })
        })
        .await
        .unwrap_or_default()
    });
    // Every namespace's at once, kept in the tracers' order.
    futures::future::join_all(stops)
        .await
        .into_iter()
        .flatten()
        .collect()
}

type RuleTexts = HashMap<u64, String>;

/// Drops and rejects of a trace, one per distinct (chain, rule, packet addresses), with the
/// packet's addresses from the trace id's first view (ours, at the hook where the trace
/// began), and the rules' text from `rules` (family, table).
fn parse_trace(
    host: &str,
    traces: &[Trace],
    mut rules: impl FnMut(&str, &str) -> RuleTexts,
) -> Vec<TracedDrop> {
    let mut packets: HashMap<u32, (Ipv4Addr, Ipv4Addr)> = HashMap::new();
    let mut names = RuleNames::new(|family: &str, table: &str| rules(family, table));
    let mut out: Vec<TracedDrop> = Vec::new();
    for t in traces {
        match t {
            Trace::Packet { id, table, packet } => {
                let addrs = (packet.saddr, packet.daddr);
                if table == TRACE_TABLE {
                    packets.insert(*id, addrs);
                } else {
                    packets.entry(*id).or_insert(addrs);
                }
            }
            Trace::Dropped {
                id,
                family,
                table,
                chain,
                rule,
            } if table != TRACE_TABLE => {
                let Some(&(saddr, daddr)) = packets.get(id) else {
                    continue;
                };
                let what = names.name(family, table, chain, *rule, saddr, daddr).text;
                if !out.iter().any(|d| d.text == what) {
                    out.push(TracedDrop {
                        host: host.to_string(),
                        saddr,
                        daddr,
                        text: what,
                    });
                }
            }
            _ => {}
        }
    }
    out
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
        let node1 = ip("203.0.113.1");
        let lab_addr = |a: Ipv4Addr| [pod_a, pod_b, ext, node1].contains(&a);
        let pair = (Some(pod_a), Some(ext));
        let pod_a_ext = |tr: &TracedDrop| belongs(tr, pair, &path, &failed, &lab_addr);
        // Its own packet, and its reply.
        assert!(pod_a_ext(&drop("node1", "10.244.1.2", "203.0.113.10")));
        assert!(pod_a_ext(&drop("node1", "203.0.113.10", "10.244.1.2")));
        // Masqueraded on the way (node1's address to ext), on the path.
        assert!(pod_a_ext(&drop("ext", "203.0.113.1", "203.0.113.10")));
        assert!(!pod_a_ext(&drop("node2", "203.0.113.1", "203.0.113.10")));
        // A reply from ext to node1's address (masqueraded) is; ext's own query to a Service
        // address (no host's) is not.
        assert!(pod_a_ext(&drop("node1", "203.0.113.10", "203.0.113.1")));
        assert!(!pod_a_ext(&drop("node1", "203.0.113.10", "10.96.0.30")));
        // Another broken pair's packet shares pod-a's address: it is that pair's.
        assert!(!pod_a_ext(&drop("node1", "10.244.1.2", "10.244.1.3")));
        // Unless that pair reached: then it can only be a translated packet of this one.
        let reached = BTreeSet::from([(pod_a, ext)]);
        assert!(belongs(
            &drop("node1", "10.244.1.2", "10.244.1.3"),
            pair,
            &path,
            &reached,
            &lab_addr
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
        use crate::dropwatch::nfttrace::Packet;
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let view = |id: u32, table: &str, s: &str, d: &str| Trace::Packet {
            id,
            table: table.into(),
            packet: Packet {
                saddr: ip(s),
                daddr: ip(d),
                flow: None,
            },
        };
        let dropped = |id: u32, table: &str, chain: &str, rule: Option<u64>| Trace::Dropped {
            id,
            family: "ip",
            table: table.into(),
            chain: chain.into(),
            rule,
        };
        let traces = vec![
            view(1, TRACE_TABLE, "10.244.1.2", "203.0.113.10"),
            view(1, "extra", "10.244.1.2", "203.0.113.10"),
            dropped(1, "extra", "fwd", Some(7)),
            view(2, "filter", "10.244.1.3", "203.0.113.10"),
            dropped(2, "filter", "FORWARD", None),
            // A drop whose packet was never seen is nobody's.
            dropped(3, "filter", "FORWARD", None),
        ];
        let d = parse_trace("node1", &traces, |family, table| {
            assert_eq!(
                (family, table),
                ("ip", "extra"),
                "only tables with rule drops are listed"
            );
            HashMap::from([(
                7,
                "ip saddr 10.244.1.0/24 oifname \"eth0\" drop".to_string(),
            )])
        });
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
