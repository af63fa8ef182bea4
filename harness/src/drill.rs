//! Drills: netfault breaks a pinned lab with faults chosen by a seed, tells the trainee only the
//! symptom, checks the repair by probing (any repair that brings the healthy matrix back counts),
//! and gives hints from the live diagnosis, one level more per call.
//!
//! A drill's state lives in `/run/netfault/drills/<LAB>.json` beside the lab's record, so every
//! command is a separate process. The same fixture, level and seed give the same drill.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diagnose::{Component, Culprit};
use crate::error::{Error, Result};
use crate::fault::kinds;
use crate::fault::Fault;
use crate::lab::Lab;
use crate::matrix::{Cell, Matrix};
use crate::topology::{Network, Outcome, Topology};

/// What `drill start` saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillState {
    pub lab: String,
    pub fixture: PathBuf,
    pub seed: u64,
    pub level: u8,
    pub faults: Vec<Fault>,
    /// The symptom as the trainee was told it.
    pub symptom: Vec<String>,
    /// The cells not as expected right after the faults (`from → to proto`).
    pub broken_at_start: Vec<String>,
    /// How many hints were given (each call gives one level more).
    pub hints: u8,
    pub started_unix: u64,
    /// When `check` first found it solved: the drill's clock stops there.
    #[serde(default)]
    pub solved_unix: Option<u64>,
}

impl DrillState {
    /// Seconds from the start to the solve, or to now while unsolved.
    pub fn seconds(&self) -> u64 {
        self.solved_unix
            .unwrap_or_else(crate::clock::now_unix)
            .saturating_sub(self.started_unix)
    }
}

/// The deepest hint: after it, only `reveal` says more.
pub const HINT_LEVELS: u8 = 4;

pub fn load(lab: &str) -> Result<DrillState> {
    let p = crate::paths::drill_state(lab);
    let text = std::fs::read_to_string(&p).map_err(|_| {
        Error::NotFound(format!(
            "no drill on lab \"{lab}\" (netfault drill start --name {lab} starts one)"
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::other(format!("{}: unreadable drill state: {e}", p.display())))
}

pub fn save(s: &DrillState) -> Result<()> {
    let p = crate::paths::drill_state(&s.lab);
    crate::paths::write_atomic(&p, &serde_json::to_vec_pretty(s).expect("json"))
}

/// splitmix64: small, fast, and the same everywhere (a drill must replay from its seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The catalog faults a drill may use on a topology: (obvious, subtle). Obvious ones take an
/// interface, an address or a route away; subtle ones leave everything looking up and in place
/// (a firewall, NAT, a sysctl, a neighbour or FDB entry). Faults whose symptoms depend on
/// timing (loss, shaping) are left out.
pub fn candidates(t: &Topology) -> (Vec<Fault>, Vec<Fault>) {
    let mut obvious = Vec::new();
    let mut subtle = Vec::new();
    pod_candidates(t, &mut obvious, &mut subtle);
    node_candidates(t, &mut obvious, &mut subtle);
    ipv6_candidates(t, &mut obvious, &mut subtle);
    k8s_candidates(t, &mut subtle);
    let ok = |f: &Fault| f.check(t).is_ok();
    obvious.retain(ok);
    subtle.retain(ok);
    (obvious, subtle)
}

/// Faults of each pod: its veth, route, address, neighbour entry, and filters of its traffic.
fn pod_candidates(t: &Topology, obvious: &mut Vec<Fault>, subtle: &mut Vec<Fault>) {
    let bridged = t.has_bridge();
    let pods: Vec<(String, String)> = t
        .pods()
        .map(|(p, s)| (p.to_string(), s.node.clone()))
        .collect();
    for (pod, node) in &pods {
        obvious.push(Fault::DeleteVeth(kinds::DeleteVeth { pod: pod.clone() }));
        obvious.push(Fault::VethDown(kinds::VethDown { pod: pod.clone() }));
        obvious.push(Fault::DeletePodRoute(kinds::DeletePodRoute {
            pod: pod.clone(),
        }));
        obvious.push(Fault::RemovePodAddress(kinds::RemovePodAddress {
            pod: pod.clone(),
        }));
        if bridged {
            obvious.push(Fault::DetachVeth(kinds::DetachVeth { pod: pod.clone() }));
        } else {
            subtle.push(Fault::DisableProxyArp(kinds::DisableProxyArp {
                pod: pod.clone(),
            }));
        }
        subtle.push(Fault::WrongNeighbour(kinds::WrongNeighbour {
            node: node.clone(),
            pod: pod.clone(),
        }));
        subtle.push(Fault::NftReject(kinds::NftReject {
            node: node.clone(),
            from: pod.clone(),
            proto: Some(crate::topology::Proto::Tcp),
            port: None,
        }));
        subtle.push(Fault::DropInSecondTable(kinds::DropInSecondTable {
            node: node.clone(),
            from: pod.clone(),
        }));
    }
}

/// IPv6's own faults, on a dual-stack fixture ("IPv4 works, IPv6 doesn't"): a pod's IPv6
/// route is taken away (level 1); IPv6 forwarding, the ip6 masquerade, an ip6 filter, a wrong
/// NDP entry, an MTU under IPv6's minimum are subtle. Their checks drop them elsewhere.
fn ipv6_candidates(t: &Topology, obvious: &mut Vec<Fault>, subtle: &mut Vec<Fault>) {
    for (pod, _) in t.pods() {
        let pod = pod.to_string();
        obvious.push(Fault::DeletePodRoute6(kinds::DeletePodRoute6 {
            pod: pod.clone(),
        }));
        subtle.push(Fault::WrongNeighbour6(kinds::WrongNeighbour6 {
            pod: pod.clone(),
        }));
        subtle.push(Fault::MtuBelowIpv6Minimum(kinds::MtuBelowIpv6Minimum {
            pod,
        }));
    }
    for (node, _) in t.nodes() {
        let node = node.to_string();
        subtle.push(Fault::DisableIpv6Forward(kinds::DisableIpv6Forward {
            node: node.clone(),
        }));
        subtle.push(Fault::DeleteMasquerade6(kinds::DeleteMasquerade6 {
            node: node.clone(),
        }));
        subtle.push(Fault::ForwardDropPolicy6(kinds::ForwardDropPolicy6 {
            node,
        }));
    }
}

/// Faults of each node: forwarding, its uplink and bridge, NAT, filters, rp_filter, vxlan.
fn node_candidates(t: &Topology, obvious: &mut Vec<Fault>, subtle: &mut Vec<Fault>) {
    let bridged = t.has_bridge();
    let vxlan = matches!(t.cluster.network, Network::Vxlan(_));
    let nodes: Vec<String> = t.nodes().map(|(n, _)| n.to_string()).collect();
    for node in &nodes {
        // A sysctl: level 2's (level 1 takes an interface, address or route away).
        subtle.push(Fault::DisableIpForward(kinds::DisableIpForward {
            node: node.clone(),
        }));
        obvious.push(Fault::LinkDown(kinds::LinkDown {
            host: node.clone(),
            interface: t
                .host(node)
                .and_then(|h| h.as_node())
                .map(|n| n.uplink_ifname.clone())
                .unwrap_or_else(|| "eth0".into()),
        }));
        if bridged {
            obvious.push(Fault::BridgeDown(kinds::BridgeDown { node: node.clone() }));
            obvious.push(Fault::RemoveGatewayAddress(kinds::RemoveGatewayAddress {
                node: node.clone(),
            }));
        }
        subtle.push(Fault::DeleteMasquerade(kinds::DeleteMasquerade {
            node: node.clone(),
        }));
        subtle.push(Fault::ForwardDropPolicy(kinds::ForwardDropPolicy {
            node: node.clone(),
        }));
        subtle.push(Fault::StrictRpFilter(kinds::StrictRpFilter {
            node: node.clone(),
        }));
        if vxlan {
            subtle.push(Fault::BlockVxlanPort(kinds::BlockVxlanPort {
                node: node.clone(),
            }));
            for peer in nodes.iter().filter(|p| *p != node) {
                subtle.push(Fault::DeleteVxlanFdb(kinds::DeleteVxlanFdb {
                    node: node.clone(),
                    peer: peer.clone(),
                }));
                subtle.push(Fault::DeleteVxlanNeighbour(kinds::DeleteVxlanNeighbour {
                    node: node.clone(),
                    peer: peer.clone(),
                }));
            }
        }
    }
}

/// The Kubernetes layer, where the fixture has one: kube-proxy, hairpin, br_netfilter and
/// resolver settings, each repairable with nft, bridge, sysctl or an editor in the pod. All
/// subtle: rules and settings, nothing taken away.
fn k8s_candidates(t: &Topology, subtle: &mut Vec<Fault>) {
    let bridged = t.has_bridge();
    let nodes: Vec<String> = t.nodes().map(|(n, _)| n.to_string()).collect();
    for s in t.k8s.services.iter().filter(|s| !s.dns) {
        for node in &nodes {
            subtle.push(Fault::DeleteServiceRule(kinds::DeleteServiceRule {
                node: node.clone(),
                service: s.name.clone(),
            }));
        }
        if let Some(e) = s.endpoints.first() {
            if bridged {
                subtle.push(Fault::HairpinOff(kinds::HairpinOff { pod: e.pod.clone() }));
            }
            subtle.push(Fault::WrongEndpointPort(kinds::WrongEndpointPort {
                service: s.name.clone(),
                port: e.port.wrapping_add(1).max(1),
            }));
        }
    }
    if !t.k8s.services.is_empty() {
        for node in &nodes {
            subtle.push(Fault::FlushKubeProxy(kinds::FlushKubeProxy {
                node: node.clone(),
            }));
            if bridged {
                subtle.push(Fault::BridgeNfOff(kinds::BridgeNfOff {
                    node: node.clone(),
                }));
            }
        }
    }
    if let Some(d) = &t.k8s.dns {
        let wrong = std::net::Ipv4Addr::from(u32::from(d.service_ip).wrapping_add(1));
        for (pod, _) in t.pods() {
            subtle.push(Fault::WrongNameserver(kinds::WrongNameserver {
                pod: pod.to_string(),
                nameserver: wrong,
            }));
        }
    }
}

/// The host a fault lives on (where a trainee has to go to repair it).
pub fn place(f: &Fault) -> String {
    let v = serde_json::to_value(f).unwrap_or_default();
    ["node", "host", "pod"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(String::from))
        .unwrap_or_default()
}

/// The fault sets to try, in order, for a level and seed (the first that breaks something wins).
/// Level 1: one obvious fault (an interface, address or route taken away); 2: one subtle fault;
/// 3: two faults of different kinds on different hosts, at least one of them subtle.
pub fn plan(t: &Topology, level: u8, seed: u64) -> Vec<Vec<Fault>> {
    let (mut obvious, mut subtle) = candidates(t);
    let mut rng = Rng(seed ^ (u64::from(level) << 56));
    rng.shuffle(&mut obvious);
    rng.shuffle(&mut subtle);
    match level {
        1 => obvious.into_iter().map(|f| vec![f]).collect(),
        2 => subtle.into_iter().map(|f| vec![f]).collect(),
        _ => {
            let mut others: Vec<Fault> = obvious.into_iter().chain(subtle.clone()).collect();
            rng.shuffle(&mut others);
            let mut out = Vec::new();
            for a in &subtle {
                for b in &others {
                    // Two places, and two kinds: the second fault is not the first one again.
                    if place(a) != place(b) && a.name() != b.name() {
                        out.push(vec![a.clone(), b.clone()]);
                        break;
                    }
                }
            }
            out
        }
    }
}

/// The cells whose outcome is not the expected one.
pub fn broken_cells(m: &Matrix) -> Vec<&Cell> {
    m.cells
        .iter()
        .filter(|c| c.expected.is_some_and(|e| e != c.observed))
        .collect()
}

/// `from → to proto` for a cell.
pub fn cell_key(c: &Cell) -> String {
    format!("{} → {} {}", c.from, c.to, c.proto)
}

fn proto_list(ps: &[String]) -> String {
    match ps {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The symptom as a user would report it: who cannot reach whom, how it fails, and what still
/// works nearby. Names no host as the cause and no component.
pub fn symptom(m: &Matrix) -> Vec<String> {
    // (from, to) → (protocols, outcomes seen, outcome expected)
    type Trouble = (Vec<String>, Vec<Outcome>, Outcome);
    let mut broken: BTreeMap<(String, String), Trouble> = BTreeMap::new();
    for c in broken_cells(m) {
        let e = broken
            .entry((c.from.clone(), c.to.clone()))
            .or_insert_with(|| {
                (
                    Vec::new(),
                    Vec::new(),
                    c.expected.unwrap_or(Outcome::Reachable),
                )
            });
        e.0.push(c.proto.as_str().to_uppercase());
        e.1.push(c.observed);
    }
    let mut lines = Vec::new();
    let shown = 6;
    for ((from, to), (protos, outcomes, expected)) in broken.iter().take(shown) {
        lines.push(symptom_line(from, to, protos, outcomes, *expected));
    }
    if broken.len() > shown {
        lines.push(format!(
            "…and {} more pairs have trouble.",
            broken.len() - shown
        ));
    }
    // What still works, between hosts the broken pairs involve.
    let involved: Vec<&String> = broken.keys().flat_map(|(a, b)| [a, b]).collect();
    let fine = |a: &str, b: &str| {
        let cells: Vec<&Cell> = m
            .cells
            .iter()
            .filter(|c| c.from == a && c.to == b)
            .collect();
        !cells.is_empty()
            && cells
                .iter()
                .all(|c| c.matches() && c.observed == Outcome::Reachable)
    };
    let mut works = Vec::new();
    for (i, a) in m.hosts.iter().enumerate() {
        for b in m.hosts.iter().skip(i + 1) {
            if !(involved.contains(&a) || involved.contains(&b)) {
                continue;
            }
            match (fine(a, b), fine(b, a)) {
                (true, true) => works.push(format!("{a} and {b} talk fine.")),
                (true, false) if !broken.contains_key(&(b.clone(), a.clone())) => {
                    works.push(format!("{a} reaches {b} fine."))
                }
                (false, true) if !broken.contains_key(&(a.clone(), b.clone())) => {
                    works.push(format!("{b} reaches {a} fine."))
                }
                _ => {}
            }
        }
    }
    lines.extend(works.into_iter().take(2));
    lines
}

/// One broken pair as a user says it: "pod-a cannot reach ext over TCP and UDP: it hangs,
/// then times out." A lookup reads "cannot resolve", a pair that should fail "reaches".
fn symptom_line(
    from: &str,
    to: &str,
    protos: &[String],
    outcomes: &[Outcome],
    expected: Outcome,
) -> String {
    let how = |o: &Outcome| match o {
        Outcome::Timeout => "it hangs, then times out",
        Outcome::Unreachable => "it fails at once with \"No route to host\"",
        Outcome::Refused => "the connection is refused",
        Outcome::Reachable => "it gets through",
        Outcome::Unsupported => "it cannot even be tried",
        Outcome::Nxdomain => "the name does not exist (NXDOMAIN)",
        Outcome::Servfail => "the resolver fails (SERVFAIL)",
    };
    let mut hows: Vec<&str> = outcomes.iter().map(how).collect();
    hows.sort();
    hows.dedup();
    let hows = hows.join("; ");
    if expected != Outcome::Reachable {
        return format!(
            "{from} reaches {to} over {}, which it should not.",
            proto_list(protos)
        );
    }
    match to.strip_prefix("dns/") {
        Some(name) => format!("{from} cannot resolve {name}: {hows}."),
        None => format!(
            "{from} cannot reach {to} over {}: {hows}.",
            proto_list(protos)
        ),
    }
}

/// What `drill start` did.
pub struct Started {
    pub state: DrillState,
    pub hosts: Vec<String>,
}

/// Brings up the pinned lab `name`, breaks it per level and seed, saves the drill.
pub async fn start(
    topo: &Topology,
    fixture: Option<PathBuf>,
    name: &str,
    level: u8,
    seed: u64,
) -> Result<Started> {
    if !(1..=3).contains(&level) {
        return Err(Error::BadInput(format!(
            "level {level}: levels are 1 (one obvious fault), 2 (one subtle fault), 3 (two faults)"
        )));
    }
    if crate::paths::drill_state(name).exists() {
        return Err(Error::BadInput(format!(
            "a drill is already running on lab {name}: netfault drill end {name} stops it"
        )));
    }
    let lab = Lab::up_named(topo, name, fixture.clone()).await?;
    match break_lab(&lab, topo, level, seed).await {
        Ok((faults, m)) => {
            let state = DrillState {
                lab: name.to_string(),
                fixture: fixture.unwrap_or_default(),
                seed,
                level,
                faults,
                symptom: symptom(&m),
                broken_at_start: broken_cells(&m).into_iter().map(cell_key).collect(),
                hints: 0,
                started_unix: crate::clock::now_unix(),
                solved_unix: None,
            };
            if let Err(e) = save(&state) {
                drop(lab);
                let _ = Lab::down_named(name);
                return Err(e);
            }
            Ok(Started {
                state,
                hosts: topo.host_names().into_iter().map(String::from).collect(),
            })
        }
        Err(e) => {
            drop(lab);
            let _ = Lab::down_named(name);
            Err(e)
        }
    }
}

async fn break_lab(
    lab: &Lab,
    topo: &Topology,
    level: u8,
    seed: u64,
) -> Result<(Vec<Fault>, Matrix)> {
    let healthy = crate::probe::matrix(lab).await?;
    if !healthy.mismatches().is_empty() {
        return Err(Error::other(format!(
            "the fixture is unhealthy before any fault: {}",
            healthy.render_mismatches().join("; ")
        )));
    }
    for set in plan(topo, level, seed).into_iter().take(12) {
        let mut guards = Vec::new();
        let mut ok = true;
        for f in &set {
            match f.inject(lab).await {
                Ok(g) => guards.push(g),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            let m = crate::probe::matrix(lab).await?;
            if !broken_cells(&m).is_empty() {
                // The drill is the breakage: the undo logs are dropped on purpose.
                drop(guards);
                return Ok((set, m));
            }
        }
        for g in guards.into_iter().rev() {
            g.heal(lab).await?;
        }
    }
    Err(Error::other(format!(
        "no fault of level {level} breaks anything on {} with seed {seed}",
        topo.name
    )))
}

/// The outcome of `drill check`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub solved: bool,
    /// Cells still not as expected that were broken by the drill.
    pub still_broken: Vec<String>,
    /// Cells not as expected now that were fine when the drill started: the trainee's doing.
    pub collateral: Vec<String>,
    pub matrix: Matrix,
}

pub async fn check(lab: &Lab, s: &DrillState) -> Result<Check> {
    let m = crate::probe::matrix(lab).await?;
    // A pair is broken when its outcome is not the expected one; one reachable through a
    // translation of the trainee's own (an SNAT rule instead of the masquerade) is not.
    let now: Vec<String> = broken_cells(&m).into_iter().map(cell_key).collect();
    let (still, collateral): (Vec<String>, Vec<String>) =
        now.into_iter().partition(|k| s.broken_at_start.contains(k));
    Ok(Check {
        solved: still.is_empty() && collateral.is_empty(),
        still_broken: still,
        collateral,
        matrix: m,
    })
}

/// The area a component belongs to, in words that name neither a host nor the component.
fn area(c: Component) -> &'static str {
    match c {
        Component::Link | Component::Bridge | Component::Address => {
            "the wiring: interfaces, their state and their addresses"
        }
        Component::Route | Component::Forwarding | Component::RpFilter => {
            "routing: how hosts pick a way for a packet and whether they pass it on"
        }
        Component::Masquerade | Component::Filter => {
            "packet rules: what the firewall drops and how addresses get translated"
        }
        Component::Mtu => "packet sizes along the path",
        Component::Overlay => "the tunnel that carries pod traffic between nodes",
        Component::Neighbour => "layer 2: who answers for which address on a link",
        Component::Service | Component::Policy | Component::Dns => "the Kubernetes layer",
        Component::Unexplained => "somewhere the diagnosis cannot pin down",
    }
}

/// What to run to look at a component on a host.
fn look_with(lab: &str, host: &str, c: Component) -> String {
    let cmd = match c {
        Component::Link => "ip -d link show",
        Component::Bridge => "bridge link show",
        Component::Address => "ip addr show",
        Component::Route => "ip route show table all",
        Component::Forwarding => "sysctl -a --pattern 'forwarding|ip_forward'",
        Component::RpFilter => "sysctl -a --pattern rp_filter",
        Component::Masquerade | Component::Filter => "nft list ruleset",
        Component::Mtu => "ip link show",
        Component::Overlay => "bridge fdb show; ip neigh show",
        Component::Neighbour => "ip neigh show",
        Component::Service => {
            "nft list table ip kube-proxy; sysctl net.bridge; bridge -d link show"
        }
        Component::Policy => "nft list table inet netfault-policy",
        Component::Dns => "cat /etc/resolv.conf; getent hosts kube-dns.kube-system",
        Component::Unexplained => "nft list ruleset; ip route; ip addr",
    };
    format!("netfault exec {lab} {host} -- sh -c \"{cmd}\"")
}

/// The hint at `level` (1..=4) for a culprit: 1 the area, 2 the host, 3 the component, 4 the
/// command to look with. Each level says what the ones before said, and nothing of the next.
pub fn hint(lab: &str, level: u8, c: &Culprit) -> Vec<String> {
    let mut out = vec![format!("Area: {}.", area(c.component))];
    if level >= 2 {
        out.push(format!("Host: the trouble is on {}.", c.host));
    }
    if level >= 3 {
        out.push(format!(
            "Component: look at {}'s {}.",
            c.host,
            c.component.as_str()
        ));
    }
    if level >= 4 {
        out.push(format!(
            "Look with: {}",
            look_with(lab, &c.host, c.component)
        ));
    }
    out
}

/// The culprit hints are about: the first broken pair's, from the live lab (no evidence
/// gathering, so a hint takes one probe round and a walk).
pub async fn culprit(lab: &Lab) -> Result<Option<Culprit>> {
    let m = crate::probe::matrix(lab).await?;
    let broken: Vec<_> = m
        .mismatches()
        .into_iter()
        .filter(|c| c.expected == Some(Outcome::Reachable))
        .map(|c| (c.from.clone(), c.to.clone(), c.proto, c.observed))
        .collect();
    if broken.is_empty() {
        return Ok(None);
    }
    let ds = crate::diagnose::explain_pairs(lab, &broken, None).await?;
    // The most common culprit first: the one most of the symptom hangs on.
    let mut count: BTreeMap<(String, &'static str), (usize, Culprit)> = BTreeMap::new();
    for d in &ds {
        let e = count
            .entry((d.culprit.host.clone(), d.culprit.component.as_str()))
            .or_insert((0, d.culprit.clone()));
        e.0 += 1;
    }
    Ok(count
        .into_values()
        .max_by_key(|(n, c)| {
            (
                *n,
                std::cmp::Reverse((c.host.clone(), c.component.as_str())),
            )
        })
        .map(|(_, c)| c))
}

/// Removes the drill's lab and state.
pub fn end(lab: &str) -> Result<()> {
    let had_state = std::fs::remove_file(crate::paths::drill_state(lab)).is_ok();
    match Lab::down_named(lab) {
        Ok(_) => Ok(()),
        Err(Error::NotFound(_)) if had_state => Ok(()),
        Err(e) => Err(e),
    }
}

/// A path relative to the current directory when it is under it (for messages).
pub fn shown(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(|r| r.display().to_string()))
        .unwrap_or_else(|| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{parse_fixture, Source};

    fn single() -> Topology {
        parse_fixture(&Source::new(
            "single-node.toml",
            include_str!("../../fixtures/single-node.toml"),
        ))
        .unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_levels_differ() {
        let t = single();
        assert_eq!(plan(&t, 2, 7), plan(&t, 2, 7));
        assert_ne!(plan(&t, 2, 7), plan(&t, 2, 8));
        let (obvious, subtle) = candidates(&t);
        for set in plan(&t, 1, 3) {
            assert!(set.len() == 1 && obvious.contains(&set[0]));
        }
        for set in plan(&t, 2, 3) {
            assert!(set.len() == 1 && subtle.contains(&set[0]));
        }
        for set in plan(&t, 3, 3) {
            assert_eq!(set.len(), 2);
            assert_ne!(place(&set[0]), place(&set[1]), "{set:?}");
        }
    }

    #[test]
    fn level_1_takes_something_away_and_level_3_never_repeats_a_kind() {
        for fixture in [
            single(),
            parse_fixture(&Source::new(
                "k8s.toml",
                include_str!("../../fixtures/k8s.toml"),
            ))
            .unwrap(),
        ] {
            for seed in 0..20 {
                for set in plan(&fixture, 1, seed) {
                    let c = set[0].kind().component;
                    assert!(
                        ["link", "bridge", "address", "route"].contains(&c),
                        "level 1 takes an interface, address or route away: {set:?}"
                    );
                }
                for set in plan(&fixture, 3, seed) {
                    assert_ne!(set[0].name(), set[1].name(), "{set:?}");
                }
            }
        }
    }

    #[test]
    fn a_dual_stack_fixture_drills_ipv6_faults_too() {
        let dual = parse_fixture(&Source::new(
            "dual-stack.toml",
            include_str!("../../fixtures/dual-stack.toml"),
        ))
        .unwrap();
        let v6 = |fs: &[Fault]| fs.iter().filter(|f| f.name().contains('6')).count();
        let (obvious, subtle) = candidates(&dual);
        assert_eq!(v6(&obvious), 2, "{obvious:?}");
        assert_eq!(v6(&subtle), 7, "{subtle:?}");
        let (obvious, subtle) = candidates(&single());
        assert_eq!(
            v6(&obvious) + v6(&subtle),
            0,
            "an IPv4 fixture has no IPv6 fault"
        );
        let picked: Vec<Fault> = (0..40).flat_map(|s| plan(&dual, 2, s)).flatten().collect();
        assert!(
            v6(&picked) > 0,
            "level 2 picks IPv6 faults on a dual-stack fixture"
        );
    }

    #[test]
    fn symptoms_read_as_english() {
        let tcp_udp = ["TCP".to_string(), "UDP".to_string()];
        assert_eq!(
            symptom_line(
                "pod-a",
                "ext",
                &tcp_udp,
                &[Outcome::Timeout, Outcome::Timeout],
                Outcome::Reachable
            ),
            "pod-a cannot reach ext over TCP and UDP: it hangs, then times out."
        );
        assert_eq!(
            symptom_line(
                "pod-a",
                "dns/web",
                &["DNS".into()],
                &[Outcome::Timeout],
                Outcome::Reachable
            ),
            "pod-a cannot resolve web: it hangs, then times out."
        );
        assert_eq!(
            symptom_line(
                "ext",
                "pod-a",
                &["TCP".into()],
                &[Outcome::Reachable],
                Outcome::Unreachable
            ),
            "ext reaches pod-a over TCP, which it should not."
        );
        assert_eq!(
            symptom_line("pod-a", "ext", &tcp_udp, &[Outcome::Unreachable, Outcome::Refused], Outcome::Reachable),
            "pod-a cannot reach ext over TCP and UDP: it fails at once with \"No route to host\"; the connection is refused."
        );
    }

    #[test]
    fn hints_add_one_level_at_a_time() {
        let c = Culprit {
            host: "node1".into(),
            component: Component::Masquerade,
            summary: "x".into(),
        };
        let h1 = hint("lab", 1, &c).join("\n");
        assert!(!h1.contains("node1") && !h1.contains("masquerade"), "{h1}");
        let h2 = hint("lab", 2, &c).join("\n");
        assert!(h2.contains("node1") && !h2.contains("masquerade"), "{h2}");
        let h3 = hint("lab", 3, &c).join("\n");
        assert!(
            h3.contains("masquerade") && !h3.contains("netfault exec"),
            "{h3}"
        );
        let h4 = hint("lab", 4, &c).join("\n");
        assert!(
            h4.contains("netfault exec lab node1 -- sh -c \"nft list ruleset\""),
            "{h4}"
        );
    }
}
