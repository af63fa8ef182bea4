//! `netfault explore`: the progress of the rounds on a terminal, then the failing rounds, the
//! shrunk cases and the summary table (or all of it as JSON).

use std::path::Path;
use std::time::Duration;

use super::out::{emit_json, exit, fail, Out};
use crate::explore::{Exploration, Options, RoundRecord, Target};

pub(super) async fn explore(target: &Path, opts: &Options, out: Out) -> i32 {
    let target = match Target::open(target) {
        Ok(t) => t,
        Err(e) => return fail(&e, out),
    };
    if let Some(dir) = &opts.write_cases {
        if let Err(e) = std::fs::create_dir_all(dir) {
            let e = crate::error::Error::io(format!("creating {}", dir.display()), e);
            return fail(&e, out);
        }
    }
    let bar = progress_bar(out, opts);
    let shown = bar.clone();
    let progress = move |r: &RoundRecord| {
        shown.inc(1);
        shown.set_message(format!("round {}: {}", r.round, one_line(r)));
    };
    let x = crate::explore::explore(&target, opts, &progress).await;
    bar.finish_and_clear();
    if out.json {
        emit_json(&x);
    } else if !out.quiet {
        print!("{}", render(&x));
    }
    match x.summary.failed() {
        true => exit::UNHEALTHY,
        false => exit::OK,
    }
}

/// A bar on a terminal's stderr only (indicatif hides it elsewhere); no length under a budget.
fn progress_bar(out: Out, opts: &Options) -> indicatif::ProgressBar {
    if out.json || out.quiet {
        return indicatif::ProgressBar::hidden();
    }
    let b = match opts.rounds {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::no_length(),
    };
    let template = "{spinner} [{bar:30}] {pos}/{len} rounds · {elapsed} · {msg}";
    b.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("template")
            .progress_chars("=> "),
    );
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

fn one_line(r: &RoundRecord) -> String {
    let Some(v) = &r.verdict else {
        return r.status.to_string();
    };
    format!(
        "{} wrong, {} missed, {} unexplained{}",
        v.wrong.len(),
        v.missed.len(),
        v.unexplained,
        if v.heal.is_some() {
            ", heal failed"
        } else {
            ""
        }
    )
}

/// The rounds that found something, each shrunk case, and the table.
fn render(x: &Exploration) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "netfault explore {} (seed {}, up to {} faults a round; {} faults of {} kinds offered)\n\n",
        x.fixture, x.seed, x.max_faults, x.faults_offered, x.kinds_offered
    );
    for r in &x.rounds {
        let Some(v) = &r.verdict else { continue };
        if v.wrong.is_empty() && v.missed.is_empty() && v.heal.is_none() {
            continue;
        }
        let _ = writeln!(s, "round {}: {}", r.round, r.faults.join(" + "));
        for w in &v.wrong {
            let _ = writeln!(
                s,
                "  wrong: {} → {} blamed on {} {}: {}",
                w.from, w.to, w.host, w.component, w.summary
            );
        }
        for m in &v.missed {
            let _ = writeln!(s, "  missed: {m}");
        }
        if let Some(h) = &v.heal {
            let _ = writeln!(s, "  heal: {h}");
        }
        if let Some(sh) = &r.shrunk {
            let case = sh.case.as_ref().map(|p| format!(" → {}", p.display()));
            let _ = writeln!(
                s,
                "  shrunk ({}, {} trials): {}{}",
                sh.failure.describe(),
                sh.trials,
                sh.faults.join(" + "),
                case.unwrap_or_default()
            );
        }
    }
    let errors = x.rounds.iter().filter(|r| r.status == "error");
    for r in errors {
        let detail = r.detail.as_deref().unwrap_or("");
        let _ = writeln!(
            s,
            "round {} error: {}: {detail}",
            r.round,
            r.faults.join(" + ")
        );
    }
    s.push('\n');
    s.push_str(&x.summary.table());
    s
}
