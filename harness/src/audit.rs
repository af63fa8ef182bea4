//! `netfault cni audit`: what a conflist's plugins notice, survive and leave behind.
//!
//! For each catalog fault that applies, on a fresh single-node lab whose pods the conflist
//! attached: ADD pod-a → inject → CHECK (does the plugin notice?) → probe the matrix → DEL →
//! what DEL left behind (links, addresses, routes, nft and iptables rules, IPAM reservations,
//! sysctls). Then the lifecycle checks a runtime must survive: DEL twice, DEL after the pod's
//! namespace is gone, ADD twice, ADD with a plugin binary missing or without `iptables`, a
//! malformed config.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::cni::{CniError, ConfList};
use crate::diagnose::{capture, diff};
use crate::error::{Error, Result};
use crate::fault::kinds;
use crate::fault::Fault;
use crate::lab::Lab;
use crate::topology::{parse_fixture, Source, Topology};

/// The pod the audit attaches, breaks, checks and deletes; pod-b stays as a neighbour.
pub const POD: &str = "pod-a";
/// Stands for pod-a's host veth in a fault's parameters: each fresh lab's plugin names it anew.
const VETH: &str = "veth(pod-a)";

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// A fault (`delete-veth`) or a lifecycle check (`DEL twice`).
    pub check: String,
    pub kind: &'static str,
    /// Whether CHECK reported a problem (None: CHECK was not run).
    pub check_detects: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_message: Option<String>,
    /// Which probes failed after the fault (or "all pass").
    pub connectivity: String,
    /// "ok", or the error of the (last) DEL.
    pub del: String,
    /// What DEL left behind.
    pub leaks: Vec<String>,
    /// What the check observed beyond the columns (ADD's error, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub conflist: PathBuf,
    pub plugins: Vec<String>,
    /// VERSION's answer per plugin: the spec versions it supports.
    pub versions: Vec<(String, String)>,
    pub rows: Vec<Row>,
}

impl Row {
    /// Whether this row's own DEL returned an error (not run, or run by the runtime after a
    /// failed ADD, is not a failure).
    pub fn del_failed(&self) -> bool {
        !(self.del == "ok" || self.del == "-" || self.del.starts_with("by the runtime"))
    }
}

impl Audit {
    /// What `--strict` fails on: a fault that broke connectivity and CHECK did not detect, a
    /// DEL that failed or left something behind. One line each.
    pub fn strict_failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rows {
            // A fault that broke nothing is no miss.
            if r.check_detects == Some(false) && r.connectivity != "all pass" {
                out.push(format!("{}: CHECK misses it ({})", r.check, r.connectivity));
            }
            if r.del_failed() {
                out.push(format!("{}: DEL failed: {}", r.check, r.del));
            }
            if !r.leaks.is_empty() {
                out.push(format!("{}: DEL leaks {}", r.check, r.leaks.join(", ")));
            }
        }
        out
    }
}

/// The audit's lab: single-node.toml's hosts with pods attached by the conflist; dual-stack
/// (dual-stack.toml's addresses) when the conflist has an IPv6 range (`{pod_cidr6}`).
pub fn audit_topology(
    conflist: &Path,
) -> std::result::Result<Topology, crate::topology::ConfigErrors> {
    parse_fixture(&Source::new("cni-audit.toml", audit_fixture_text(conflist)))
}

/// The audit lab's fixture text for a conflist (named by its absolute path).
pub fn audit_fixture_text(conflist: &Path) -> String {
    let abs = std::fs::canonicalize(conflist).unwrap_or_else(|_| conflist.to_path_buf());
    let dual = std::fs::read_to_string(&abs).is_ok_and(|t| {
        crate::topology::parse::CONFLIST_V6_PLACEHOLDERS
            .iter()
            .any(|p| t.contains(p))
    });
    let (pod_cidr, uplink, ext) = if dual {
        (
            r#"["10.244.1.0/24", "fd00:10:244:1::/64"]"#,
            r#"["203.0.113.1/24", "2001:db8::1/64"]"#,
            r#"["203.0.113.10/24", "2001:db8::10/64"]"#,
        )
    } else {
        (
            r#""10.244.1.0/24""#,
            r#""203.0.113.1/24""#,
            r#""203.0.113.10/24""#,
        )
    };
    format!(
        "description = \"netfault cni audit of {}\"\n\n[cni]\nconflist = {:?}\n\n[node.node1]\npod_cidr = {pod_cidr}\nuplink = {uplink}\n\n\
         [pod.pod-a]\nnode = \"node1\"\n\n[pod.pod-b]\nnode = \"node1\"\n\n[external.ext]\nuplink = {ext}\n\n[expect]\n\"ext -> pod-*\" = \"unreachable\"\n",
        abs.display(),
        abs.display().to_string()
    )
}

/// The catalog faults the audit injects, for a lab whose pods are on a bridge or not.
fn faults(t: &Topology, host_veth: &str) -> Vec<Fault> {
    let pod = || POD.to_string();
    let node = || "node1".to_string();
    let all = vec![
        Fault::DeleteVeth(kinds::DeleteVeth { pod: pod() }),
        Fault::VethDown(kinds::VethDown { pod: pod() }),
        Fault::DetachVeth(kinds::DetachVeth { pod: pod() }),
        Fault::DeletePodRoute(kinds::DeletePodRoute { pod: pod() }),
        Fault::RemovePodAddress(kinds::RemovePodAddress { pod: pod() }),
        Fault::LinkDown(kinds::LinkDown {
            host: pod(),
            interface: "eth0".into(),
        }),
        Fault::DisableIpForward(kinds::DisableIpForward { node: node() }),
        Fault::DisableForwarding(kinds::DisableForwarding {
            node: node(),
            interface: VETH.to_string(),
        }),
        Fault::DeleteMasquerade(kinds::DeleteMasquerade { node: node() }),
        Fault::BridgeDown(kinds::BridgeDown { node: node() }),
        Fault::RemoveGatewayAddress(kinds::RemoveGatewayAddress { node: node() }),
        Fault::ForwardDropPolicy(kinds::ForwardDropPolicy { node: node() }),
        Fault::WrongNeighbour(kinds::WrongNeighbour {
            node: node(),
            pod: pod(),
        }),
        // IPv6's twins, where the conflist has an IPv6 range (their checks drop them otherwise).
        Fault::DisableIpv6Forward(kinds::DisableIpv6Forward { node: node() }),
        Fault::DeleteMasquerade6(kinds::DeleteMasquerade6 { node: node() }),
        Fault::DeletePodRoute6(kinds::DeletePodRoute6 { pod: pod() }),
        Fault::WrongNeighbour6(kinds::WrongNeighbour6 { pod: pod() }),
        Fault::ForwardDropPolicy6(kinds::ForwardDropPolicy6 { node: node() }),
    ];
    let _ = host_veth;
    all.into_iter()
        .filter(|f| resolve(f, host_veth).check(t).is_ok())
        .collect()
}

/// A fault with `veth(pod-a)` replaced by the lab's actual host veth.
fn resolve(f: &Fault, host_veth: &str) -> Fault {
    match f {
        Fault::DisableForwarding(kinds::DisableForwarding { node, interface })
            if interface == VETH =>
        {
            Fault::DisableForwarding(kinds::DisableForwarding {
                node: node.clone(),
                interface: host_veth.to_string(),
            })
        }
        other => other.clone(),
    }
}

/// Runs the whole audit; `progress(done, total, row)` is called as rows finish.
pub async fn run(
    conflist: &Path,
    jobs: usize,
    progress: impl Fn(usize, usize, &Row) + Send + Sync + 'static,
) -> Result<Audit> {
    let topo = audit_topology(conflist)?;
    let list = ConfList::parse(&Source::read(conflist)?)?;
    let (versions, live_topo, host_veth) = first_look(&topo, &list).await?;

    let mut items: Vec<Item> = faults(&live_topo, &host_veth)
        .into_iter()
        .map(Item::Fault)
        .collect();
    items.extend([
        Item::DelTwice,
        Item::DelAfterNetnsGone,
        Item::AddTwice,
        Item::MissingPlugin,
        Item::MissingIptables,
        Item::MalformedConfig,
    ]);
    let total = items.len();
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = Arc::new(progress);
    let conflist = conflist.to_path_buf();
    let rows = futures::future::join_all(items.into_iter().map(|item| {
        let sem = sem.clone();
        let done = done.clone();
        let progress = progress.clone();
        let topo = topo.clone();
        let conflist = conflist.clone();
        async move {
            let _permit = sem.acquire().await.expect("semaphore");
            let row = item.row(&topo, &conflist).await;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            progress(n, total, &row);
            row
        }
    }))
    .await;
    Ok(Audit {
        conflist,
        plugins: list.plugin_types(),
        versions,
        rows,
    })
}

/// A first lab: the plugins' versions, the topology as the plugins made it, and the host veth
/// name faults need.
async fn first_look(
    topo: &Topology,
    list: &ConfList,
) -> Result<(Vec<(String, String)>, Topology, String)> {
    let probe_lab = Lab::up(topo).await?;
    let host_veth = probe_lab
        .topology()
        .host(POD)
        .and_then(|h| h.as_pod())
        .map(|p| p.host_veth.clone())
        .unwrap_or_default();
    let mut versions = Vec::new();
    if let Some(st) = probe_lab.cni() {
        let node = &probe_lab.host("node1")?.ns;
        for p in list.plugin_types() {
            let v = match st.runtime.version(node, &p, &list.cni_version).await {
                Ok(v) => v
                    .get("supportedVersions")
                    .and_then(|s| s.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
                Err(e) => format!("VERSION failed: {}", e.msg),
            };
            versions.push((p, v));
        }
    }
    let live_topo = probe_lab.topology().clone();
    drop(probe_lab);
    Ok((versions, live_topo, host_veth))
}

enum Item {
    Fault(Fault),
    DelTwice,
    DelAfterNetnsGone,
    AddTwice,
    MissingPlugin,
    MissingIptables,
    MalformedConfig,
}

/// What an ADD said, for a row's note.
fn add_said(r: &std::result::Result<(), Error>) -> String {
    match r {
        Ok(()) => "ADD succeeded".into(),
        Err(e) => format!("ADD failed: {e}"),
    }
}

fn del_text(r: &std::result::Result<(), CniError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

impl Item {
    fn name(&self) -> String {
        match self {
            Item::Fault(f) => f
                .to_string()
                .replace(&format!("interface={VETH}"), "interface=veth(pod-a)"),
            Item::DelTwice => "DEL twice".into(),
            Item::DelAfterNetnsGone => "DEL after the pod namespace is gone".into(),
            Item::AddTwice => "ADD twice (same ifname)".into(),
            Item::MissingPlugin => "ADD with a plugin binary missing".into(),
            Item::MissingIptables => "ADD without iptables".into(),
            Item::MalformedConfig => "malformed config".into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Item::Fault(_) => "fault",
            _ => "lifecycle",
        }
    }

    /// The row of this item, with plugins' hashed names redacted; a row saying why where the
    /// audit could not run it.
    async fn row(&self, topo: &Topology, conflist: &Path) -> Row {
        match self.run(topo, conflist).await {
            Ok(mut r) => {
                // Plugins' messages name chains and veths by hash: keep rows comparable.
                r.del = redact_hashes(&r.del);
                r.check_message = r.check_message.map(|m| redact_hashes(&m));
                r.note = r.note.map(|n| redact_hashes(&n));
                r.leaks = r.leaks.iter().map(|l| redact_hashes(l)).collect();
                r
            }
            Err(e) => Row {
                check: self.name(),
                kind: self.kind(),
                check_detects: None,
                check_message: None,
                connectivity: "-".into(),
                del: "-".into(),
                leaks: Vec::new(),
                note: Some(format!("the audit could not run this: {e}")),
            },
        }
    }

    async fn run(&self, topo: &Topology, conflist: &Path) -> Result<Row> {
        let mut row = Row {
            check: self.name(),
            kind: self.kind(),
            check_detects: None,
            check_message: None,
            connectivity: "-".into(),
            del: "-".into(),
            leaks: Vec::new(),
            note: None,
        };
        match self {
            Item::Fault(f) => fault_row(topo, f, &mut row).await?,
            Item::DelTwice => {
                let lab = Lab::up(topo).await?;
                let _ = lab.cni_del(POD).await?;
                let before_second = capture(&lab).await?;
                row.del = del_text(&lab.cni_del(POD).await?);
                let after = capture(&lab).await?;
                row.leaks = leaks(&lab, &before_second, &after, &BTreeSet::new());
                row.note = Some("the second DEL must succeed: the spec asks DEL to tolerate what is already gone".into());
            }
            Item::DelAfterNetnsGone => {
                let mut lab = Lab::up_with(topo, &[POD]).await?;
                let before = capture(&lab).await?;
                lab.cni_add(POD).await?;
                lab.forget_host(POD);
                // As a runtime sees it once the pod is gone: CNI_NETNS names a path that is no
                // more (our fd number could be reused by anything; a removed pin could not).
                if let Some(att) = lab.cni_mut().and_then(|c| c.attachments.get_mut(POD)) {
                    att.netns = format!("/run/netns/netfault-gone-{}-{POD}", std::process::id());
                }
                // The kernel frees the namespace, and with it the pod's end of the veth.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                row.del = del_text(&lab.cni_del(POD).await?);
                let after = capture(&lab).await?;
                // The pod's namespace is gone: what it held went with it.
                row.leaks = leaks(&lab, &before, &after, &BTreeSet::new())
                    .into_iter()
                    .filter(|l| !l.starts_with(&format!("{POD}: ")))
                    .collect();
            }
            Item::AddTwice => {
                let mut lab = Lab::up_with(topo, &[POD]).await?;
                let before = capture(&lab).await?;
                lab.cni_add(POD).await?;
                let second = lab.cni_add(POD).await;
                row.note = Some(match &second {
                    Ok(()) => "the second ADD succeeded".into(),
                    Err(e) => format!("the second ADD failed: {e}"),
                });
                row.del = del_text(&lab.cni_del(POD).await?);
                let after = capture(&lab).await?;
                row.leaks = leaks(&lab, &before, &after, &BTreeSet::new());
            }
            Item::MissingPlugin | Item::MissingIptables => self.missing_row(topo, &mut row).await?,
            Item::MalformedConfig => malformed_row(topo, conflist, &mut row).await?,
        }
        Ok(row)
    }

    /// ADD with a plugin binary missing, or without iptables on PATH: what ADD says and what
    /// the failed ADD leaves.
    async fn missing_row(&self, topo: &Topology, row: &mut Row) -> Result<()> {
        let mut lab = Lab::up_with(topo, &[POD]).await?;
        let before = capture(&lab).await?;
        let st = lab.cni_mut().ok_or_else(|| Error::other("no CNI state"))?;
        if matches!(self, Item::MissingPlugin) {
            for l in st.lists.values_mut() {
                l.plugins
                    .push(serde_json::json!({ "type": "netfault-missing-plugin" }));
            }
        } else {
            // A PATH where no iptables (nor anything else) is.
            st.runtime.exec_path = Some("/nonexistent/netfault-empty-path".into());
        }
        let r = lab.cni_add(POD).await;
        row.note = Some(add_said(&r));
        // The runtime already deleted what the earlier plugins did.
        row.del = "by the runtime after the failed ADD".into();
        let after = capture(&lab).await?;
        row.leaks = leaks(&lab, &before, &after, &BTreeSet::new());
        Ok(())
    }
}

/// A fault after ADD: whether CHECK sees it, what the probes see, and what DEL leaves.
async fn fault_row(topo: &Topology, f: &Fault, row: &mut Row) -> Result<()> {
    let mut lab = Lab::up_with(topo, &[POD]).await?;
    let before = capture(&lab).await?;
    lab.cni_add(POD).await?;
    let healthy = crate::probe::matrix(&lab).await?;
    if !healthy.mismatches().is_empty() {
        return Err(Error::other(format!(
            "unhealthy after ADD: {}",
            healthy.render_mismatches().join("; ")
        )));
    }
    let pre = capture(&lab).await?;
    let veth = lab
        .topology()
        .host(POD)
        .and_then(|h| h.as_pod())
        .map(|p| p.host_veth.clone())
        .unwrap_or_default();
    let guard = resolve(f, &veth).inject(&lab).await?;
    let post = capture(&lab).await?;
    let fault_diff: BTreeSet<String> = diff(&pre, &post).into_iter().collect();
    let check = lab.cni_check(POD).await?;
    row.check_detects = Some(check.is_err());
    row.check_message = check.err().map(|e| e.msg);
    let m = crate::probe::matrix(&lab).await?;
    row.connectivity = connectivity(&m, &healthy);
    row.del = del_text(&lab.cni_del(POD).await?);
    let after = capture(&lab).await?;
    row.leaks = leaks(&lab, &before, &after, &fault_diff);
    drop(guard); // a heal after DEL would rebuild what DEL removed: not healed
    Ok(())
}

/// Broken JSON (the runtime names file and line) and a config the plugin itself refuses.
async fn malformed_row(topo: &Topology, conflist: &Path, row: &mut Row) -> Result<()> {
    // Broken JSON never reaches a plugin: the runtime names file and line.
    let text = std::fs::read_to_string(conflist).map_err(|e| Error::io(conflist.display(), e))?;
    let broken = text.replacen('{', "{ \"cniVersion\": ,", 1);
    let ours = ConfList::parse(&Source::new(conflist, broken))
        .err()
        .map(|e| e.to_string());
    // A config the plugin itself refuses: an IPAM subnet that is no subnet.
    let mut lab = Lab::up_with(topo, &[POD]).await?;
    let before = capture(&lab).await?;
    let st = lab.cni_mut().ok_or_else(|| Error::other("no CNI state"))?;
    for l in st.lists.values_mut() {
        for p in l.plugins.iter_mut() {
            if let Some(r) = p.pointer_mut("/ipam/ranges/0/0/subnet") {
                *r = serde_json::json!("banana");
            }
        }
    }
    let r = lab.cni_add(POD).await;
    row.note = Some(format!(
        "broken JSON: {}; an IPAM subnet of \"banana\": {}",
        ours.map(|o| o.replace("\n  help: ", " (help: ") + ")")
            .unwrap_or_else(|| "accepted!".into()),
        add_said(&r)
    ));
    row.del = "by the runtime after the failed ADD".into();
    let after = capture(&lab).await?;
    row.leaks = leaks(&lab, &before, &after, &BTreeSet::new());
    Ok(())
}

/// Which probes failed, against the healthy matrix.
fn connectivity(m: &crate::matrix::Matrix, healthy: &crate::matrix::Matrix) -> String {
    let mut pairs: Vec<String> = Vec::new();
    let mut n = 0;
    for c in &m.cells {
        if healthy.observed(&c.from, &c.to, c.proto) == Some(c.observed) {
            continue;
        }
        n += 1;
        let p = format!("{}→{} {}", c.from, c.to, c.observed);
        if !pairs.contains(&p) {
            pairs.push(p);
        }
    }
    if n == 0 {
        "all pass".into()
    } else {
        format!("{n} of {} fail: {}", m.cells.len(), pairs.join(", "))
    }
}

/// What is there after DEL that was not there before ADD (and that the fault did not do),
/// plus IPAM reservations still held for the pod.
fn leaks(
    lab: &Lab,
    before: &crate::diagnose::LabState,
    after: &crate::diagnose::LabState,
    fault: &BTreeSet<String>,
) -> Vec<String> {
    let fault_norm: BTreeSet<String> = fault
        .iter()
        .map(|l| sysctl_key(&normalise(lab, l)))
        .collect();
    let mut out: Vec<String> = diff(before, after)
        .into_iter()
        .filter(|l| !fault.contains(l) && !fault_norm.contains(&sysctl_key(&normalise(lab, l))))
        // What the pod's own namespace loses is DEL's job done, not a leak.
        .filter(|l| !(l.ends_with(" removed") || l.contains(" deleted")))
        .collect();
    if let Some(st) = lab.cni() {
        for list in st.lists.values() {
            for (ip, owner) in st.runtime.ipam_reservations(&list.name) {
                if owner.contains(&format!("netfault-{POD}")) {
                    out.push(format!(
                        "IPAM reservation {ip} for netfault-{POD} in network {}",
                        list.name
                    ));
                }
            }
        }
    }
    out.into_iter().map(|l| normalise(lab, &l)).collect()
}

/// A sysctl change line without the set of interfaces it names (`node1: sysctl
/// net.ipv4.conf.{all,cni0}.forwarding 1 → 0` → `node1: sysctl net.ipv4.conf.*.forwarding 1 →
/// 0`): the fault changed it on interfaces that DEL may have removed since.
fn sysctl_key(line: &str) -> String {
    match (line.find("net.ipv4.conf."), line.rfind('.')) {
        (Some(a), Some(b)) if line.contains(" sysctl ") && b > a + 14 => {
            let setting_end = line[b..].find(' ').map(|x| b + x).unwrap_or(line.len());
            format!("{}net.ipv4.conf.*{}", &line[..a], &line[b..setting_end]) + &line[setting_end..]
        }
        _ => line.to_string(),
    }
}

/// Replaces what changes from run to run: plugin-chosen veth names, CNI chain hashes.
pub fn normalise(lab: &Lab, line: &str) -> String {
    let mut s = line.to_string();
    for (pod, p) in lab.topology().pods() {
        if !p.host_veth.is_empty() {
            s = s.replace(&p.host_veth, &format!("veth({pod})"));
        }
    }
    redact_hashes(&s)
}

/// Per-pod chains a plugin named by a hash (`CNI-9f3c...`), each as `CNI-<pod>`: the pod whose
/// source address a rule sends there (`ip saddr 10.244.1.2 ... jump CNI-9f3c...`), read from the
/// live state. A chain no pod's rule jumps to keeps its hash (and is redacted later).
pub fn chain_owners(lab: &Lab, state: &crate::diagnose::LabState) -> Vec<(String, String)> {
    let mut pod_of_ip = Vec::new();
    for (pod, p) in lab.topology().pods() {
        let Some(hs) = state.host(pod) else { continue };
        for a in &hs.addresses {
            if let Some(net) = a.strip_prefix(&format!("{} ", p.ifname)) {
                let ip = net.split('/').next().unwrap_or("").to_string();
                pod_of_ip.push((format!("ip saddr {ip} "), pod.to_string()));
            }
        }
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (_, hs) in &state.hosts {
        for rule in hs.nft.values().flat_map(|chains| chains.values()).flatten() {
            let Some(chain) = rule
                .split("jump ")
                .nth(1)
                .and_then(|c| c.split_whitespace().next())
            else {
                continue;
            };
            if !chain.starts_with("CNI-") || out.iter().any(|(c, _)| c == chain) {
                continue;
            }
            if let Some((_, pod)) = pod_of_ip.iter().find(|(m, _)| rule.contains(m.as_str())) {
                out.push((chain.to_string(), format!("CNI-<{pod}>")));
            }
        }
    }
    out
}

/// `CNI-9f3c...` (a hash of network name and container id) → `CNI-<hash>`; a plugin's
/// random `vethXXXXXXXX` → `veth<random>`.
pub fn redact_hashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        for (prefix, min) in [
            ("CNI-DN-", 12),
            ("CNI-HOSTPORT-", 12),
            ("CNI-", 12),
            ("veth", 8),
        ] {
            if s[i..].starts_with(prefix) {
                let start = i + prefix.len();
                let hex = b[start..]
                    .iter()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count();
                if hex >= min {
                    out.push_str(prefix);
                    out.push_str(if prefix == "veth" {
                        "<random>"
                    } else {
                        "<hash>"
                    });
                    i = start + hex;
                    continue;
                }
            }
        }
        if i < b.len() {
            let ch = s[i..].chars().next().expect("char");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The audit as a table for people.
pub fn render(a: &Audit) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cni audit of {} ({})",
        a.conflist.display(),
        a.plugins.join(" → ")
    );
    for (p, v) in &a.versions {
        let _ = writeln!(s, "  {p}: supports {v}");
    }
    let _ = writeln!(s);
    let w = a
        .rows
        .iter()
        .map(|r| r.check.chars().count())
        .max()
        .unwrap_or(10)
        .max(10);
    let _ = writeln!(
        s,
        "{:<w$}  {:<8}  {:<6}  {:<8}  connectivity",
        "check", "CHECK", "DEL", "leaks"
    );
    for r in &a.rows {
        let check = match r.check_detects {
            Some(true) => "detects",
            Some(false) => "misses",
            None => "-",
        };
        let del = if r.del == "ok" {
            "ok"
        } else if r.del_failed() {
            "FAILS"
        } else {
            "-"
        };
        let _ = writeln!(
            s,
            "{:<w$}  {:<8}  {:<6}  {:<8}  {}",
            r.check,
            check,
            del,
            r.leaks.len(),
            r.connectivity
        );
    }
    let _ = writeln!(s);
    for r in &a.rows {
        let mut lines = Vec::new();
        if let Some(m) = &r.check_message {
            lines.push(format!("CHECK: {m}"));
        }
        if r.del != "ok" && r.del != "-" {
            lines.push(format!("DEL: {}", r.del));
        }
        for l in &r.leaks {
            lines.push(format!("left behind: {l}"));
        }
        if let Some(n) = &r.note {
            lines.push(n.clone());
        }
        if !lines.is_empty() {
            let _ = writeln!(s, "{}:", r.check);
            for l in lines {
                let _ = writeln!(s, "  {l}");
            }
        }
    }
    s
}

impl Row {
    /// The key cases use: a fault's type (`delete-veth`), or a lifecycle check's name.
    pub fn key(&self) -> &str {
        if self.kind == "fault" {
            self.check.split_whitespace().next().unwrap_or(&self.check)
        } else {
            &self.check
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_random_names_are_redacted() {
        assert_eq!(
            redact_hashes("chain CNI-c93f10c0fbb3404afea89661 jump from vethdb9c780f to CNI-DN-0123456789abcdef"),
            "chain CNI-<hash> jump from veth<random> to CNI-DN-<hash>"
        );
        assert_eq!(
            redact_hashes("veth-pod-a CNI-FORWARD"),
            "veth-pod-a CNI-FORWARD"
        );
    }
}
