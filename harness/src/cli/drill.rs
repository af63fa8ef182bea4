//! `netfault drill start|status|check|hint|reveal|end`.

use std::path::Path;

use super::args::DrillCmd;
use super::out::{emit_json, exit, fail, Out};
use super::term;
use crate::drill::{self, DrillState};
use crate::error::Error;
use crate::lab::Lab;
use crate::topology::{self, Source};

pub async fn dispatch(cmd: DrillCmd, out: Out) -> i32 {
    let r = match cmd {
        DrillCmd::Start {
            fixture,
            level,
            seed,
            name,
        } => start(fixture.as_deref(), level, seed, &name, out).await,
        DrillCmd::Status { lab } => status(&lab, out),
        DrillCmd::Check { lab } => return check(&lab, out).await,
        DrillCmd::Hint { lab } => hint(&lab, out).await,
        DrillCmd::Reveal { lab } => reveal(&lab, out),
        DrillCmd::End { lab } => end(&lab, out),
    };
    match r {
        Ok(()) => exit::OK,
        Err(e) => fail(&e, out),
    }
}

fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000
}

async fn start(
    fixture: Option<&Path>,
    level: u8,
    seed: Option<u64>,
    name: &str,
    out: Out,
) -> Result<(), Error> {
    crate::registry::check_lab_name(name)?;
    let (topo, fixture_path) = match fixture {
        Some(f) => (
            super::commands::load_fixture(f)?,
            std::fs::canonicalize(f).ok(),
        ),
        None => (
            topology::parse_fixture(&Source::new(
                "fixtures/single-node.toml",
                super::run::DEMO_FIXTURE,
            ))?,
            None,
        ),
    };
    let seed = seed.unwrap_or_else(fresh_seed);
    let started = drill::start(&topo, fixture_path, name, level, seed).await?;
    if topo.k8s.dns.is_some() {
        // The lab outlives this process, and so must its cluster DNS.
        super::dns::spawn_dns_server(name)?;
    }
    // Servers that stay, so the trainee's curl and nc get answers once the repair is done.
    super::serve::spawn_echo_server(name)?;
    let s = &started.state;
    if out.json {
        emit_json(&serde_json::json!({
            "lab": s.lab, "fixture": topo.name, "level": s.level, "seed": s.seed,
            "symptom": s.symptom, "hosts": started.hosts,
        }));
        return Ok(());
    }
    let mut t = format!(
        "drill on lab {name} ({}, level {level}, seed {seed})\n\nWhat the user reports:\n",
        topo.name
    );
    for l in &s.symptom {
        t.push_str(&format!("  {l}\n"));
    }
    if !out.quiet {
        let first = started
            .hosts
            .iter()
            .find(|h| topo.host(h).is_some_and(|x| x.as_node().is_some()))
            .or(started.hosts.first())
            .cloned()
            .unwrap_or_default();
        t.push_str(&format!(
            "\nGet in:\n  netfault shell {name} {first}      (or: ip netns exec {name}-{first} bash)\n  hosts: {}\n\
             Repair it with ip, nft, sysctl, bridge. Then:\n  netfault drill check {name}    probes everything and says whether it is solved\n  \
             netfault drill hint {name}     one step more each time\n  netfault drill reveal {name}   the answer\n  netfault drill end {name}      removes the lab\n",
            started.hosts.join(", ")
        ));
    }
    term::print(&t);
    Ok(())
}

fn status(lab: &str, out: Out) -> Result<(), Error> {
    let s = drill::load(lab)?;
    let secs = s.seconds();
    let solved = s.solved_unix.is_some();
    if out.json {
        emit_json(&serde_json::json!({
            "lab": s.lab, "level": s.level, "seed": s.seed, "symptom": s.symptom,
            "hints": s.hints, "seconds": secs, "solved": solved,
        }));
        return Ok(());
    }
    let state = match solved {
        true => format!("SOLVED in {} min {} s", secs / 60, secs % 60),
        false => format!("running for {} min {} s", secs / 60, secs % 60),
    };
    let mut t = format!(
        "drill on lab {} — level {}, seed {}, {state}, {} of {} hints used\n",
        s.lab,
        s.level,
        s.seed,
        s.hints,
        drill::HINT_LEVELS
    );
    if !out.quiet {
        t.push_str("What the user reported:\n");
        for l in &s.symptom {
            t.push_str(&format!("  {l}\n"));
        }
    }
    term::print(&t);
    Ok(())
}

fn now() -> u64 {
    crate::clock::now_unix()
}

/// Exit 0 when solved, 1 when not.
async fn check(lab: &str, out: Out) -> i32 {
    let r = async {
        let mut s = drill::load(lab)?;
        let l = Lab::attach(lab).await?;
        let capture = crate::packets::Capture::start(&l).ok();
        let c = drill::check(&l, &s).await?;
        // The clock stops at the first solve (a later check does not move it).
        if c.solved && s.solved_unix.is_none() {
            s.solved_unix = Some(now());
            drill::save(&s)?;
        }
        let mut pcaps = Vec::new();
        if !c.solved {
            if let Some(cap) = capture {
                let dir = crate::paths::drill_pcaps(lab);
                pcaps = cap.stop().write_for(&dir, &c.matrix)?;
            }
        }
        Ok::<_, Error>((s, c, pcaps))
    }
    .await;
    let (s, c, pcaps) = match r {
        Ok(x) => x,
        Err(e) => return fail(&e, out),
    };
    if out.json {
        emit_json(&serde_json::json!({
            "lab": lab, "solved": c.solved, "still_broken": c.still_broken,
            "collateral": c.collateral, "matrix": c.matrix, "pcaps": pcaps,
        }));
        return if c.solved { exit::OK } else { exit::UNHEALTHY };
    }
    let mut t = String::new();
    if c.solved {
        let secs = s.seconds();
        t.push_str(&format!(
            "SOLVED: every pair is healthy again ({} min {} s, {} hints). netfault drill reveal {lab} shows what was broken; netfault drill end {lab} removes the lab.\n",
            secs / 60,
            secs % 60,
            s.hints
        ));
    } else {
        t.push_str("NOT SOLVED\n");
        if !out.quiet {
            t.push_str(&out.matrix_text(&c.matrix));
        }
        if !c.still_broken.is_empty() {
            t.push_str(&format!(
                "still broken ({} of the {} probes the drill broke):\n",
                c.still_broken.len(),
                s.broken_at_start.len()
            ));
            for k in &c.still_broken {
                t.push_str(&format!("  {k}\n"));
            }
        }
        if !c.collateral.is_empty() {
            t.push_str("broken since the drill started (not by the drill: by a repair?):\n");
            for k in &c.collateral {
                t.push_str(&format!("  {k}\n"));
            }
        }
        if !pcaps.is_empty() {
            t.push_str("where the broken pairs' packets were last seen:\n");
            for p in pcaps.iter().filter(|p| !p.last_packets_of.is_empty()) {
                t.push_str(&format!("  {}\n", p.describe()));
            }
            t.push_str(&format!(
                "captures of every interface: {}\n",
                crate::paths::drill_pcaps(lab).display()
            ));
        }
    }
    term::print(&t);
    if c.solved {
        exit::OK
    } else {
        exit::UNHEALTHY
    }
}

async fn hint(lab: &str, out: Out) -> Result<(), Error> {
    let mut s: DrillState = drill::load(lab)?;
    let l = Lab::attach(lab).await?;
    let Some(culprit) = drill::culprit(&l).await? else {
        let msg = format!("nothing is broken any more: netfault drill check {lab}");
        if out.json {
            emit_json(&serde_json::json!({ "lab": lab, "level": s.hints, "hint": [msg] }));
        } else {
            println!("{msg}");
        }
        return Ok(());
    };
    if s.hints < drill::HINT_LEVELS {
        s.hints += 1;
        drill::save(&s)?;
    }
    let lines = drill::hint(lab, s.hints, &culprit);
    if out.json {
        emit_json(&serde_json::json!({ "lab": lab, "level": s.hints, "hint": lines }));
        return Ok(());
    }
    let mut t = format!("hint {} of {}:\n", s.hints, drill::HINT_LEVELS);
    for l in &lines {
        t.push_str(&format!("  {l}\n"));
    }
    if s.hints == drill::HINT_LEVELS && !out.quiet {
        t.push_str(&format!(
            "that was the last hint; netfault drill reveal {lab} gives the answer\n"
        ));
    }
    term::print(&t);
    Ok(())
}

fn reveal(lab: &str, out: Out) -> Result<(), Error> {
    let s = drill::load(lab)?;
    if out.json {
        emit_json(&serde_json::json!({ "lab": lab, "faults": s.faults }));
        return Ok(());
    }
    let mut t = format!(
        "drill on lab {lab} (level {}, seed {}) broke:\n",
        s.level, s.seed
    );
    for f in &s.faults {
        let what = crate::fault::CATALOG
            .iter()
            .find(|k| k.name == f.name())
            .map(|k| k.description)
            .unwrap_or("");
        t.push_str(&format!("  {f}: {what}\n"));
    }
    term::print(&t);
    Ok(())
}

fn end(lab: &str, out: Out) -> Result<(), Error> {
    drill::end(lab)?;
    let _ = std::fs::remove_dir_all(crate::paths::drill_pcaps(lab));
    let _ = std::fs::remove_file(crate::paths::latest_diagnosis(lab));
    if out.json {
        emit_json(&serde_json::json!({ "lab": lab, "ended": true }));
    } else if !out.quiet {
        println!("drill on lab {lab} ended; the lab is removed");
    }
    Ok(())
}
