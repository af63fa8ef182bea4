//! Pictures of a lab: hosts, their interfaces and addresses, bridges, veth links and overlays,
//! as SVG (drawn here: no graphviz on the machines) or as Graphviz DOT. The hops a diagnosis
//! found broken are drawn in red, and each culprit gets a numbered badge and a line in the
//! legend.
//!
//! Layout: pods in a row above their node, nodes side by side, the underlay switch below the
//! nodes and external hosts at the bottom.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::diagnose::{Diagnosis, HopStatus, LabState};
use crate::error::{Error, Result};
use crate::lab::plan::{IfaceKind, Plan};
use crate::topology::{Role, Topology, SWITCH_HOST};

/// One culprit of a diagnosis, with the pairs it explains and the hops that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub host: String,
    pub component: String,
    pub summary: String,
    /// `from → to protocols`
    pub pairs: Vec<String>,
    /// (host, text) of every failed hop on the way.
    pub hops: Vec<(String, String)>,
}

/// The diagnoses grouped by culprit, in first-seen order.
pub fn findings(ds: &[Diagnosis]) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for d in ds {
        let protos: Vec<&str> = d.protocols.iter().map(|p| p.as_str()).collect();
        let pair = format!("{} → {} {}", d.from, d.to, protos.join(","));
        let hops = d
            .forward
            .iter()
            .chain(&d.reply)
            .filter(|h| h.status == HopStatus::Fail)
            .map(|h| (h.host.clone(), h.text.clone()));
        let c = &d.culprit;
        match out
            .iter_mut()
            .find(|f| f.host == c.host && f.component == c.component.as_str())
        {
            Some(f) => {
                // One line per pair: protocols found separately join the pair's line.
                let head = format!("{} → {} ", d.from, d.to);
                match f.pairs.iter_mut().find(|p| p.starts_with(&head)) {
                    Some(p) => {
                        for proto in &protos {
                            if !p[head.len()..].split(',').any(|x| x == *proto) {
                                p.push(',');
                                p.push_str(proto);
                            }
                        }
                    }
                    None => f.pairs.push(pair),
                }
                for h in hops {
                    if !f.hops.contains(&h) {
                        f.hops.push(h);
                    }
                }
            }
            None => out.push(Finding {
                host: c.host.clone(),
                component: c.component.as_str().to_string(),
                summary: c.summary.clone(),
                pairs: vec![pair],
                hops: hops.collect(),
            }),
        }
    }
    out
}

/// A named lab's latest diagnosis, as `netfault diagram LAB` draws it: when it was taken, and
/// a digest of the lab's state then (a drawing drops a diagnosis the lab has changed since).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    pub taken_unix: u64,
    pub state_digest: u64,
    pub findings: Vec<Finding>,
}

/// A digest of a lab's captured state (stable: the capture holds no counters or timers).
pub fn state_digest(state: &LabState) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(state)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// Keeps a named lab's latest diagnosis for `netfault diagram LAB`.
pub fn save_latest(lab: &str, ds: &[Diagnosis], state: &LabState) -> Result<()> {
    let p = crate::paths::latest_diagnosis(lab);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    let saved = Saved {
        taken_unix: crate::clock::now_unix(),
        state_digest: state_digest(state),
        findings: findings(ds),
    };
    std::fs::write(&p, serde_json::to_vec(&saved).expect("json"))
        .map_err(|e| Error::io(format!("writing {}", p.display()), e))
}

pub fn load_latest(lab: &str) -> Option<Saved> {
    std::fs::read(crate::paths::latest_diagnosis(lab))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// What a pinned lab's kernel shows where it may differ from the plan: each node's forwarding
/// and masquerade, each interface's state and addresses. A drawing of a live lab uses these.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub node_config: BTreeMap<String, String>,
    /// (host, interface) → its state word when not up ("down", "no carrier", "gone").
    pub not_up: BTreeMap<(String, String), String>,
    /// (host, interface) → its live addresses.
    pub addrs: BTreeMap<(String, String), Vec<String>>,
    /// A line about the drawing: when its diagnosis was taken, or why none is drawn.
    pub note: Option<String>,
}

/// The live view of a captured lab.
pub fn live_of(state: &LabState, t: &Topology, plan: &Plan) -> Live {
    let mut live = Live::default();
    for hp in &plan.hosts {
        let Some(h) = state.host(&hp.name) else {
            continue;
        };
        for i in &hp.ifaces {
            let key = (hp.name.clone(), i.name.clone());
            match h.links.get(&i.name) {
                None => {
                    live.not_up.insert(key.clone(), "gone".into());
                }
                Some(l) if !l.admin_up => {
                    live.not_up.insert(key.clone(), "down".into());
                }
                Some(l) if l.oper != "up" && l.oper != "unknown" => {
                    live.not_up.insert(key.clone(), "no carrier".into());
                }
                _ => {}
            }
            let addrs: Vec<String> = h
                .addresses
                .iter()
                .filter_map(|a| a.strip_prefix(&format!("{} ", i.name)).map(String::from))
                .collect();
            live.addrs.insert(key, addrs);
        }
        if t.host(&hp.name).and_then(|h| h.as_node()).is_some() {
            let fwd = h.sysctls.get("net.ipv4.ip_forward").map(String::as_str) == Some("1");
            let masq_in = |six: bool| {
                h.nft
                    .iter()
                    .filter(|(table, _)| six == table.starts_with("table ip6 "))
                    .flat_map(|(_, chains)| chains.values())
                    .flatten()
                    .any(|r| r.contains("masquerade"))
            };
            let fwd6 = h
                .sysctls
                .get("net.ipv6.conf.all.forwarding")
                .map(String::as_str)
                == Some("1");
            let six = Family6 {
                fwd: fwd6,
                masq: masq_in(true),
            };
            live.node_config
                .insert(hp.name.clone(), config_line(hp, fwd, masq_in(false), six));
        }
    }
    live
}

/// XML text and attribute escaping; characters XML 1.0 cannot hold at all become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' | '\t' | '\r' => o.push(c),
            c if (c as u32) < 0x20 => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// An id fragment: letters, digits and '-' only.
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

const POD_W: f64 = 170.0;
const POD_H: f64 = 84.0;
const NODE_MIN_W: f64 = 360.0;
const NODE_H: f64 = 176.0;
const EXT_W: f64 = 180.0;
const SWITCH_H: f64 = 74.0;
const GAP: f64 = 24.0;
const ROW_GAP: f64 = 84.0;
const MARGIN: f64 = 24.0;
const PORT_H: f64 = 20.0;
/// Where a bridge bar sits inside its host, from the top.
const NODE_BAR_Y: f64 = 40.0;
const SWITCH_BAR_Y: f64 = 42.0;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Top,
    Bottom,
}

#[derive(Debug, Clone)]
struct HostBox {
    name: String,
    role: &'static str,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    /// Lines under the name.
    lines: Vec<String>,
}

impl HostBox {
    fn cx(&self) -> f64 {
        self.x + self.w / 2.0
    }
}

#[derive(Debug, Clone)]
struct Port {
    host: String,
    ifname: String,
    side: Side,
    x: f64,
    y: f64,
    w: f64,
    addrs: Vec<String>,
    /// For an overlay device: what it carries ("vxlan 1 :8472").
    note: String,
    /// Live, when not up: "down", "no carrier", "gone".
    state: Option<String>,
}

impl Port {
    /// Where a link attaches: the middle of the port's outer edge.
    fn anchor(&self) -> (f64, f64) {
        match self.side {
            Side::Top => (self.x, self.y - PORT_H / 2.0),
            Side::Bottom => (self.x, self.y + PORT_H / 2.0),
        }
    }
}

struct Bridge {
    host: String,
    name: String,
    x: f64,
    y: f64,
    w: f64,
    addrs: Vec<String>,
}

struct Layout {
    boxes: Vec<HostBox>,
    ports: Vec<Port>,
    bridges: Vec<Bridge>,
    width: f64,
    bottom: f64,
}

fn addrs_of(plan: &Plan, host: &str, ifname: &str) -> Vec<String> {
    plan.host(host)
        .map(|h| {
            let v4 = h.addresses.iter().map(|(d, a)| (d, a.to_string()));
            let v6 = h.v6.addresses.iter().map(|(d, a)| (d, a.to_string()));
            v4.chain(v6)
                .filter(|(d, _)| *d == ifname)
                .map(|(_, a)| a)
                .collect()
        })
        .unwrap_or_default()
}

/// What a node does besides its interfaces: forwarding and masquerade, from the plan.
fn node_config(plan: &Plan, node: &str) -> String {
    let Some(hp) = plan.host(node) else {
        return String::new();
    };
    let fwd = hp
        .sysctls
        .iter()
        .any(|(k, v)| k == "net.ipv4.ip_forward" && v == "1");
    let six = Family6 {
        fwd: hp
            .sysctls
            .iter()
            .any(|(k, v)| k == "net.ipv6.conf.all.forwarding" && v == "1"),
        masq: hp.v6.masquerade.is_some(),
    };
    config_line(hp, fwd, hp.masquerade.is_some(), six)
}

/// A node's IPv6 forwarding and whether an ip6 masquerade rule is there (dual-stack labs).
struct Family6 {
    fwd: bool,
    masq: bool,
}

/// A node's line: its forwarding, and its masquerade as planned — or, drawn live, whether a
/// masquerade rule is there at all.
fn config_line(hp: &crate::lab::HostPlan, fwd: bool, masq_rule: bool, six: Family6) -> String {
    let mut parts = vec![format!("ip_forward {}", if fwd { "on" } else { "off" })];
    match (&hp.masquerade, masq_rule) {
        (Some(m), true) => parts.push(format!("masquerade {} out of {}", m.pod_cidr, m.uplink)),
        (Some(_), false) => parts.push("no masquerade rule".into()),
        (None, true) => parts.push("a masquerade rule".into()),
        (None, false) => {}
    }
    if !hp.v6.is_empty() {
        parts.push(format!(
            "IPv6 forwarding {}",
            if six.fwd { "on" } else { "off" }
        ));
        match (&hp.v6.masquerade, six.masq) {
            (Some(m), true) => parts.push(format!("ip6 masquerade {}", m.pod_cidr)),
            (Some(_), false) => parts.push("no ip6 masquerade rule".into()),
            (None, true) => parts.push("an ip6 masquerade rule".into()),
            (None, false) => {}
        }
    }
    parts.join(" · ")
}

fn layout(t: &Topology, plan: &Plan) -> Layout {
    let boxes = host_boxes(t, plan);
    let width = boxes.iter().map(|b| b.x + b.w).fold(0.0, f64::max) + MARGIN;
    let bottom = boxes.iter().map(|b| b.y + b.h).fold(0.0, f64::max);
    let (ports, bridges) = ports_and_bridges(plan, &boxes);
    Layout {
        boxes,
        ports,
        bridges,
        width,
        bottom,
    }
}

/// The hosts' boxes: pods above their nodes, the switch below, external hosts under the switch
/// or under the node their uplink goes to.
fn host_boxes(t: &Topology, plan: &Plan) -> Vec<HostBox> {
    let mut boxes: Vec<HostBox> = Vec::new();
    let nodes: Vec<(&str, &crate::topology::NodeSpec)> = t.nodes().collect();
    let has_switch = plan.host(SWITCH_HOST).is_some();
    let y_pods = MARGIN + 52.0;
    let y_nodes = y_pods + POD_H + ROW_GAP;
    let y_switch = y_nodes + NODE_H + ROW_GAP;
    let y_ext = if has_switch {
        y_switch + SWITCH_H + ROW_GAP
    } else {
        y_nodes + NODE_H + ROW_GAP
    };
    let mut x = MARGIN;
    for (name, n) in &nodes {
        let pods: Vec<&str> = t.pods_of(name).map(|(p, _)| p).collect();
        let pods_w = pods.len() as f64 * (POD_W + GAP) - GAP;
        let col_w = NODE_MIN_W.max(pods_w);
        let mut px = x + (col_w - pods_w.max(0.0)) / 2.0;
        for pod in &pods {
            boxes.push(HostBox {
                name: pod.to_string(),
                role: "pod",
                x: px,
                y: y_pods,
                w: POD_W,
                h: POD_H,
                lines: vec![format!("pod on {name}")],
            });
            px += POD_W + GAP;
        }
        boxes.push(HostBox {
            name: name.to_string(),
            role: "node",
            x,
            y: y_nodes,
            w: col_w,
            h: NODE_H,
            lines: vec![
                format!("node · pod CIDR {}", n.pod_cidr),
                node_config(plan, name),
            ],
        });
        x += col_w + GAP * 2.0;
    }
    let nodes_right = x - GAP * 2.0;
    // External hosts: under the switch, or under the node their uplink goes to.
    let mut ex = MARGIN;
    for h in t
        .hosts
        .iter()
        .filter(|h| matches!(h.role, Role::External(_)))
    {
        let under = if has_switch {
            None
        } else {
            plan.host(&h.name).and_then(|hp| {
                hp.ifaces.iter().find_map(|i| match &i.kind {
                    IfaceKind::Veth { peer_host, .. } => {
                        boxes.iter().find(|b| &b.name == peer_host).map(|b| b.cx())
                    }
                    _ => None,
                })
            })
        };
        let bx = match under {
            Some(cx) => (cx - EXT_W / 2.0).max(ex),
            None => ex,
        };
        boxes.push(HostBox {
            name: h.name.clone(),
            role: "external",
            x: bx,
            y: y_ext,
            w: EXT_W,
            h: POD_H,
            lines: vec!["outside the cluster".into()],
        });
        ex = bx + EXT_W + GAP;
    }
    if has_switch {
        let w = (nodes_right - MARGIN).max(ex - GAP - MARGIN).max(EXT_W);
        boxes.push(HostBox {
            name: SWITCH_HOST.to_string(),
            role: "switch",
            x: MARGIN,
            y: y_switch,
            w,
            h: SWITCH_H,
            lines: Vec::new(),
        });
    }
    boxes
}

/// Ports and bridges on the boxes.
fn ports_and_bridges(plan: &Plan, boxes: &[HostBox]) -> (Vec<Port>, Vec<Bridge>) {
    // Ports, in an order where a port's peer is placed before it is needed: pods, nodes, then
    // the switch and external hosts (which line up under the nodes' ports).
    let mut ports: Vec<Port> = Vec::new();
    let mut bridges = Vec::new();
    for role in ["pod", "node", "switch", "external"] {
        for b in boxes.iter().filter(|b| b.role == role) {
            let Some(hp) = plan.host(&b.name) else {
                continue;
            };
            let mut bottom_ifaces: Vec<(String, Vec<String>, String, Option<f64>)> = Vec::new();
            for i in &hp.ifaces {
                let addrs = addrs_of(plan, &b.name, &i.name);
                match &i.kind {
                    IfaceKind::Bridge => {
                        let bar_y = if role == "switch" {
                            SWITCH_BAR_Y
                        } else {
                            NODE_BAR_Y
                        };
                        bridges.push(Bridge {
                            host: b.name.clone(),
                            name: i.name.clone(),
                            x: b.x + 14.0,
                            y: b.y + bar_y,
                            w: b.w - 28.0,
                            addrs,
                        });
                    }
                    IfaceKind::Veth {
                        peer_host,
                        peer_name,
                        ..
                    } => {
                        let peer_box = boxes.iter().find(|p| &p.name == peer_host);
                        // Line up under (or over) the peer's port once it is placed, else its box.
                        let px = ports
                            .iter()
                            .find(|p| &p.host == peer_host && &p.ifname == peer_name)
                            .map(|p| p.x)
                            .or(peer_box.map(|p| p.cx()));
                        if peer_box.is_some_and(|p| p.y < b.y) {
                            ports.push(port(
                                &b.name,
                                &i.name,
                                Side::Top,
                                px.unwrap_or(b.cx()),
                                b,
                                addrs,
                                "",
                            ));
                        } else {
                            bottom_ifaces.push((i.name.clone(), addrs, String::new(), px));
                        }
                    }
                    IfaceKind::Vxlan { vni, port: p, .. } => {
                        bottom_ifaces.push((
                            i.name.clone(),
                            addrs,
                            format!("vxlan VNI {vni}, UDP {p}"),
                            None,
                        ));
                    }
                }
            }
            // Bottom ports: under their peer when it sits right below, else spread evenly.
            let n = bottom_ifaces.len() as f64;
            for (k, (name, addrs, note, under)) in bottom_ifaces.into_iter().enumerate() {
                let spread = b.x + b.w * (k as f64 + 1.0) / (n + 1.0);
                let x = match under {
                    Some(u) if role != "node" && u > b.x && u < b.x + b.w => u,
                    _ => spread,
                };
                ports.push(port(&b.name, &name, Side::Bottom, x, b, addrs, &note));
            }
        }
    }
    (ports, bridges)
}

fn port(
    host: &str,
    ifname: &str,
    side: Side,
    x: f64,
    b: &HostBox,
    addrs: Vec<String>,
    note: &str,
) -> Port {
    let w = (ifname.chars().count() as f64 * 7.2 + 14.0).max(44.0);
    let x = x.clamp(b.x + w / 2.0 + 2.0, b.x + b.w - w / 2.0 - 2.0);
    let y = match side {
        Side::Top => b.y,
        Side::Bottom => b.y + b.h,
    };
    Port {
        host: host.to_string(),
        ifname: ifname.to_string(),
        side,
        x,
        y,
        w,
        addrs,
        note: note.to_string(),
        state: None,
    }
}

/// Which hosts and interfaces the findings mark broken; links are marked only for a culprit
/// that lives on the wire (a route or a filter is the host's, not the cable's).
struct Marks {
    hosts: BTreeMap<String, Vec<usize>>,
    ports: Vec<(String, String)>,
    links: Vec<(String, String)>,
}

fn marks(findings: &[Finding], plan: &Plan) -> Marks {
    let mut hosts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut ports = Vec::new();
    let mut links = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        let first = ports.len();
        hosts.entry(f.host.clone()).or_default().push(i + 1);
        for (h, text) in &f.hops {
            let words: Vec<&str> = text
                .split(|c: char| {
                    c.is_whitespace() || matches!(c, ',' | '(' | ')' | ':' | '→' | '⇄')
                })
                .filter(|w| !w.is_empty())
                .collect();
            let has = |host: &str, ifname: &str| {
                plan.host(host).is_some_and(|hp| hp.iface(ifname).is_some())
            };
            let mut add = |k: (String, String)| {
                if !ports.contains(&k) {
                    ports.push(k);
                }
            };
            // "node1 veth-pod-a": an interface right after a host's name is that host's; any
            // other interface name is the hop's own host's.
            let mut taken = vec![false; words.len()];
            for k in 0..words.len().saturating_sub(1) {
                if plan.host(words[k]).is_some() && has(words[k], words[k + 1]) {
                    add((words[k].to_string(), words[k + 1].to_string()));
                    taken[k] = true;
                    taken[k + 1] = true;
                }
            }
            for (k, w) in words.iter().enumerate() {
                if !taken[k] && has(h, w) {
                    add((h.clone(), w.to_string()));
                }
            }
        }
        if matches!(
            f.component.as_str(),
            "link" | "bridge" | "mtu" | "neighbour" | "overlay"
        ) {
            links.extend(ports[first..].iter().cloned());
        }
    }
    Marks {
        hosts,
        ports,
        links,
    }
}

/// The lab as an SVG picture, with the findings drawn in red.
/// Puts what the live lab shows over the plan's drawing.
fn apply_live(l: &mut Layout, live: &Live) {
    for b in l.boxes.iter_mut().filter(|b| b.role == "node") {
        if let (Some(c), Some(line)) = (live.node_config.get(&b.name), b.lines.get_mut(1)) {
            *line = c.clone();
        }
    }
    for p in &mut l.ports {
        let key = (p.host.clone(), p.ifname.clone());
        if let Some(a) = live.addrs.get(&key) {
            p.addrs = a.clone();
        }
        p.state = live.not_up.get(&key).cloned();
        if let Some(st) = &p.state {
            // The label grows by its state: "veth-pod-b (down)".
            let chars = p.ifname.chars().count() + st.chars().count() + 3;
            p.w = p.w.max(chars as f64 * 6.6 + 14.0);
        }
    }
    for b in &mut l.bridges {
        if let Some(a) = live.addrs.get(&(b.host.clone(), b.name.clone())) {
            b.addrs = a.clone();
        }
    }
}

/// The lab as SVG: the plan's wiring, with what the live lab shows over it when `live` is
/// given (a pinned lab), and the findings in red.
pub fn svg(t: &Topology, plan: &Plan, findings: &[Finding], live: Option<&Live>) -> String {
    let mut l = layout(t, plan);
    if let Some(live) = live {
        apply_live(&mut l, live);
    }
    let m = marks(findings, plan);
    let k8s = k8s_lines(t);
    let note = live.and_then(|l| l.note.clone());
    let legend_lines = 2
        + usize::from(note.is_some())
        + k8s.len()
        + findings
            .iter()
            .map(|f| 1 + f.pairs.len().min(LEGEND_PAIRS + 1))
            .sum::<usize>();
    let height = l.bottom + 50.0 + legend_lines as f64 * 18.0 + MARGIN;
    let longest = findings
        .iter()
        .map(|f| f.summary.chars().count() + f.host.len() + f.component.len() + 8)
        .chain([t.description.chars().count()])
        .chain(k8s_lines(t).iter().map(|l| l.chars().count()))
        .max()
        .unwrap_or(0);
    let width = l.width.max(640.0).max(longest as f64 * 6.6 + 2.0 * MARGIN);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">"#,
        w = width,
        h = height
    );
    let _ = writeln!(
        s,
        "<title>{}</title>",
        esc(&format!("netfault lab: {}", t.name))
    );
    let _ = writeln!(
        s,
        r#"<style>.box{{fill:#f7f9fc;stroke:#50607a;stroke-width:1.5}} .node .box{{fill:#eef3fb}} .switch .box{{fill:#f1f1f1}} .broken .box,.port.broken rect{{stroke:#d0021b;stroke-width:3}} .port rect{{fill:#fff;stroke:#50607a}} .link{{stroke:#50607a;stroke-width:2}} .link.broken{{stroke:#d0021b;stroke-width:3;stroke-dasharray:6 4}} .overlay{{stroke:#7b61c4;stroke-width:3;fill:none;stroke-opacity:0.7}} .overlay.broken{{stroke:#d0021b;stroke-dasharray:6 4;stroke-opacity:1}} .port.down rect{{fill:#eee;stroke:#999;stroke-dasharray:3 2}} .port.down text{{fill:#888}} .k8s-head{{font-weight:bold;fill:#326ce5}} .k8s{{fill:#326ce5;font-size:11px}} .bridge rect{{fill:#dde7f7;stroke:#50607a}} .member{{stroke:#8a97ad;stroke-width:1.5}} .name{{font-weight:bold;font-size:14px}} .sub{{fill:#555}} .addr{{fill:#1d4f91;font-size:11px}} .badge circle{{fill:#d0021b}} .badge text{{fill:#fff;font-weight:bold}} .finding{{fill:#d0021b}} .legend{{fill:#333}} .title{{font-weight:bold;font-size:16px}} .vxnote{{fill:#7b61c4;font-size:11px}}</style>"#
    );
    let _ = writeln!(
        s,
        r#"<text class="title" x="{MARGIN}" y="{:.0}">{}</text><text class="sub" x="{MARGIN}" y="{:.0}">{}</text>"#,
        MARGIN + 8.0,
        esc(&t.name),
        MARGIN + 26.0,
        esc(&t.description)
    );
    draw_links(&mut s, plan, &l, &m);
    draw_overlays(&mut s, &l, &m);
    draw_hosts(&mut s, &l, &m);
    draw_bridges(&mut s, plan, &l);
    draw_ports(&mut s, &l, &m);
    let y = draw_legend(&mut s, &l, findings, note.as_deref());
    draw_k8s(&mut s, y, &k8s);
    let _ = writeln!(s, "</svg>");
    s
}

/// Links under everything else: each veth pair once.
fn draw_links(s: &mut String, plan: &Plan, l: &Layout, m: &Marks) {
    let _ = writeln!(s, r#"<g id="links">"#);
    for p in &l.ports {
        if let Some((ph, pi)) = plan.veth_peer(&p.host, &p.ifname) {
            // Draw each pair once, from the end whose host sorts first.
            if (p.host.as_str(), p.ifname.as_str()) > (ph.as_str(), pi.as_str()) {
                continue;
            }
            let Some(q) = l.ports.iter().find(|q| q.host == ph && q.ifname == pi) else {
                continue;
            };
            let (x1, y1) = p.anchor();
            let (x2, y2) = q.anchor();
            let broken = m.broken_link(&p.host, &p.ifname) || m.broken_link(&q.host, &q.ifname);
            let _ = writeln!(
                s,
                r#"<line class="link{}" id="link-{}-{}--{}-{}" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"><title>{}</title></line>"#,
                if broken { " broken" } else { "" },
                ident(&p.host),
                ident(&p.ifname),
                ident(&q.host),
                ident(&q.ifname),
                esc(&format!(
                    "veth {}:{} ⇄ {}:{}",
                    p.host, p.ifname, q.host, q.ifname
                ))
            );
        }
    }
}

/// Overlays: a dashed path between the vxlan ports of the nodes, below them.
fn draw_overlays(s: &mut String, l: &Layout, m: &Marks) {
    let vx: Vec<&Port> = l.ports.iter().filter(|p| !p.note.is_empty()).collect();
    for w in vx.windows(2) {
        let (x1, y1) = w[0].anchor();
        let (x2, y2) = w[1].anchor();
        let dip = y1.max(y2) + 28.0;
        let broken =
            m.broken_link(&w[0].host, &w[0].ifname) || m.broken_link(&w[1].host, &w[1].ifname);
        let _ = writeln!(
            s,
            r#"<path class="overlay{}" id="overlay-{}-{}" d="M {x1:.1} {y1:.1} L {x1:.1} {dip:.1} L {x2:.1} {dip:.1} L {x2:.1} {y2:.1}"><title>{}</title></path>"#,
            if broken { " broken" } else { "" },
            ident(&w[0].host),
            ident(&w[1].host),
            esc(&format!(
                "{} overlay between {} and {}",
                w[0].note, w[0].host, w[1].host
            ))
        );
        let _ = writeln!(
            s,
            r#"<text class="vxnote" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (x1 + x2) / 2.0,
            dip - 5.0,
            esc(&w[0].note)
        );
    }
    let _ = writeln!(s, "</g>");
}

/// Hosts: their boxes, names, lines and badges.
fn draw_hosts(s: &mut String, l: &Layout, m: &Marks) {
    for b in &l.boxes {
        let badges = m.hosts.get(&b.name);
        let _ = writeln!(
            s,
            r#"<g class="host {}{}" id="host-{}">"#,
            b.role,
            if badges.is_some() { " broken" } else { "" },
            ident(&b.name)
        );
        let _ = writeln!(
            s,
            r#"<rect class="box" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="8"/>"#,
            b.x, b.y, b.w, b.h
        );
        // Name and lines where no port, label or bridge is: below the node's bridge, above
        // a pod's port, below an external host's port, left of the switch's bridge.
        let (tx, ty, anchor) = match b.role {
            "node" => (b.cx(), b.y + NODE_BAR_Y + 48.0, "middle"),
            "pod" => (b.cx(), b.y + 26.0, "middle"),
            "external" => (b.cx(), b.y + 48.0, "middle"),
            _ => (b.x + 14.0, b.y + 30.0, "start"),
        };
        let _ = writeln!(
            s,
            r#"<text class="name" x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}">{}</text>"#,
            esc(&b.name)
        );
        for (k, line) in b.lines.iter().filter(|l| !l.is_empty()).enumerate() {
            let (lx, ly, la) = if b.role == "switch" {
                (b.x + 110.0, b.y + 30.0, "start")
            } else {
                (tx, ty + 16.0 * (k as f64 + 1.0), anchor)
            };
            let _ = writeln!(
                s,
                r#"<text class="sub" x="{lx:.1}" y="{ly:.1}" text-anchor="{la}">{}</text>"#,
                esc(line)
            );
        }
        if let Some(ns) = badges {
            for (k, n) in ns.iter().enumerate() {
                let cx = b.x + b.w - 4.0 - k as f64 * 26.0;
                let _ = writeln!(
                    s,
                    r#"<g class="badge" id="badge-{n}"><circle cx="{cx:.1}" cy="{:.1}" r="11"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle">{n}</text></g>"#,
                    b.y + 4.0,
                    b.y + 8.5
                );
            }
        }
        let _ = writeln!(s, "</g>");
    }
}

/// Bridges and their members.
fn draw_bridges(s: &mut String, plan: &Plan, l: &Layout) {
    for Bridge {
        host,
        name,
        x,
        y,
        w,
        addrs,
    } in &l.bridges
    {
        let _ = writeln!(
            s,
            r#"<g class="bridge" id="bridge-{}-{}">"#,
            ident(host),
            ident(name)
        );
        for p in l.ports.iter().filter(|p| &p.host == host) {
            let member = plan
                .host(host)
                .and_then(|h| h.iface(&p.ifname))
                .and_then(|i| i.master.as_deref())
                == Some(name.as_str());
            if member {
                let (from, to) = match p.side {
                    Side::Top => (p.y + PORT_H / 2.0, *y),
                    Side::Bottom => (p.y - PORT_H / 2.0, y + 20.0),
                };
                let _ = writeln!(
                    s,
                    r#"<line class="member" x1="{:.1}" y1="{from:.1}" x2="{:.1}" y2="{to:.1}"/>"#,
                    p.x, p.x
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="20" rx="4"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x + w / 2.0,
            y + 14.5,
            esc(&format!("bridge {name}  {}", addrs.join(" ")))
        );
        let _ = writeln!(s, "</g>");
    }
}

/// Ports.
fn draw_ports(s: &mut String, l: &Layout, m: &Marks) {
    for p in &l.ports {
        let broken = m.broken_port(&p.host, &p.ifname);
        let down = if p.state.is_some() { " down" } else { "" };
        let _ = writeln!(
            s,
            r#"<g class="port{}{down}" id="port-{}-{}">"#,
            if broken { " broken" } else { "" },
            ident(&p.host),
            ident(&p.ifname)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{PORT_H}" rx="3"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            p.x - p.w / 2.0,
            p.y - PORT_H / 2.0,
            p.w,
            p.x,
            p.y + 4.0,
            esc(&match &p.state {
                Some(st) => format!("{} ({st})", p.ifname),
                None => p.ifname.clone(),
            })
        );
        let label = &p.addrs;
        if !label.is_empty() {
            let ty = match p.side {
                Side::Top => p.y + PORT_H / 2.0 + 13.0,
                Side::Bottom => p.y - PORT_H / 2.0 - 5.0,
            };
            let _ = writeln!(
                s,
                r#"<text class="addr" x="{:.1}" y="{ty:.1}" text-anchor="middle">{}</text>"#,
                p.x,
                esc(&label.join(" · "))
            );
        }
        let _ = writeln!(s, "</g>");
    }
}

/// How many of a finding's pairs the legend lists before "+N more".
const LEGEND_PAIRS: usize = 4;

/// Legend: the note (when the diagnosis was taken), then the findings; returns where it ended.
fn draw_legend(s: &mut String, l: &Layout, findings: &[Finding], note: Option<&str>) -> f64 {
    let mut y = l.bottom + 36.0;
    let _ = writeln!(s, r#"<g id="legend">"#);
    if let Some(n) = note {
        let _ = writeln!(
            s,
            r#"<text class="legend" id="diagnosis-note" x="{MARGIN}" y="{y:.0}">{}</text>"#,
            esc(n)
        );
        y += 18.0;
    }
    if findings.is_empty() {
        let _ = writeln!(
            s,
            r#"<text class="legend" x="{MARGIN}" y="{y:.0}">No diagnosis drawn: every link and port in its normal colour.</text>"#
        );
    } else {
        let _ = writeln!(
            s,
            r#"<text class="legend" x="{MARGIN}" y="{y:.0}">Red: what the diagnosis found broken. Numbered badges mark each culprit:</text>"#
        );
        for (i, f) in findings.iter().enumerate() {
            y += 18.0;
            let _ = writeln!(
                s,
                r#"<text class="finding" id="finding-{}" x="{MARGIN}" y="{y:.0}">{}</text>"#,
                i + 1,
                esc(&format!(
                    "{}. {} {} — {}",
                    i + 1,
                    f.host,
                    f.component,
                    f.summary
                ))
            );
            let mut lines: Vec<String> = f.pairs.iter().take(LEGEND_PAIRS).cloned().collect();
            if f.pairs.len() > LEGEND_PAIRS {
                lines.push(format!("+{} more", f.pairs.len() - LEGEND_PAIRS));
            }
            for pair in lines {
                y += 18.0;
                let _ = writeln!(
                    s,
                    r#"<text class="legend" x="{:.0}" y="{y:.0}">{}</text>"#,
                    MARGIN + 20.0,
                    esc(&pair)
                );
            }
        }
    }
    let _ = writeln!(s, "</g>");
    y
}

/// The Kubernetes layer in words: each Service (ClusterIP, port, endpoints, NodePort), the
/// cluster DNS and each NetworkPolicy.
fn k8s_lines(t: &Topology) -> Vec<String> {
    let k = &t.k8s;
    if k.is_empty() {
        return Vec::new();
    }
    let mut out = vec!["Kubernetes:".to_string()];
    for svc in &k.services {
        let eps: Vec<String> = svc
            .endpoints
            .iter()
            .map(|e| format!("{}:{}", e.pod, e.port))
            .collect();
        let eps = if eps.is_empty() {
            "no endpoints".to_string()
        } else {
            eps.join(", ")
        };
        let np = svc
            .node_port
            .map(|p| format!(" · NodePort {p} on every node"))
            .unwrap_or_default();
        let what = if svc.dns { "cluster DNS" } else { "Service" };
        let v6 = svc
            .cluster_ip6
            .map(|a| format!(" and [{a}]:{}", svc.port))
            .unwrap_or_default();
        out.push(format!(
            "{what} {}/{} {}:{}{v6}/{} → {eps}{np}",
            svc.namespace, svc.name, svc.cluster_ip, svc.port, svc.protocol
        ));
    }
    for p in &k.policies {
        out.push(format!(
            "NetworkPolicy {}/{}: {}",
            p.namespace,
            p.name,
            policy_text(p)
        ));
    }
    out
}

/// A policy in a line: the pods it selects and, per direction, what it allows.
fn policy_text(p: &crate::topology::k8s::Policy) -> String {
    let sel = if p.pod_selector.is_empty() {
        "every pod".to_string()
    } else {
        p.pod_selector.describe()
    };
    let dir = |name: &str, rules: &Option<Vec<crate::topology::k8s::PolicyRule>>| match rules {
        None => None,
        Some(r) if r.is_empty() => Some(format!("{name} isolated")),
        Some(r) => Some(format!(
            "{name} {} rule{}",
            r.len(),
            if r.len() == 1 { "" } else { "s" }
        )),
    };
    let dirs: Vec<String> = [dir("ingress", &p.ingress), dir("egress", &p.egress)]
        .into_iter()
        .flatten()
        .collect();
    format!("selects {sel} · {}", dirs.join(" · "))
}

fn draw_k8s(s: &mut String, y: f64, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(s, r#"<g id="kubernetes">"#);
    for (i, l) in lines.iter().enumerate() {
        let class = if i == 0 { "k8s-head" } else { "k8s" };
        let _ = writeln!(
            s,
            r#"<text class="{class}" x="{MARGIN}" y="{:.0}">{}</text>"#,
            y + 26.0 + 18.0 * i as f64,
            esc(l)
        );
    }
    let _ = writeln!(s, "</g>");
}

impl Marks {
    fn broken_port(&self, h: &str, i: &str) -> bool {
        self.ports.iter().any(|(a, b)| a == h && b == i)
    }

    fn broken_link(&self, h: &str, i: &str) -> bool {
        self.links.iter().any(|(a, b)| a == h && b == i)
    }
}

/// The lab as Graphviz DOT: hosts as clusters, interfaces as nodes, veth links as edges.
pub fn dot(t: &Topology, plan: &Plan, findings: &[Finding]) -> String {
    let m = marks(findings, plan);
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut s = String::new();
    let _ = writeln!(s, "graph {} {{", q(&format!("netfault lab {}", t.name)));
    let _ = writeln!(
        s,
        "  compound=true; node [shape=box, fontname=\"Helvetica\"];"
    );
    for hp in &plan.hosts {
        let broken = m.hosts.contains_key(&hp.name);
        let role = t.host(&hp.name).map(|h| h.role_name()).unwrap_or("switch");
        let _ = writeln!(s, "  subgraph {} {{", q(&format!("cluster_{}", hp.name)));
        let _ = writeln!(
            s,
            "    label={}; color={};",
            q(&format!("{} ({role})", hp.name)),
            if broken { "red" } else { "gray40" }
        );
        for i in &hp.ifaces {
            let addrs = addrs_of(plan, &hp.name, &i.name);
            let mut label = i.name.clone();
            for a in addrs {
                label.push_str(&format!("\\n{a}"));
            }
            let red = m.ports.iter().any(|(h, n)| h == &hp.name && n == &i.name);
            let shape = if matches!(i.kind, IfaceKind::Bridge) {
                "box3d"
            } else {
                "box"
            };
            let _ = writeln!(
                s,
                "    {} [label=\"{label}\", shape={shape}{}];",
                q(&format!("{}:{}", hp.name, i.name)),
                if red { ", color=red, penwidth=2" } else { "" }
            );
        }
        let _ = writeln!(s, "  }}");
    }
    for hp in &plan.hosts {
        for i in &hp.ifaces {
            let a = format!("{}:{}", hp.name, i.name);
            if let Some(m_) = &i.master {
                let _ = writeln!(
                    s,
                    "  {} -- {} [style=dotted];",
                    q(&a),
                    q(&format!("{}:{m_}", hp.name))
                );
            }
            if let IfaceKind::Veth {
                peer_host,
                peer_name,
                create: true,
            } = &i.kind
            {
                let b = format!("{peer_host}:{peer_name}");
                let red = m.links.iter().any(|(h, n)| {
                    (h == &hp.name && n == &i.name) || (h == peer_host && n == peer_name)
                });
                let _ = writeln!(
                    s,
                    "  {} -- {}{};",
                    q(&a),
                    q(&b),
                    if red {
                        " [color=red, penwidth=2, style=dashed]"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    for (i, f) in findings.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {} [shape=note, color=red, fontcolor=red, label={}];",
            q(&format!("finding {}", i + 1)),
            q(&format!(
                "{}. {} {}: {}",
                i + 1,
                f.host,
                f.component,
                f.summary
            ))
        );
    }
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{parse_fixture, Source};

    #[test]
    fn escaping_and_ids_are_safe() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(ident("pod-a:eth0"), "pod-a-eth0");
    }

    #[test]
    fn hops_mark_the_interfaces_they_name() {
        let t = parse_fixture(&Source::new(
            "single-node.toml",
            include_str!("../../fixtures/single-node.toml"),
        ))
        .unwrap();
        let plan = Plan::from_topology(&t);
        let f = Finding {
            host: "node1".into(),
            component: "link".into(),
            summary: "x".into(),
            pairs: vec!["pod-a → ext tcp".into()],
            hops: vec![("pod-a".into(), "eth0 ⇄ node1 veth-pod-a (down)".into())],
        };
        let m = marks(&[f], &plan);
        assert_eq!(
            m.ports,
            [
                ("node1".to_string(), "veth-pod-a".to_string()),
                ("pod-a".to_string(), "eth0".to_string())
            ]
        );
        assert_eq!(m.hosts.get("node1"), Some(&vec![1]));
    }
}
