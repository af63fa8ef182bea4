//! The commands on named labs and files: up, down, status, diagnose, gc, diagram, script,
//! adopt, truth-table, the fault catalog, cni audit and case new.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::Error;
use crate::lab::Lab;
use crate::registry;
use crate::topology;

use super::args::*;
use super::out::*;

use super::dns::spawn_dns_server;
use super::term;

/// A fixture, its warnings said on stderr (host bits in an ipBlock, ...).
pub(super) fn load_fixture(path: &Path) -> Result<topology::Topology, Error> {
    let t = topology::load_fixture(path)?;
    for w in &t.warnings {
        eprintln!("{w}");
    }
    Ok(t)
}

pub(super) fn truth_table(fixture: &Path, out: Out) -> Result<(), Error> {
    let t = load_fixture(fixture)?;
    let (m, why) = crate::matrix::truth_table(&t);
    if out.json {
        emit_json(&serde_json::json!({ "fixture": t.name, "matrix": m, "why": why }));
    } else if !out.quiet {
        println!(
            "{} expects (nothing was run; a blank cell: the fixture does not say)",
            t.name
        );
        print!("{}", out.matrix_text(&m));
        if !why.is_empty() {
            println!("not reachable, and why:");
            for l in why {
                println!("  {l}");
            }
        }
    }
    Ok(())
}

pub(super) async fn up(fixture: &Path, name: &str, serve: bool, out: Out) -> Result<(), Error> {
    let topo = load_fixture(fixture)?;
    let t0 = Instant::now();
    // The record says "building" until the DNS daemon runs too: if this process dies before,
    // `netfault gc` removes the lab (and the daemon ends itself).
    let lab = Lab::up_named_building(&topo, name, std::fs::canonicalize(fixture).ok()).await?;
    let finished = (|| {
        let dns = if topo.k8s.dns.is_some() {
            // The server outlives this process: hand its socket over to a daemon.
            lab.stop_dns();
            Some(spawn_dns_server(name)?)
        } else {
            None
        };
        let echo = match serve {
            true => Some(super::serve::spawn_echo_server(name)?),
            false => None,
        };
        registry::mark_up(name)?;
        Ok::<_, Error>((dns, echo))
    })();
    let (dns, echo) = match finished {
        Ok(d) => d,
        Err(e) => {
            let _ = Lab::down_named(name);
            return Err(e);
        }
    };
    let ms = t0.elapsed().as_millis();
    let inventory = lab.inventory().await?;
    if out.json {
        let hosts: Vec<serde_json::Value> = lab
            .hosts()
            .map(|h| {
                serde_json::json!({
                    "host": h.name,
                    "pin": registry::pin_path(name, &h.name),
                })
            })
            .collect();
        emit_json(&serde_json::json!({
            "lab": name, "fixture": topo.name, "up_ms": ms, "hosts": hosts,
            "inventory": inventory, "dns_pid": dns, "serve_pid": echo.as_ref().map(|(p, _)| p),
        }));
    } else if !out.quiet {
        println!(
            "lab {name} is up ({}: {} hosts) in {ms} ms",
            topo.name,
            topo.hosts.len(),
        );
        print_inventory(name, &inventory);
        println!("  enter a host: netfault shell {name} HOST (or ip netns exec {name}-HOST ...)");
        if let Some(pid) = dns {
            println!("  cluster DNS served by pid {pid} (netfault dns-serve {name})");
        }
        if let Some((pid, taken)) = &echo {
            println!(
                "  echo servers on the probe ports, pid {pid} (netfault serve {name} --stop frees them)"
            );
            for t in taken {
                println!("  {t}: another server holds the port; left to it");
            }
        }
        println!("netfault status {name} probes it; netfault down {name} removes it");
    }
    Ok(())
}

/// Labs up to this many hosts show their inventory in `up` and `status`; bigger ones say how
/// to get it.
const INVENTORY_ROWS: usize = 40;

fn print_inventory(name: &str, rows: &[crate::lab::inventory::HostRow]) {
    if rows.len() <= INVENTORY_ROWS {
        print!("{}", crate::lab::inventory::render(rows));
    } else {
        println!(
            "  {} hosts (netfault inventory {name} lists them)",
            rows.len()
        );
    }
}

/// `netfault inventory LAB`: every host's interfaces, state and addresses.
pub(super) async fn inventory(name: &str, out: Out) -> Result<(), Error> {
    let lab = Lab::attach(name).await?;
    let rows = lab.inventory().await?;
    if out.json {
        emit_json(&serde_json::json!({ "lab": name, "inventory": rows }));
    } else {
        print!("{}", crate::lab::inventory::render(&rows));
    }
    Ok(())
}

pub(super) fn down(name: &str, out: Out) -> Result<(), Error> {
    // Idempotent, as cleanup scripts expect of `ip netns del`: a lab already gone is a note.
    let removed = match Lab::down_named(name) {
        Err(Error::NotFound(_)) => {
            if out.json {
                emit_json(
                    &serde_json::json!({ "lab": name, "removed": [], "note": "no such lab: nothing to remove" }),
                );
            } else if !out.quiet {
                println!("lab {name} is not up: nothing to remove");
            }
            return Ok(());
        }
        r => r?,
    };
    if out.json {
        emit_json(&serde_json::json!({ "lab": name, "removed": removed }));
    } else if !out.quiet {
        println!("lab {name} removed ({} namespace pins)", removed.len());
    }
    Ok(())
}

pub(super) fn list(out: Out) -> Result<(), Error> {
    let labs = registry::list();
    if out.json {
        emit_json(&labs);
        return Ok(());
    }
    if labs.is_empty() && !out.quiet {
        println!("no labs (netfault up FIXTURE --name LAB builds one)");
    }
    for l in labs {
        let state = match (l.state, l.owner_alive()) {
            (registry::RecordState::Up, _) => "up".to_string(),
            (registry::RecordState::Building, true) => format!("building (pid {})", l.pid),
            (registry::RecordState::Building, false) => {
                "abandoned: netfault gc removes it".to_string()
            }
        };
        let missing = l.pins.iter().filter(|(_, p)| !p.exists()).count();
        let damage = if missing > 0 {
            format!(", {missing} pins missing")
        } else {
            String::new()
        };
        let drill = if crate::paths::drill_state(&l.name).exists() {
            ", drill running"
        } else {
            ""
        };
        println!(
            "{:<16} {state}{damage}{drill}  ({}, {} hosts)",
            l.name,
            l.topology.name,
            l.topology.hosts.len()
        );
    }
    Ok(())
}

/// Probes a named lab; exit 0 when every pair is as the fixture expects, 1 when not.
pub(super) async fn status(name: &str, out: Out) -> i32 {
    let r = async {
        let lab = Lab::attach(name).await?;
        let m = crate::probe::matrix(&lab).await?;
        let inventory = lab.inventory().await?;
        Ok::<_, Error>((lab, m, inventory))
    }
    .await;
    let (lab, m, inventory) = match r {
        Ok(x) => x,
        Err(e) => return fail(&e, out),
    };
    let healthy = m.mismatches().is_empty();
    if out.json {
        emit_json(&serde_json::json!({
            "lab": name, "healthy": healthy, "summary": m.summary(), "matrix": m,
            "inventory": inventory,
        }));
    } else {
        let mut s = String::new();
        if !out.quiet {
            s.push_str(&format!("lab {name} ({})\n", lab.topology().name));
            if inventory.len() <= INVENTORY_ROWS {
                s.push_str(&crate::lab::inventory::render(&inventory));
                s.push('\n');
            }
            s.push_str(&out.matrix_text(&m));
            let t = lab.topology();
            for l in m.translations(|h, ip| t.is_own_address(h, ip)) {
                s.push_str(&format!("  {l}\n"));
            }
        }
        for l in m.foreign_servers() {
            s.push_str(&format!("note: {l}\n"));
        }
        s.push_str(&format!("{}\n", m.summary()));
        if healthy {
            s.push_str("healthy: every pair is as the fixture expects\n");
        } else {
            s.push_str("\nnot as the fixture expects:\n");
            for l in m.render_mismatches() {
                s.push_str(&format!("  {l}\n"));
            }
            s.push_str(&format!("netfault diagnose {name} explains why\n"));
        }
        term::print(&s);
    }
    if healthy {
        exit::OK
    } else {
        exit::UNHEALTHY
    }
}

pub(super) async fn diagnose(name: &str, out: Out) -> i32 {
    let r = async {
        let lab = Lab::attach(name).await?;
        let (report, ds) = crate::diagnose::diagnose_lab(&lab, name).await?;
        // The latest diagnosis is what `netfault diagram LAB` draws, while the lab stays so.
        let state = crate::diagnose::capture(&lab).await?;
        let _ = crate::diagram::save_latest(name, &ds, &state);
        Ok::<_, Error>((report, ds))
    }
    .await;
    let (report, ds) = match r {
        Ok(x) => x,
        Err(e) => return fail(&e, out),
    };
    if out.json {
        emit_json(&report);
    } else if report.healthy {
        println!(
            "lab {name} is healthy: all {} expected outcomes hold",
            report.pairs.len()
        );
    } else {
        let broken = report.pairs.iter().filter(|p| p.culprit.is_some()).count();
        let mut s = format!(
            "lab {name}: {broken} of {} expected outcomes do not hold\n\n",
            report.pairs.len()
        );
        if out.quiet {
            for f in crate::diagram::findings(&ds) {
                s.push_str(&format!(
                    "culprit: {} {} — {} ({})\n",
                    f.host,
                    f.component,
                    f.summary,
                    f.pairs.join("; ")
                ));
            }
        } else {
            s.push_str(&crate::diagnose::vocab::render(&ds));
        }
        for p in report.pairs.iter().filter(|p| {
            p.culprit
                .as_ref()
                .is_some_and(|c| c.component == crate::diagnose::Component::Unexplained)
                && p.hops.is_empty()
        }) {
            s.push_str(&format!(
                "{} → {} {}: {}\n",
                p.from,
                p.to,
                p.proto,
                p.culprit.as_ref().map(|c| c.summary.as_str()).unwrap_or("")
            ));
        }
        term::print(&s);
    }
    if report.healthy {
        exit::OK
    } else {
        exit::UNHEALTHY
    }
}

pub(super) async fn cni_audit(conflist: &Path, out: Out, jobs: usize, strict: bool) -> i32 {
    let show = !out.quiet && (!out.json || std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let r = crate::audit::run(conflist, jobs, move |done, total, row| {
        if show {
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
            let failures = if strict {
                a.strict_failures()
            } else {
                Vec::new()
            };
            if out.json {
                let mut v = serde_json::to_value(&a).unwrap_or_default();
                if strict {
                    v["strict_failures"] = serde_json::json!(failures);
                }
                emit_json(&v);
            } else {
                print!("{}", crate::audit::render(&a));
                for f in &failures {
                    println!("strict: {f}");
                }
            }
            match failures.is_empty() {
                true => exit::OK,
                false => exit::UNHEALTHY,
            }
        }
        Err(e) => fail(&e, out),
    }
}

/// The catalog: each kind with what it does, and its example both as `--fault` takes it and as
/// a case file's `[[fault]]` table (both paste as they are).
pub(super) fn faults(out: Out) {
    let cat = crate::fault::CATALOG;
    if out.json {
        emit_json(&cat);
        return;
    }
    for k in cat {
        println!("{:<24} {:<12} {}", k.name, k.component, k.description);
        if out.quiet {
            continue;
        }
        let Ok(f) = crate::fault::Fault::parse_spec(k.example) else {
            continue;
        };
        let params: Vec<String> = k
            .params
            .iter()
            .map(|(p, what)| format!("{p}: {what}"))
            .collect();
        if !params.is_empty() {
            println!("    parameters: {}", params.join("; "));
        }
        println!("    --fault {}", k.example);
        for l in crate::fault::spec::case_toml(&f).lines() {
            println!("    {l}");
        }
        println!();
    }
}

pub(super) fn gc(all: bool, out: Out) -> Result<(), Error> {
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for l in registry::list() {
        if all || l.is_abandoned() {
            match registry::remove(&l) {
                Ok(pins) => {
                    let _ = std::fs::remove_file(crate::paths::drill_state(&l.name));
                    removed.push((l.name.clone(), pins.len()));
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
    let traces = crate::dropwatch::reap_stale();
    if out.json {
        let labs: Vec<&str> = removed.iter().map(|(n, _)| n.as_str()).collect();
        emit_json(&serde_json::json!({
            "removed_labs": labs, "cni_state_dirs": dirs, "trace_instances": traces,
            "errors": errors,
        }));
    } else if !out.quiet {
        for (name, pins) in &removed {
            println!("removed lab {name} ({pins} pins)");
        }
        if dirs > 0 {
            println!("removed {dirs} CNI state directories of processes that are gone");
        }
        if traces > 0 {
            println!("removed {traces} tracefs instances of netfault processes that are gone");
        }
        if removed.is_empty() && dirs == 0 && traces == 0 && errors.is_empty() {
            println!("nothing to collect");
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::other(errors.join("\n")))
    }
}

/// A fixture (a file that exists) or a pinned lab (a name), drawn with the lab's latest
/// diagnosis.
/// Draws a fixture, or a pinned lab as it is now (its live interfaces, forwarding and NAT),
/// with its latest diagnosis when the lab has not changed since it was taken.
pub(super) async fn diagram(
    target: &str,
    format: DiagramFormat,
    output: Option<&Path>,
    out: Out,
) -> Result<(), Error> {
    let (topo, findings, live) = if Path::new(target).is_file() {
        (load_fixture(Path::new(target))?, Vec::new(), None)
    } else {
        if registry::load(target).is_err() {
            return Err(Error::NotFound(format!(
                "\"{target}\" is neither a fixture file nor a lab (netfault status lists the labs)"
            )));
        }
        let lab = Lab::attach(target).await?;
        let state = crate::diagnose::capture(&lab).await?;
        let mut live = crate::diagram::live_of(&state, lab.topology(), lab.plan());
        let saved = crate::diagram::load_latest(target);
        let findings = match saved {
            Some(s) if s.state_digest == crate::diagram::state_digest(&state) => {
                live.note = Some(format!(
                    "Diagnosis taken {} (netfault diagnose {target}); the lab is as it was then.",
                    crate::clock::utc(s.taken_unix)
                ));
                s.findings
            }
            Some(s) => {
                live.note = Some(format!(
                    "The diagnosis taken {} is not drawn: the lab has changed since (netfault diagnose {target} takes a new one).",
                    crate::clock::utc(s.taken_unix)
                ));
                Vec::new()
            }
            None => Vec::new(),
        };
        (lab.topology().clone(), findings, Some(live))
    };
    let plan = crate::lab::plan::Plan::from_topology(&topo);
    let text = match format {
        DiagramFormat::Svg => crate::diagram::svg(&topo, &plan, &findings, live.as_ref()),
        DiagramFormat::Dot => crate::diagram::dot(&topo, &plan, &findings),
    };
    let note = live.as_ref().and_then(|l| l.note.clone());
    match output {
        Some(p) => {
            std::fs::write(p, &text)
                .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
            if out.json {
                emit_json(&serde_json::json!({ "output": p, "findings": findings, "note": note }));
            } else if !out.quiet {
                println!(
                    "wrote {} ({} hosts, {} findings drawn)",
                    p.display(),
                    topo.hosts.len(),
                    findings.len()
                );
                if let Some(n) = note {
                    println!("{n}");
                }
            }
        }
        None if out.json => emit_json(&serde_json::json!({
            "format": format!("{format:?}").to_lowercase(), "text": text, "findings": findings,
            "note": note,
        })),
        None => print!("{text}"),
    }
    Ok(())
}

pub(super) fn script(fixture: &Path, out: Out) -> Result<(), Error> {
    let topo = load_fixture(fixture)?;
    let text = crate::script::script(&topo, &fixture.display().to_string())?;
    if out.json {
        emit_json(&serde_json::json!({ "fixture": topo.name, "script": text }));
    } else {
        print!("{text}");
    }
    Ok(())
}

pub(super) fn adopt(fixture: &Path, name: &str, out: Out) -> Result<(), Error> {
    let topo = load_fixture(fixture)?;
    let rec = registry::adopt(name, std::fs::canonicalize(fixture).ok(), &topo)?;
    // What the script cannot make: pods' resolv.conf files and the cluster DNS server.
    if topo.k8s.dns.is_some() {
        crate::lab::k8s::write_resolv_confs(&topo, name)?;
        spawn_dns_server(name)?;
    }
    if out.json {
        emit_json(&rec);
    } else if !out.quiet {
        println!(
            "lab {name} adopted ({} namespaces): netfault status {name} probes it",
            rec.pins.len()
        );
    }
    Ok(())
}

pub(super) async fn case_new(
    name: &str,
    fixture: &Path,
    faults: &[String],
    dir: &Path,
    out: Out,
) -> Result<(), Error> {
    let faults = faults
        .iter()
        .map(|f| crate::newcase::parse_fault(f))
        .collect::<Result<Vec<_>, String>>()
        .map_err(Error::BadInput)?;
    let n = crate::newcase::create(name, fixture, &faults, dir).await?;
    if out.json {
        emit_json(&serde_json::json!({
            "case": n.path, "snapshot": n.snapshot, "report": n.report,
        }));
        return Ok(());
    }
    let mut t = format!(
        "wrote {}; it passes as written
",
        n.path.display()
    );
    if !out.quiet {
        t.push_str(&std::fs::read_to_string(&n.path).unwrap_or_default());
    }
    match &n.snapshot {
        Some(s) => t.push_str(&format!(
            "snapshot waiting for review: {} (cargo insta review)
",
            s.display()
        )),
        None => t.push_str(&format!(
            "no {}/tests/snapshots here: run the case from its test to record a snapshot
",
            dir.display()
        )),
    }
    term::print(&t);
    Ok(())
}

pub(super) fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}
