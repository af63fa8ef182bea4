//! The diagnosis vocabulary every part of `diagnose` speaks: components, hops, culprits, kernel
//! evidence and the diagnosis of one pair, with their renderings. Data only: the walk and the
//! evidence collectors fill it in.

use std::fmt::{self, Write};

use serde::Serialize;

use crate::topology::{Outcome, Proto};

/// What broke, in a small fixed vocabulary (README: "Diagnosis").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Link,
    Bridge,
    Address,
    Route,
    Forwarding,
    Masquerade,
    Filter,
    Mtu,
    Overlay,
    Neighbour,
    RpFilter,
    Service,
    Policy,
    Dns,
    Unexplained,
}

impl Component {
    pub const ALL: [Component; 15] = [
        Component::Link,
        Component::Bridge,
        Component::Address,
        Component::Route,
        Component::Forwarding,
        Component::Masquerade,
        Component::Filter,
        Component::Mtu,
        Component::Overlay,
        Component::Neighbour,
        Component::RpFilter,
        Component::Service,
        Component::Policy,
        Component::Dns,
        Component::Unexplained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Link => "link",
            Component::Bridge => "bridge",
            Component::Address => "address",
            Component::Route => "route",
            Component::Forwarding => "forwarding",
            Component::Masquerade => "masquerade",
            Component::Filter => "filter",
            Component::Mtu => "mtu",
            Component::Overlay => "overlay",
            Component::Neighbour => "neighbour",
            Component::RpFilter => "rp-filter",
            Component::Service => "service",
            Component::Policy => "policy",
            Component::Dns => "dns",
            Component::Unexplained => "unexplained",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HopStatus {
    /// The packet passes this hop.
    Ok,
    /// The packet cannot pass this hop.
    Fail,
    /// Whether it passes hangs on something the walk cannot evaluate.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub status: HopStatus,
    pub host: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Culprit {
    pub host: String,
    pub component: Component,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub from: String,
    pub to: String,
    pub protocols: Vec<Proto>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    pub forward: Vec<Hop>,
    pub reply: Vec<Hop>,
    pub culprit: Culprit,
    /// What the kernel showed of the pair's probes in the round that observed it.
    pub evidence: Vec<Evidence>,
    /// Where the walk and the evidence disagree, or what else was seen.
    pub notes: Vec<String>,
}

impl Diagnosis {
    /// The text for people and snapshots (evidence limited to its stable kinds).
    pub fn render(&self, stable_only: bool) -> String {
        let mut f = String::new();
        let protos: Vec<&str> = self.protocols.iter().map(|p| p.as_str()).collect();
        let size = match (self.size, self.protocols.contains(&Proto::Tcp)) {
            (Some(s), true) => format!(" ({s}-byte transfer)"),
            (Some(s), false) => format!(" ({s}-byte packets)"),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            f,
            "{} → {} {}{size}: {}",
            self.from,
            self.to,
            protos.join(","),
            self.outcome
        );
        let width = self
            .forward
            .iter()
            .chain(&self.reply)
            .map(|h| h.host.chars().count())
            .max()
            .unwrap_or(0);
        for h in self.forward.iter().chain(&self.reply) {
            let pad = " ".repeat(width - h.host.chars().count());
            let mark = match h.status {
                HopStatus::Ok => '✓',
                HopStatus::Fail => '✗',
                HopStatus::Unknown => '?',
            };
            let _ = writeln!(f, "  {mark} {}{pad}  {}", h.host, h.text);
        }
        let _ = write!(
            f,
            "culprit: {} {} — {}",
            self.culprit.host, self.culprit.component, self.culprit.summary
        );
        let shown: Vec<&Evidence> = self
            .evidence
            .iter()
            .filter(|e| !stable_only || e.stable)
            .collect();
        if !shown.is_empty() {
            let _ = write!(f, "\nevidence:");
            for e in shown {
                let _ = write!(f, "\n  {} {}: {}", e.host, e.kind, e.text);
            }
        }
        for n in &self.notes {
            let _ = write!(f, "\nnote: {n}");
        }
        f
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// One fact the kernel recorded about a probe (README: "Evidence").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub host: String,
    /// `counter`, `nft-trace` or `seen-dropped` (the kernel's drop of the probe itself).
    pub kind: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Whether the fact is the same on every run (snapshots keep only those).
    #[serde(skip)]
    pub stable: bool,
}

/// The distinct culprits of a list of diagnoses, in first-seen order.
pub fn distinct_culprits(ds: &[Diagnosis]) -> Vec<Culprit> {
    let mut out: Vec<Culprit> = Vec::new();
    for d in ds {
        if !out.contains(&d.culprit) {
            out.push(d.culprit.clone());
        }
    }
    out
}

/// Renders a list of diagnoses for people.
pub fn render(ds: &[Diagnosis]) -> String {
    let mut s = String::new();
    for d in ds {
        let _ = writeln!(s, "{d}");
    }
    s
}
