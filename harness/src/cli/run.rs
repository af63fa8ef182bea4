//! `netfault run` and `netfault demo`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::out::{emit_json, exit, fail, Out};
use crate::case::{self, Case, CaseReport, Status};
use crate::error::Error;
use crate::lab::Lab;
use crate::topology::Source;

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

/// Runs case files, `jobs` at a time, each on a fresh lab; exit 0 when all pass.
/// Files a run writes beside its output.
pub struct Outputs<'a> {
    /// An HTML report directory.
    pub report: Option<&'a Path>,
    /// A JUnit XML file.
    pub junit: Option<&'a Path>,
}

pub async fn run(paths: &[PathBuf], out: Out, jobs: usize, to: Outputs<'_>) -> i32 {
    let report = to.report;
    // Validate everything before building anything.
    let cases = match load_all(paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let t0 = Instant::now();
    let bar = progress_bar(out, cases.len());
    let opts = case::RunOpts {
        capture: true,
        diagram: report.is_some(),
    };
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let all = futures::future::join_all(cases.iter().map(|c| {
        let (sem, bar, failed, finished) = (sem.clone(), bar.clone(), &failed, &finished);
        async move {
            let _permit = sem.acquire().await.expect("semaphore");
            let mut r = c.run_with(opts).await;
            if report.is_none() {
                // Without a report there is nowhere to put packets.
                r.capture = None;
            }
            let ok = matches!(r.status, Status::Pass | Status::Unsupported);
            if !ok {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if !out.json && (!out.quiet || !ok) {
                let text = super::term::paint(&r.summary());
                bar.suspend(|| {
                    let _ = std::io::Write::write_all(
                        &mut anstream::stdout(),
                        format!("{text}\n").as_bytes(),
                    );
                });
            }
            bar.inc(1);
            finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let f = failed.load(std::sync::atomic::Ordering::Relaxed);
            bar.set_message(if f == 0 {
                "all passing".to_string()
            } else {
                format!("{f} not passing")
            });
            r
        }
    }));
    // Ctrl-C: stop, say what ran (each finished case was printed as it ended), exit 130. The
    // unfinished cases' labs are anonymous: they go with their dropped futures.
    let reports = tokio::select! {
        r = all => r,
        _ = tokio::signal::ctrl_c() => {
            bar.finish_and_clear();
            let n = finished.load(std::sync::atomic::Ordering::Relaxed);
            let f = failed.load(std::sync::atomic::Ordering::Relaxed);
            eprintln!(
                "netfault: interrupted after {n} of {} cases ({} passed, {f} not passing, {} not finished; {:.1} s)",
                cases.len(),
                n - f,
                cases.len() - n,
                t0.elapsed().as_secs_f64()
            );
            return 130;
        }
    };
    bar.finish_and_clear();
    if let Some(file) = to.junit {
        let xml = crate::junit::render(&reports, t0.elapsed().as_secs_f64());
        if let Err(e) = std::fs::write(file, xml) {
            return fail(&Error::io(format!("writing {}", file.display()), e), out);
        }
    }
    let written = match report {
        Some(dir) => match crate::report::write(dir, &reports) {
            Ok(x) => Some(x),
            Err(e) => return fail(&e, out),
        },
        None => None,
    };
    if out.json {
        emit_json(&serde_json::json!({
            "cases": reports,
            "report": written.as_ref().map(|(p, _)| p),
            "pcaps": written.as_ref().map(|(_, p)| p),
        }));
    } else {
        print_totals(&reports, written.as_ref(), t0.elapsed().as_secs_f64(), jobs);
    }
    exit_code(&reports)
}

/// Every case file under `paths`, loaded and validated; the exit code if any is bad or none
/// is found (each error printed).
fn load_all(paths: &[PathBuf]) -> Result<Vec<case::Case>, i32> {
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
        return Err(2);
    }
    if cases.is_empty() {
        eprintln!("netfault: no case files found");
        return Err(2);
    }
    Ok(cases)
}

/// A progress bar on a terminal's stderr only (indicatif hides it otherwise).
fn progress_bar(out: Out, n: usize) -> indicatif::ProgressBar {
    if out.json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(n as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} cases · {elapsed} · {msg}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    }
}

/// The closing line: how many cases passed, failed, erred or were unsupported; the report.
#[allow(clippy::type_complexity)]
fn print_totals(
    reports: &[CaseReport],
    written: Option<&(
        PathBuf,
        std::collections::BTreeMap<String, Vec<crate::packets::PcapFile>>,
    )>,
    secs: f64,
    jobs: usize,
) {
    let count = |s| reports.iter().filter(|r| r.status == s).count();
    let mut t = format!(
        "\n{} cases: {} passed, {} failed, {} errors, {} unsupported ({:.1} s, {} at a time)\n",
        reports.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Error),
        count(Status::Unsupported),
        secs,
        jobs.max(1)
    );
    if let Some((page, pcaps)) = written {
        t.push_str(&format!("report: {}\n", page.display()));
        for (case, files) in pcaps {
            for f in files.iter().filter(|f| !f.last_packets_of.is_empty()) {
                t.push_str(&format!("  {case}: {}\n", f.describe()));
            }
        }
    }
    super::term::print(&t);
}

/// 3 when a case could not be decided (it errored), else 1 when one failed, else 0.
fn exit_code(reports: &[CaseReport]) -> i32 {
    if reports.iter().any(|r| r.status == Status::Error) {
        exit::ERROR
    } else if reports.iter().any(|r| r.status == Status::Fail) {
        exit::UNHEALTHY
    } else {
        exit::OK
    }
}

pub const DEMO_FIXTURE: &str = include_str!("../../../fixtures/single-node.toml");
pub const DEMO_CASES: [(&str, &str); 3] = [
    (
        "delete-veth",
        include_str!("../../../cases/delete-veth.toml"),
    ),
    (
        "disable-ip-forward",
        include_str!("../../../cases/disable-ip-forward.toml"),
    ),
    (
        "delete-masquerade",
        include_str!("../../../cases/delete-masquerade.toml"),
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

pub async fn demo(out: Out) -> i32 {
    let r = if out.chatty() {
        demo_inner().await
    } else {
        demo_reports(out).await
    };
    match r {
        Ok(code) => code,
        Err(e) => fail(&e, out),
    }
}

async fn demo_inner() -> Result<i32, Error> {
    let t_all = Instant::now();
    let cases = demo_cases()?;
    let topo = cases[0].topology.clone();
    println!("netfault demo — {}", topo.description);
    println!("  fixture: fixtures/single-node.toml (built in); every host is its own network namespace\n");
    let t = Instant::now();
    let mut lab = Lab::up(&topo).await?;
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
        c.run_on(&mut lab, &mut r).await;
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
    // Returns as soon as the kernel freed them all; the limit only bounds a real leak.
    let left = witness.wait_gone(Duration::from_secs(30)).await?;
    println!(
        "\nlab torn down: {} of {} namespaces left after {} ms",
        left,
        witness.watched(),
        t.elapsed().as_millis()
    );
    if left > 0 {
        // Name what holds them, where it is one of our own threads.
        for (tid, name, ino) in
            crate::leakcheck::threads_in_released(Duration::ZERO).unwrap_or_default()
        {
            println!("  held by thread {tid} ({name}) in net:[{ino}]");
        }
    }
    println!("demo finished in {:.1} s", t_all.elapsed().as_secs_f64());
    Ok(if left == 0 { code } else { 1 })
}

/// The demo for machines (--json) or in short (--quiet): the same lab and faults, reports only.
async fn demo_reports(out: Out) -> Result<i32, Error> {
    let cases = demo_cases()?;
    let mut lab = Lab::up(&cases[0].topology).await?;
    let healthy = crate::probe::matrix(&lab).await?;
    let mut reports = Vec::new();
    for c in &cases {
        let mut r = c.empty_report();
        let t = Instant::now();
        c.run_on(&mut lab, &mut r).await;
        r.timings.total_ms = t.elapsed().as_millis() as u64;
        reports.push(r);
    }
    drop(lab);
    let code = exit_code(&reports);
    if out.json {
        emit_json(&serde_json::json!({ "healthy": healthy, "cases": reports }));
    } else {
        let lines: Vec<String> = reports.iter().map(|r| r.summary()).collect();
        super::term::println(&lines.join("\n"));
    }
    Ok(code)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
