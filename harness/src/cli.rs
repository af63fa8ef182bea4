//! The `netfault` command line.
//!
//! Exit codes: 0 success (all cases pass), 1 a case failed or errored, 2 bad input or usage,
//! 130 interrupted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::case::{self, Case, CaseReport, Status};
use crate::error::Error;
use crate::lab::Lab;
use crate::registry;
use crate::topology::{self, Source};

#[derive(Parser)]
#[command(
    name = "netfault",
    version,
    about = "Break container networking on purpose, in disposable namespace labs, and explain what broke"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum CniCmd {
    /// ADD, break, CHECK, probe, DEL, look for leftovers: per catalog fault and lifecycle check.
    Audit {
        #[arg(long)]
        conflist: PathBuf,
        #[arg(long)]
        json: bool,
        /// How many fresh labs at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a lab from a fixture and pin it under /run/netns/<LAB>-<host> until `netfault down`.
    Up {
        fixture: PathBuf,
        /// The lab's name: 1 to 32 lowercase letters, digits and '-'.
        #[arg(long)]
        name: String,
    },
    /// Remove a lab `netfault up` built.
    Down { name: String },
    /// List labs; with a name, probe that lab and show its matrix against the fixture.
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Probe a named lab's healthy pairs and explain each broken one (exit 0 healthy, 1 broken).
    Diagnose {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run breakage cases (case files or directories of them), each on a fresh lab.
    Run {
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// How many cases run at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Remove what crashed netfault processes left (half-built pinned labs); --all removes every
    /// lab netfault pinned. Never touches anything that is not netfault's.
    Gc {
        #[arg(long)]
        all: bool,
    },
    /// Run real CNI plugins against labs.
    Cni {
        #[command(subcommand)]
        cmd: CniCmd,
    },
    /// List the fault catalog: name, parameters, what it does, the component it breaks.
    Faults {
        #[arg(long)]
        json: bool,
    },
    /// The main job: bring up the single-node lab, break it three ways, explain, heal, tear down.
    Demo,
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    let rt = crate::runtime();
    rt.block_on(async {
        tokio::select! {
            code = dispatch(cli.cmd) => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("netfault: interrupted; anonymous labs vanish with this process");
                130
            }
        }
    })
}

async fn dispatch(cmd: Cmd) -> i32 {
    let r = match cmd {
        Cmd::Up { fixture, name } => up(&fixture, &name).await,
        Cmd::Down { name } => down(&name),
        Cmd::Status { name: None, json } => list(json),
        Cmd::Status {
            name: Some(n),
            json,
        } => status(&n, json).await,
        Cmd::Run { cases, json, jobs } => return run(&cases, json, jobs).await,
        Cmd::Diagnose { name, json } => return diagnose(&name, json).await,
        Cmd::Gc { all } => gc(all),
        Cmd::Demo => return demo().await,
        Cmd::Cni {
            cmd:
                CniCmd::Audit {
                    conflist,
                    json,
                    jobs,
                },
        } => return cni_audit(&conflist, json, jobs).await,
        Cmd::Faults { json } => {
            faults(json);
            Ok(())
        }
    };
    match r {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn fail(e: &Error) -> i32 {
    eprintln!("netfault: {e}");
    if e.is_bad_input() {
        2
    } else {
        1
    }
}

async fn up(fixture: &Path, name: &str) -> Result<(), Error> {
    let topo = topology::load_fixture(fixture)?;
    let t0 = Instant::now();
    let lab = Lab::up_named(&topo, name, std::fs::canonicalize(fixture).ok()).await?;
    println!(
        "lab {name} is up ({}: {} hosts) in {} ms",
        topo.name,
        topo.hosts.len(),
        t0.elapsed().as_millis()
    );
    for h in lab.hosts() {
        println!("  {:<10} ip netns exec {name}-{} ...", h.name, h.name);
    }
    println!("netfault status {name} probes it; netfault down {name} removes it");
    Ok(())
}

fn down(name: &str) -> Result<(), Error> {
    let removed = Lab::down_named(name)?;
    println!("lab {name} removed ({} namespace pins)", removed.len());
    Ok(())
}

fn list(json: bool) -> Result<(), Error> {
    let labs = registry::list();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&labs).unwrap_or_default()
        );
        return Ok(());
    }
    if labs.is_empty() {
        println!("no labs (netfault up FIXTURE --name LAB builds one)");
    }
    for l in labs {
        let state = match (l.state, l.owner_alive()) {
            (registry::LabState::Up, _) => "up".to_string(),
            (registry::LabState::Building, true) => format!("building (pid {})", l.pid),
            (registry::LabState::Building, false) => {
                "abandoned: netfault gc removes it".to_string()
            }
        };
        let missing = l.pins.iter().filter(|(_, p)| !p.exists()).count();
        let damage = if missing > 0 {
            format!(", {missing} pins missing")
        } else {
            String::new()
        };
        println!(
            "{:<16} {state}{damage}  ({}, {} hosts)",
            l.name,
            l.topology.name,
            l.topology.hosts.len()
        );
    }
    Ok(())
}

async fn status(name: &str, json: bool) -> Result<(), Error> {
    let lab = Lab::attach(name).await?;
    let m = crate::probe::matrix(&lab).await?;
    if json {
        let v = serde_json::json!({ "lab": name, "matrix": m });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("lab {name} ({})", lab.topology().name);
    print!("{}", m.render());
    let t = lab.topology();
    for l in m.translations(|h, ip| t.is_own_address(h, ip)) {
        println!("  {l}");
    }
    if m.mismatches().is_empty() {
        println!("healthy: every pair is as the fixture expects");
    } else {
        println!("\nnot as the fixture expects:");
        for l in m.render_mismatches() {
            println!("  {l}");
        }
        println!("netfault diagnose {name} explains why");
    }
    Ok(())
}

async fn diagnose(name: &str, json: bool) -> i32 {
    let r = async {
        let lab = Lab::attach(name).await?;
        crate::diagnose::diagnose_lab(&lab, name).await
    }
    .await;
    let (report, ds) = match r {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if report.healthy {
        println!(
            "lab {name} is healthy: all {} expected outcomes hold",
            report.pairs.len()
        );
    } else {
        let broken = report.pairs.iter().filter(|p| p.culprit.is_some()).count();
        println!(
            "lab {name}: {broken} of {} expected outcomes do not hold\n",
            report.pairs.len()
        );
        print!("{}", crate::diagnose::walk::render(&ds));
        for p in report.pairs.iter().filter(|p| {
            p.culprit
                .as_ref()
                .is_some_and(|c| c.component == crate::diagnose::Component::Unexplained)
                && p.hops.is_empty()
        }) {
            println!(
                "{} → {} {}: {}",
                p.from,
                p.to,
                p.proto,
                p.culprit.as_ref().map(|c| c.summary.as_str()).unwrap_or("")
            );
        }
    }
    if report.healthy {
        0
    } else {
        1
    }
}

async fn cni_audit(conflist: &Path, json: bool, jobs: usize) -> i32 {
    let quiet = json;
    let r = crate::cni::audit::run(conflist, jobs, move |done, total, row| {
        if !quiet || std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let check = match row.check_detects {
                Some(true) => "CHECK detects",
                Some(false) => "CHECK misses",
                None => "",
            };
            eprintln!(
                "[{done}/{total}] {} {check} · leaks {}",
                row.check,
                row.leaks.len()
            );
        }
    })
    .await;
    match r {
        Ok(a) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&a).unwrap_or_default());
            } else {
                print!("{}", crate::cni::audit::render(&a));
            }
            0
        }
        Err(e) => fail(&e),
    }
}

fn faults(json: bool) {
    let cat = crate::fault::CATALOG;
    if json {
        println!("{}", serde_json::to_string_pretty(cat).unwrap_or_default());
        return;
    }
    for k in cat {
        let params: Vec<String> = k.params.iter().map(|(p, _)| format!("{p}=…")).collect();
        println!("{:<24} {:<12} {}", k.name, k.component, k.description);
        println!(
            "{:<24} {:<12} [[fault]] type = \"{}\" {}",
            "",
            "",
            k.name,
            params.join(" ")
        );
    }
}

fn gc(all: bool) -> Result<(), Error> {
    let mut removed = 0;
    let mut errors = Vec::new();
    for l in registry::list() {
        if all || l.is_abandoned() {
            match registry::remove(&l) {
                Ok(pins) => {
                    removed += 1;
                    println!("removed lab {} ({} pins)", l.name, pins.len());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    let keep: Vec<PathBuf> = registry::list()
        .into_iter()
        .filter_map(|l| l.cni_dir)
        .collect();
    let dirs = crate::cni::gc_state_dirs(&keep);
    if dirs > 0 {
        println!("removed {dirs} CNI state directories of processes that are gone");
    }
    if removed == 0 && dirs == 0 && errors.is_empty() {
        println!("nothing to collect");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::other(errors.join("\n")))
    }
}

/// Expands directories into the case files in them (sorted), keeps files as given.
fn case_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    f.extension().is_some_and(|e| e == "toml")
                        && f.file_name().is_some_and(|n| n != "Cargo.toml")
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    out
}

async fn run(paths: &[PathBuf], json: bool, jobs: usize) -> i32 {
    // Validate everything before building anything.
    let mut cases = Vec::new();
    let mut bad = Vec::new();
    for p in case_files(paths) {
        match case::load_case(&p) {
            Ok(c) => cases.push(c),
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        for b in bad {
            eprintln!("{b}");
        }
        eprintln!("netfault: nothing was run");
        return 2;
    }
    if cases.is_empty() {
        eprintln!("netfault: no case files found");
        return 2;
    }
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let reports = futures::future::join_all(cases.iter().map(|c| {
        let sem = sem.clone();
        async move {
            let _permit = sem.acquire().await.expect("semaphore");
            let r = c.run().await;
            if !json {
                println!("{}", r.summary());
            }
            r
        }
    }))
    .await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    } else {
        let count = |s| reports.iter().filter(|r| r.status == s).count();
        println!(
            "\n{} cases: {} passed, {} failed, {} errors, {} unsupported",
            reports.len(),
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Error),
            count(Status::Unsupported)
        );
    }
    exit_code(&reports)
}

fn exit_code(reports: &[CaseReport]) -> i32 {
    if reports
        .iter()
        .all(|r| matches!(r.status, Status::Pass | Status::Unsupported))
    {
        0
    } else {
        1
    }
}

pub const DEMO_FIXTURE: &str = include_str!("../../fixtures/single-node.toml");
pub const DEMO_CASES: [(&str, &str); 3] = [
    ("delete-veth", include_str!("../../cases/delete-veth.toml")),
    (
        "disable-ip-forward",
        include_str!("../../cases/disable-ip-forward.toml"),
    ),
    (
        "delete-masquerade",
        include_str!("../../cases/delete-masquerade.toml"),
    ),
];

/// The demo's cases, parsed from the texts built into the binary.
pub fn demo_cases() -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    for (name, text) in DEMO_CASES {
        let src = Source::new(format!("cases/{name}.toml"), text);
        let c = case::parse_case(&src, |_| {
            Ok(Source::new("fixtures/single-node.toml", DEMO_FIXTURE))
        })?;
        out.push(c);
    }
    Ok(out)
}

async fn demo() -> i32 {
    match demo_inner().await {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

async fn demo_inner() -> Result<i32, Error> {
    let t_all = Instant::now();
    let cases = demo_cases()?;
    let topo = cases[0].topology.clone();
    println!("netfault demo — {}", topo.description);
    println!("  fixture: fixtures/single-node.toml (built in); every host is its own network namespace\n");
    let t = Instant::now();
    let lab = Lab::up(&topo).await?;
    println!(
        "lab up in {} ms: {}",
        t.elapsed().as_millis(),
        topo.host_names().join(", ")
    );
    let t = Instant::now();
    let healthy = crate::probe::matrix(&lab).await?;
    println!(
        "\nhealthy matrix ({} probes in {} ms):",
        healthy.cells.len(),
        t.elapsed().as_millis()
    );
    print!("{}", indent(&healthy.render()));
    for l in healthy.translations(|h, ip| topo.is_own_address(h, ip)) {
        println!("  {l}   ← masquerade at work");
    }
    if !healthy.mismatches().is_empty() {
        println!("the healthy lab is not as the fixture expects:");
        for l in healthy.render_mismatches() {
            println!("  {l}");
        }
        return Ok(1);
    }
    let mut code = 0;
    for (i, c) in cases.iter().enumerate() {
        println!(
            "\n── fault {}/{}: {} ──",
            i + 1,
            cases.len(),
            c.faults
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("{}", c.description);
        let mut r = c.empty_report();
        let t = Instant::now();
        c.run_on(&lab, &mut r).await;
        println!("\nwhat the fault changed:");
        for l in &r.state_diff {
            println!("  {l}");
        }
        if let Some(m) = &r.matrix {
            println!("\nmatrix with the fault:");
            print!("{}", indent(&m.render()));
        }
        println!("\nexplanations:");
        // One explanation per culprit host and component keeps the demo short; `netfault run --json` has them all.
        let mut shown: Vec<(&str, crate::diagnose::Component)> = Vec::new();
        for d in &r.diagnoses {
            let key = (d.culprit.host.as_str(), d.culprit.component);
            if !shown.contains(&key) {
                shown.push(key);
                print!("{}", indent(&format!("{d}\n")));
            }
        }
        let verdict = match r.status {
            Status::Pass => "as the case expects".to_string(),
            other => {
                code = 1;
                format!(
                    "{}: {}",
                    other.as_str(),
                    r.message.clone().unwrap_or_else(|| r.mismatches.join("; "))
                )
            }
        };
        println!("\nhealed; matrix back to healthy and lab state identical to before ({} ms for the round) — {verdict}", t.elapsed().as_millis());
    }
    let t = Instant::now();
    let mut witness = crate::leakcheck::Witness::new().await?;
    for h in lab.hosts() {
        witness.watch(&h.ns).await?;
    }
    drop(lab);
    let left = witness.wait_gone(Duration::from_secs(5)).await?;
    println!(
        "\nlab torn down: {} of {} namespaces left after {} ms",
        left,
        witness.watched(),
        t.elapsed().as_millis()
    );
    println!("demo finished in {:.1} s", t_all.elapsed().as_secs_f64());
    Ok(if left == 0 { code } else { 1 })
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
