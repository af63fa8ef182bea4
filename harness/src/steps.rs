//! A case in steps: the cluster changed in the running lab the way the API changes it, and the
//! matrix asserted after each change.
//!
//! Each `[[step]]` applies a fixture fragment (`[step.apply.policy.NAME]`, a pod's `labels` or
//! `ip`, a Service's `endpoints`, ...) and deletes objects (`delete = ["policy.NAME"]`); the lab
//! converges to the cluster that results (a pod with a new address is one deleted and
//! re-created), kube-proxy's and the policies' tables are rendered again, and the matrix is
//! probed and judged against what the changed cluster intends: a pair the new policy denies is
//! expected to time out, and only pairs that differ from the changed cluster's truth table are
//! diagnosed. `held` flows are TCP connections opened before the change and tried after it.

use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::diagnose::{self, Culprit, Diagnosis, LabState};
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::matrix::Matrix;
use crate::probe::{FlowResult, ProbeSpec};
use crate::topology::expect::{self, ExpectRule};
use crate::topology::parse::patch::{patch, PatchError};
use crate::topology::parse::{check_expect_conflicts, parse_expect_rules};
use crate::topology::source::{ConfigError, Key, Source};
use crate::topology::{parse_fixture, Outcome, Proto, Topology};

/// A `[[step]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    #[serde(default)]
    description: String,
    /// A fixture fragment merged over the cluster: each field given replaces the one there.
    #[serde(default)]
    apply: toml::Table,
    /// Objects deleted first, as `KIND.NAME` (policies and Services).
    #[serde(default)]
    delete: Vec<String>,
    /// What happens to connection tracking with the change (see [`Conntrack`]).
    #[serde(default)]
    conntrack: Conntrack,
    /// TCP flows opened before the change, with the outcome expected of them after it.
    #[serde(default)]
    held: IndexMap<String, String>,
    /// Outcomes after the change; pairs not named keep what the changed cluster intends.
    #[serde(default)]
    expect: IndexMap<String, String>,
    /// The culprits the diagnosis of this step must name, as "HOST COMPONENT".
    culprits: Option<Vec<String>>,
}

/// Connection tracking across a step's change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Conntrack {
    /// As kube-proxy does: UDP entries whose translation leads to an endpoint address that
    /// went are deleted (a TCP connection's entry stays).
    #[default]
    KubeProxy,
    /// Nothing is deleted: the kube-proxy bug that keeps UDP clients on a gone endpoint.
    Keep,
    /// Every node's table is flushed, as a controller that flushes on every change does:
    /// established flows are judged anew by the rules in force.
    Flush,
}

/// A validated step.
#[derive(Debug, Clone)]
pub struct Step {
    pub description: String,
    /// What the step changes, one line each (for reports).
    pub changes: Vec<String>,
    /// The cluster after the step.
    pub topology: Topology,
    pub conntrack: Conntrack,
    /// Flows opened before the change, each with the outcome expected after it.
    pub held: Vec<(ProbeSpec, Outcome)>,
    pub expect: Vec<ExpectRule>,
    pub culprits: Option<Vec<String>>,
}

impl Step {
    /// The outcome expected after this step: the step's rule, else what the changed cluster
    /// intends.
    pub fn expected(&self, from: &str, to: &str, proto: Proto) -> Option<Outcome> {
        expect::resolve(&self.expect, from, to, proto)
            .map(|r| r.outcome)
            .or_else(|| self.topology.healthy(from, to, proto))
    }
}

/// Validates the steps of a case whose fixture is `fixture` (its text) and whose lab starts as
/// `base`; each step's change applies over the cluster the steps before it left.
pub fn parse_steps(
    src: &Source,
    raw: &[RawStep],
    fixture: &Source,
    base: &Topology,
    errors: &mut Vec<ConfigError>,
) -> Vec<Step> {
    let Ok(mut table) = toml::from_str::<toml::Table>(&fixture.text) else {
        return Vec::new();
    };
    let mut before = base.clone();
    let mut steps = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let at = |k: &'static str| [Key::Field("step"), Key::Index(i), Key::Field(k)];
        let next = match patch(&table, &r.apply, &r.delete) {
            Ok(t) => t,
            Err(e) => {
                errors.push(patch_error(src, i, &e));
                return steps;
            }
        };
        let Some(topology) = changed_cluster(src, i, fixture, &next, base, errors) else {
            return steps;
        };
        let held = held_flows(src, i, &r.held, &before, errors);
        let expect = parse_expect_rules(src, &r.expect, &topology, &at("expect"), errors);
        check_expect_conflicts(src, &expect, &topology, &at("expect"), errors);
        let culprits = crate::verdict::parse_culprits(
            src,
            r.culprits.as_deref().unwrap_or_default(),
            &at("culprits"),
            &topology,
            errors,
        );
        steps.push(Step {
            description: r.description.clone(),
            changes: describe(r),
            topology: topology.clone(),
            conntrack: r.conntrack,
            held,
            expect,
            culprits: r.culprits.as_ref().map(|_| culprits),
        });
        table = next;
        before = topology;
    }
    steps
}

fn patch_error(src: &Source, i: usize, e: &PatchError) -> ConfigError {
    let mut at = vec![Key::Field("step"), Key::Index(i)];
    let under_delete = e.at.first().is_some_and(|k| k == "delete");
    for k in &e.at {
        match k.parse::<usize>() {
            Ok(n) if under_delete => at.push(Key::Index(n)),
            _ => at.push(Key::Field(k)),
        }
    }
    src.error_at_path(
        &at,
        format!("step {}: {}", i + 1, e.message),
        Some(e.help.clone()),
    )
}

/// The cluster `next` describes, validated as a fixture is; the probe settings and the
/// fixture's own expectations are the case's (a step changes neither).
fn changed_cluster(
    src: &Source,
    i: usize,
    fixture: &Source,
    next: &toml::Table,
    base: &Topology,
    errors: &mut Vec<ConfigError>,
) -> Option<Topology> {
    let text = toml::to_string(next).expect("a TOML table serialises");
    match parse_fixture(&Source::new(fixture.path.clone(), text)) {
        Ok(mut t) => {
            t.probe = base.probe.clone();
            t.expect = base.expect.clone();
            t.warnings.clear();
            Some(t)
        }
        Err(es) => {
            for e in es.0 {
                errors.push(src.error_at_path(
                    &[Key::Field("step"), Key::Index(i), Key::Field("apply")],
                    format!(
                        "step {}: the cluster after it is not valid: {}",
                        i + 1,
                        e.message
                    ),
                    e.help,
                ));
            }
            None
        }
    }
}

/// The TCP probes of `before` (the cluster as the flows open) that the `held` rules name.
fn held_flows(
    src: &Source,
    i: usize,
    raw: &IndexMap<String, String>,
    before: &Topology,
    errors: &mut Vec<ConfigError>,
) -> Vec<(ProbeSpec, Outcome)> {
    let at = [Key::Field("step"), Key::Index(i), Key::Field("held")];
    let rules = parse_expect_rules(src, raw, before, &at, errors);
    let flows: Vec<(ProbeSpec, Outcome)> = crate::probe::pairs_of(before)
        .into_iter()
        .filter(|s| s.proto.base() == Proto::Tcp && s.query.is_none())
        .filter_map(|s| {
            let o = expect::resolve(&rules, &s.from, &s.to, s.proto)?.outcome;
            Some((s, o))
        })
        .collect();
    if !raw.is_empty() && flows.is_empty() && errors.is_empty() {
        errors.push(src.error_at_path(
            &at,
            format!("step {}: no TCP probe matches the held flows", i + 1),
            Some("held flows are TCP connections: \"pod-a -> svc/web\" = \"reachable\"".into()),
        ));
    }
    flows
}

/// One line per change: what is deleted, what each applied object's fields become.
fn describe(r: &RawStep) -> Vec<String> {
    let mut out: Vec<String> = r.delete.iter().map(|d| format!("delete {d}")).collect();
    for (kind, objects) in &r.apply {
        for (name, fields) in objects.as_table().into_iter().flatten() {
            out.push(format!("apply {kind}.{name}: {fields}"));
        }
    }
    match r.conntrack {
        Conntrack::KubeProxy => {}
        Conntrack::Keep => out.push("conntrack: nothing deleted".into()),
        Conntrack::Flush => out.push("conntrack: every node's table flushed".into()),
    }
    out
}

/// Puts the lab back to the fixture's cluster after the steps: converged to `fixture`, and every
/// node's connection tracking flushed (the steps' flows and translations go with them).
pub async fn undo(lab: &mut Lab, fixture: Topology) -> Result<()> {
    lab.converge(fixture).await?;
    forget_connections(lab, Conntrack::Flush, &[]).await
}

/// What one step did and saw.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub description: String,
    pub changes: Vec<String>,
    /// What the change did to the lab's state.
    pub state_diff: Vec<String>,
    /// The held flows after the change, each with the outcome expected of it.
    #[serde(skip)]
    pub flows: Vec<(FlowResult, Outcome)>,
    pub matrix: Matrix,
    pub mismatches: Vec<String>,
    pub diagnoses: Vec<Diagnosis>,
    pub culprits: Vec<Culprit>,
}

/// Runs every step in order on a healthy lab whose state is `state`; the lab is left as the
/// last step made it.
pub async fn run(lab: &mut Lab, steps: &[Step], mut state: LabState) -> Result<Vec<StepReport>> {
    let mut out = Vec::new();
    for s in steps {
        let (r, after) = run_one(lab, s, &state).await?;
        out.push(r);
        state = after;
    }
    Ok(out)
}

async fn run_one(lab: &mut Lab, step: &Step, before: &LabState) -> Result<(StepReport, LabState)> {
    let timeout = Duration::from_millis(step.topology.probe.timeout_ms);
    let specs = step.held.iter().map(|(s, _)| s.clone()).collect();
    let flows = crate::probe::hold(lab, specs, timeout).await?;
    let gone = gone_endpoints(lab.topology(), &step.topology);
    lab.converge(step.topology.clone()).await?;
    forget_connections(lab, step.conntrack, &gone).await?;
    let flows = flows.check(timeout).await;
    let state = diagnose::capture(lab).await?;
    let intended = crate::matrix::truth_table(&step.topology).0;
    let known = diagnose::evidence::base_chains(&state);
    let reachable = |f: &str, to: &str, p| intended.observed(f, to, p) == Some(Outcome::Reachable);
    let (mut matrix, recorded) =
        diagnose::evidence::recorded_matrix(lab, reachable, &known).await?;
    let diagnoses = diagnose::explain_changes(lab, &matrix, &intended, recorded).await?;
    matrix.expect_with(|f, to, p| step.expected(f, to, p));
    let mut mismatches = matrix.render_mismatches();
    let flows: Vec<(FlowResult, Outcome)> = flows
        .into_iter()
        .zip(step.held.iter().map(|(_, o)| *o))
        .collect();
    mismatches.extend(flows.iter().filter_map(|(f, want)| flow_mismatch(f, *want)));
    let culprits = diagnose::vocab::distinct_culprits(&diagnoses);
    mismatches.extend(crate::verdict::culprits_mismatch(
        step.culprits.as_ref(),
        &culprits,
    ));
    let report = StepReport {
        description: step.description.clone(),
        changes: step.changes.clone(),
        state_diff: diagnose::diff(before, &state),
        flows,
        matrix,
        mismatches,
        diagnoses,
        culprits,
    };
    Ok((report, state))
}

fn flow_mismatch(f: &FlowResult, want: Outcome) -> Option<String> {
    (f.observation.outcome != want).then(|| {
        format!(
            "held flow {} → {}: expected {want}, observed {}{}",
            f.from,
            f.to,
            f.observation.outcome,
            f.observation
                .detail
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )
    })
}

/// The UDP endpoint addresses of `was` that `next` no longer has (a pod that moved, an
/// endpoint removed): what kube-proxy deletes conntrack entries for.
fn gone_endpoints(was: &Topology, next: &Topology) -> Vec<std::net::IpAddr> {
    let udp = |t: &Topology| -> std::collections::BTreeSet<std::net::IpAddr> {
        t.k8s
            .services
            .iter()
            .filter(|s| s.protocol.base() == Proto::Udp)
            .flat_map(|s| s.endpoints.iter())
            .filter_map(|e| t.host(&e.pod).and_then(|h| h.as_pod()).map(|p| p.ip.into()))
            .collect()
    };
    udp(was).difference(&udp(next)).copied().collect()
}

/// Connection tracking after the change, as the step says, on every node.
async fn forget_connections(lab: &Lab, how: Conntrack, gone: &[std::net::IpAddr]) -> Result<()> {
    let nodes: Vec<String> = lab.topology().nodes().map(|(n, _)| n.to_string()).collect();
    for node in nodes {
        let ns = &lab.host(&node)?.ns;
        let gone = gone.to_vec();
        let r = match how {
            Conntrack::Keep => continue,
            Conntrack::Flush => ns.run_async(crate::conntrack::flush).await,
            Conntrack::KubeProxy if gone.is_empty() => continue,
            Conntrack::KubeProxy => {
                ns.run_async(move || crate::conntrack::delete_udp_to(&gone).map(|_| ()))
                    .await
            }
        };
        r.and_then(|r| r)
            .map_err(|e| Error::io(format!("{node}: conntrack"), e))?;
    }
    Ok(())
}

impl StepReport {
    /// The step for a snapshot: its changes, what they did, the held flows, the matrix, what
    /// was not as expected and the explanations (kernel evidence only with `evidence`).
    pub fn render(&self, n: usize, evidence: bool) -> String {
        let mut s = format!("step {n}: {}\n", self.description);
        let mut section = |title: &str, lines: Vec<String>, none: &str| {
            s.push_str(&format!("  {title}:\n"));
            if lines.is_empty() {
                s.push_str(&format!("    {none}\n"));
            }
            for l in lines {
                s.push_str(&format!("    {l}\n"));
            }
        };
        section("changes", self.changes.clone(), "(none)");
        section("what they changed", self.state_diff.clone(), "(nothing)");
        if !self.flows.is_empty() {
            let flows = self
                .flows
                .iter()
                .map(|(f, want)| flow_line(f, *want))
                .collect();
            section("flows held across the change", flows, "");
        }
        section("matrix after it", lines(&self.matrix.render()), "");
        section("not as expected", self.mismatches.clone(), "(nothing)");
        let explained = self
            .diagnoses
            .iter()
            .flat_map(|d| {
                let mut d = d.clone();
                if !evidence {
                    d.evidence.clear();
                }
                lines(&d.render(true))
            })
            .collect();
        section(
            "explanations",
            explained,
            "(every pair as the changed cluster intends)",
        );
        s
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(String::from).collect()
}

fn flow_line(f: &FlowResult, want: Outcome) -> String {
    let got = f.observation.outcome;
    let opened = if f.opened { "" } else { " (never opened)" };
    // Which endpoint a Service's flow got is the draw's (not a stable fact): named for a
    // host's flow only.
    let host = crate::topology::k8s::Target::parse(&f.to).is_none();
    let by = match (&f.observation.served_by, got) {
        (Some(b), Outcome::Reachable) if host => format!(", still served by {b}"),
        _ => String::new(),
    };
    let verdict = match got == want {
        true => "as expected".to_string(),
        false => format!("expected {want}"),
    };
    format!("{} → {} tcp: {got}{by}{opened} ({verdict})", f.from, f.to)
}
