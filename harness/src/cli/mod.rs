//! The `netfault` command line.
//!
//! Exit codes: 0 success (all cases pass), 1 a case failed or errored, 2 bad input or usage,
//! 130 interrupted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::lab::Lab;
use crate::registry;
use crate::topology;

mod drill;
mod run;
pub mod term;

pub use run::{demo_cases, DEMO_CASES, DEMO_FIXTURE};

#[derive(Parser)]
#[command(
    name = "netfault",
    version,
    about = "Break container networking on purpose, in disposable namespace labs, and explain what broke"
)]
struct Cli {
    /// JSON on stdout, for every command that reports.
    #[arg(long, global = true)]
    json: bool,
    /// Print only failures, errors and the final verdict.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// How a command should report: JSON, quiet, or for people.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    pub quiet: bool,
}

impl Out {
    /// Whether to print text for people (not JSON, not quiet).
    pub fn chatty(self) -> bool {
        !self.json && !self.quiet
    }
}

#[derive(Subcommand)]
enum CniCmd {
    /// ADD, break, CHECK, probe, DEL, look for leftovers: per catalog fault and lifecycle check.
    Audit {
        #[arg(long)]
        conflist: PathBuf,
        /// How many fresh labs at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DiagramFormat {
    Svg,
    Dot,
}

#[derive(Subcommand)]
enum CaseCmd {
    /// Run a fixture with faults and write cases/NAME.toml with what the lab showed as its
    /// expectations (marked for review), plus its snapshot for `cargo insta review`.
    New {
        name: String,
        #[arg(long)]
        fixture: PathBuf,
        /// KIND[:KEY=VALUE,...], e.g. delete-masquerade:node=node1 (repeatable, in order).
        #[arg(long = "fault", required = true)]
        faults: Vec<String>,
        /// Where cases live.
        #[arg(long, default_value = "cases")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum DrillCmd {
    /// Bring up a pinned lab, break it (faults chosen by the seed) and print the symptom.
    Start {
        /// The fixture to drill on (default: the built-in single-node fixture).
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// 1: one obvious fault; 2: one subtle fault; 3: two faults in different places.
        #[arg(long, default_value_t = 1)]
        level: u8,
        /// The same seed gives the same drill (default: a fresh one, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// The lab's name.
        #[arg(long, default_value = "drill")]
        name: String,
    },
    /// The drill's symptom, level, seed, hints used and time spent.
    Status {
        #[arg(default_value = "drill")]
        lab: String,
    },
    /// Probe the lab: solved when every pair is healthy again, whatever the repair.
    Check {
        #[arg(default_value = "drill")]
        lab: String,
    },
    /// One hint more: area, then host, then component, then a command to look with.
    Hint {
        #[arg(default_value = "drill")]
        lab: String,
    },
    /// What was broken, and how netfault would repair it.
    Reveal {
        #[arg(default_value = "drill")]
        lab: String,
    },
    /// Remove the drill's lab and state.
    End {
        #[arg(default_value = "drill")]
        lab: String,
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
    Status { name: Option<String> },
    /// Probe a named lab's healthy pairs and explain each broken one (exit 0 healthy, 1 broken).
    Diagnose { name: String },
    /// Run breakage cases (case files or directories of them), each on a fresh lab.
    Run {
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        /// How many cases run at once (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write an HTML report (matrix, diagram, diagnosis, state diff per case) and packet
        /// captures of failing cases into this directory.
        #[arg(long)]
        report: Option<PathBuf>,
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
    Faults,
    /// The main job: bring up the single-node lab, break it three ways, explain, heal, tear down.
    Demo,
    /// Draw a fixture or a pinned lab (with its latest diagnosis in red) as SVG or DOT.
    Diagram {
        /// A fixture file, or the name of a lab `netfault up` built.
        target: String,
        #[arg(long, value_enum, default_value_t = DiagramFormat::Svg)]
        format: DiagramFormat,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// The shell script of ip, bridge, sysctl and nft commands that builds a fixture's lab by
    /// hand (what a CNI plugin automates).
    Script { fixture: PathBuf },
    /// Take namespaces pinned by hand (LAB-HOST under /run/netns, as `netfault script` makes
    /// them) as a lab of the fixture, for status, diagnose, drills and down.
    Adopt {
        fixture: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// The matrix a fixture expects, decided from the fixture alone (its rules, the defaults,
    /// Services and NetworkPolicies): nothing is built or probed.
    TruthTable { fixture: PathBuf },
    /// Write breakage cases.
    Case {
        #[command(subcommand)]
        cmd: CaseCmd,
    },
    /// Drills: netfault breaks a pinned lab, you find and repair the fault.
    Drill {
        #[command(subcommand)]
        cmd: DrillCmd,
    },
    /// Serve a pinned lab's cluster DNS until ended (`up` starts it; `down` ends it).
    #[command(hide = true)]
    DnsServe { name: String },
    /// A shell inside a host of a pinned lab (its network namespace, its name as hostname).
    Shell { lab: String, host: String },
    /// Run a command inside a host of a pinned lab: netfault exec LAB HOST -- CMD [ARG...]
    Exec {
        lab: String,
        host: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
}

/// What a command needs of the machine.
#[derive(PartialEq)]
enum Needs {
    /// Files only (the catalog, scripts, truth tables, drawings, the list of labs).
    Nothing,
    /// Anonymous labs: root, or a user namespace netfault enters itself.
    Labs,
    /// Pinned names under /run/netns: root of the machine.
    Pins(&'static str),
}

fn needs(cmd: &Cmd) -> Needs {
    match cmd {
        Cmd::Faults
        | Cmd::Script { .. }
        | Cmd::TruthTable { .. }
        | Cmd::Diagram { .. }
        | Cmd::Status { name: None } => Needs::Nothing,
        Cmd::Run { .. } | Cmd::Demo | Cmd::Cni { .. } | Cmd::Case { .. } => Needs::Labs,
        Cmd::Up { .. } => Needs::Pins("netfault up"),
        Cmd::Down { .. } => Needs::Pins("netfault down"),
        Cmd::Status { .. } => Needs::Pins("netfault status LAB"),
        Cmd::Diagnose { .. } => Needs::Pins("netfault diagnose"),
        Cmd::Gc { .. } => Needs::Pins("netfault gc"),
        Cmd::Adopt { .. } => Needs::Pins("netfault adopt"),
        Cmd::Drill { .. } => Needs::Pins("netfault drill"),
        Cmd::DnsServe { .. } => Needs::Pins("netfault dns-serve"),
        Cmd::Shell { .. } => Needs::Pins("netfault shell"),
        Cmd::Exec { .. } => Needs::Pins("netfault exec"),
    }
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    // Still one thread: the only time user and mount namespaces can be entered.
    match needs(&cli.cmd) {
        Needs::Nothing => {}
        Needs::Pins(what) => {
            if !crate::privilege::can_pin() {
                eprintln!("netfault: {}", crate::privilege::pins_need_root(what));
                return 1;
            }
        }
        Needs::Labs => {
            let entered = match crate::privilege::become_lab_capable() {
                Ok(entered) => entered,
                Err(msg) => {
                    eprintln!("netfault: {msg}");
                    return 1;
                }
            };
            // Without it, a killed run's CNI state waits for `netfault gc`.
            let _ = crate::privilege::private_state_dir(entered, &crate::paths::cni_state());
        }
    }

    // A shell or command in a lab host runs in the foreground, without the async runtime.
    let entered = match &cli.cmd {
        Cmd::Shell { lab, host } => Some(crate::enter::run(lab, host, &[])),
        Cmd::Exec { lab, host, cmd } => Some(crate::enter::run(lab, host, cmd)),
        _ => None,
    };
    if let Some(r) = entered {
        return r.unwrap_or_else(|e| fail(&e));
    }
    let out = Out {
        json: cli.json,
        quiet: cli.quiet,
    };
    let rt = crate::runtime();
    // `run` handles Ctrl-C itself (it says what ran).
    if matches!(cli.cmd, Cmd::Run { .. }) {
        return rt.block_on(dispatch(cli.cmd, out));
    }
    rt.block_on(async {
        tokio::select! {
            code = dispatch(cli.cmd, out) => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("netfault: interrupted; anonymous labs vanish with this process");
                130
            }
        }
    })
}

async fn dispatch(cmd: Cmd, out: Out) -> i32 {
    let r = match cmd {
        Cmd::Up { fixture, name } => up(&fixture, &name, out).await,
        Cmd::Down { name } => down(&name, out),
        Cmd::Status { name: None } => list(out),
        Cmd::Status { name: Some(n) } => return status(&n, out).await,
        Cmd::Run {
            cases,
            jobs,
            report,
        } => {
            let jobs = jobs.unwrap_or_else(default_jobs);
            return run::run(&cases, out, jobs, report.as_deref()).await;
        }
        Cmd::Diagnose { name } => return diagnose(&name, out).await,
        Cmd::Gc { all } => gc(all, out),
        Cmd::Demo => return run::demo(out).await,
        Cmd::Cni {
            cmd: CniCmd::Audit { conflist, jobs },
        } => return cni_audit(&conflist, out, jobs).await,
        Cmd::Faults => {
            faults(out);
            Ok(())
        }
        Cmd::Drill { cmd } => return drill::dispatch(cmd, out).await,
        Cmd::Diagram {
            target,
            format,
            output,
        } => diagram(&target, format, output.as_deref(), out),
        Cmd::Script { fixture } => script(&fixture),
        Cmd::TruthTable { fixture } => truth_table(&fixture, out),
        Cmd::DnsServe { name } => dns_serve(&name).await,
        Cmd::Adopt { fixture, name } => adopt(&fixture, &name, out),
        Cmd::Case {
            cmd:
                CaseCmd::New {
                    name,
                    fixture,
                    faults,
                    dir,
                },
        } => case_new(&name, &fixture, &faults, &dir, out).await,
        Cmd::Shell { .. } | Cmd::Exec { .. } => unreachable!("handled before the runtime"),
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

/// Prints a value as pretty JSON on stdout.
pub fn emit_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn truth_table(fixture: &Path, out: Out) -> Result<(), Error> {
    let t = topology::load_fixture(fixture)?;
    let (m, why) = crate::matrix::truth_table(&t);
    if out.json {
        emit_json(&serde_json::json!({ "fixture": t.name, "matrix": m, "why": why }));
    } else if !out.quiet {
        println!(
            "{} expects (nothing was run; a blank cell: the fixture does not say)",
            t.name
        );
        print!("{}", m.render());
        if !why.is_empty() {
            println!("not reachable, and why:");
            for l in why {
                println!("  {l}");
            }
        }
    }
    Ok(())
}

async fn up(fixture: &Path, name: &str, out: Out) -> Result<(), Error> {
    let topo = topology::load_fixture(fixture)?;
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
        registry::mark_up(name)?;
        Ok::<_, Error>(dns)
    })();
    let dns = match finished {
        Ok(d) => d,
        Err(e) => {
            let _ = Lab::down_named(name);
            return Err(e);
        }
    };
    let ms = t0.elapsed().as_millis();
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
        }));
    } else if !out.quiet {
        println!(
            "lab {name} is up ({}: {} hosts) in {ms} ms",
            topo.name,
            topo.hosts.len(),
        );
        for h in lab.hosts() {
            println!(
                "  {:<10} netfault shell {name} {}   (or ip netns exec {name}-{} ...)",
                h.name, h.name, h.name
            );
        }
        if let Some(pid) = dns {
            println!("  cluster DNS served by pid {pid} (netfault dns-serve {name})");
        }
        println!("netfault status {name} probes it; netfault down {name} removes it");
    }
    Ok(())
}

/// Starts `netfault dns-serve NAME` in a session of its own and records its PID in the lab's
/// record (so `down` and `gc` end it); waits until it answers on its socket.
pub(crate) fn spawn_dns_server(name: &str) -> Result<u32, Error> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| Error::io("finding netfault's own binary", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["dns-serve", name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("starting the DNS server", e))?;
    let pid = child.id();
    crate::testhook::pause("up:dns-spawned");
    let mut rec = registry::load(name)?;
    rec.dns_pid = Some((pid, registry::process_start(pid).unwrap_or(0)));
    registry::update(&rec)?;
    crate::testhook::pause("up:dns-recorded");
    // Ready when its socket is bound in the DNS pod (or it died saying why to nobody).
    let t = rec.topology.clone();
    let (pod, addr) = crate::lab::k8s::dns_endpoint(&t).expect("dns");
    let pin = registry::pin_path(name, &pod);
    let ns = crate::netns::Netns::open(&pin).map_err(|e| Error::io("opening the DNS pod", e))?;
    for _ in 0..200 {
        if ns.udp_bound(addr.port()).unwrap_or(false) {
            return Ok(pid);
        }
        if registry::process_start(pid).is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(Error::other(format!(
        "the DNS server (pid {pid}) did not come up; run `netfault dns-serve {name}` to see why"
    )))
}

/// The body of `netfault dns-serve`: the lab's DNS server in its DNS pod, until killed, or
/// until its lab no longer names it (removed by hand, or its builder died before recording
/// this daemon: nothing else would end it).
async fn dns_serve(name: &str) -> Result<(), Error> {
    let lab = Lab::attach_building(name).await?;
    lab.start_dns()?;
    let me = std::process::id();
    let started = Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let Ok(rec) = registry::load(name) else {
            return Ok(());
        };
        let named = rec.dns_pid.is_some_and(|(pid, _)| pid == me);
        let builder_gone = rec.state == registry::LabState::Building && !rec.owner_alive();
        if builder_gone || (!named && started.elapsed() > std::time::Duration::from_secs(5)) {
            return Ok(());
        }
    }
}

fn down(name: &str, out: Out) -> Result<(), Error> {
    let removed = Lab::down_named(name)?;
    if out.json {
        emit_json(&serde_json::json!({ "lab": name, "removed": removed }));
    } else if !out.quiet {
        println!("lab {name} removed ({} namespace pins)", removed.len());
    }
    Ok(())
}

fn list(out: Out) -> Result<(), Error> {
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
async fn status(name: &str, out: Out) -> i32 {
    let r = async {
        let lab = Lab::attach(name).await?;
        let m = crate::probe::matrix(&lab).await?;
        Ok::<_, Error>((lab, m))
    }
    .await;
    let (lab, m) = match r {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    let healthy = m.mismatches().is_empty();
    if out.json {
        emit_json(&serde_json::json!({ "lab": name, "healthy": healthy, "matrix": m }));
    } else {
        let mut s = String::new();
        if !out.quiet {
            s.push_str(&format!("lab {name} ({})\n", lab.topology().name));
            s.push_str(&m.render());
            let t = lab.topology();
            for l in m.translations(|h, ip| t.is_own_address(h, ip)) {
                s.push_str(&format!("  {l}\n"));
            }
        }
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
    i32::from(!healthy)
}

async fn diagnose(name: &str, out: Out) -> i32 {
    let r = async {
        let lab = Lab::attach(name).await?;
        crate::diagnose::diagnose_lab(&lab, name).await
    }
    .await;
    let (report, ds) = match r {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    // The latest diagnosis is what `netfault diagram LAB` draws.
    let _ = crate::diagram::save_latest(name, &ds);
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
            s.push_str(&crate::diagnose::walk::render(&ds));
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
    i32::from(!report.healthy)
}

async fn cni_audit(conflist: &Path, out: Out, jobs: usize) -> i32 {
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
            if out.json {
                emit_json(&a);
            } else {
                print!("{}", crate::audit::render(&a));
            }
            0
        }
        Err(e) => fail(&e),
    }
}

fn faults(out: Out) {
    let cat = crate::fault::CATALOG;
    if out.json {
        emit_json(&cat);
        return;
    }
    for k in cat {
        let params: Vec<String> = k.params.iter().map(|(p, _)| format!("{p}=…")).collect();
        println!("{:<24} {:<12} {}", k.name, k.component, k.description);
        if !out.quiet {
            println!(
                "{:<24} {:<12} [[fault]] type = \"{}\" {}",
                "",
                "",
                k.name,
                params.join(" ")
            );
        }
    }
}

fn gc(all: bool, out: Out) -> Result<(), Error> {
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
    if out.json {
        let labs: Vec<&str> = removed.iter().map(|(n, _)| n.as_str()).collect();
        emit_json(&serde_json::json!({
            "removed_labs": labs, "cni_state_dirs": dirs, "errors": errors,
        }));
    } else if !out.quiet {
        for (name, pins) in &removed {
            println!("removed lab {name} ({pins} pins)");
        }
        if dirs > 0 {
            println!("removed {dirs} CNI state directories of processes that are gone");
        }
        if removed.is_empty() && dirs == 0 && errors.is_empty() {
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
fn diagram(
    target: &str,
    format: DiagramFormat,
    output: Option<&Path>,
    out: Out,
) -> Result<(), Error> {
    let (topo, findings) = if Path::new(target).is_file() {
        (topology::load_fixture(Path::new(target))?, Vec::new())
    } else {
        let rec = registry::load(target).map_err(|_| {
            Error::NotFound(format!(
                "\"{target}\" is neither a fixture file nor a lab (netfault status lists the labs)"
            ))
        })?;
        (rec.topology, crate::diagram::load_latest(target))
    };
    let plan = crate::lab::plan::Plan::from_topology(&topo);
    let text = match format {
        DiagramFormat::Svg => crate::diagram::svg(&topo, &plan, &findings),
        DiagramFormat::Dot => crate::diagram::dot(&topo, &plan, &findings),
    };
    match output {
        Some(p) => {
            std::fs::write(p, &text)
                .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
            if out.json {
                emit_json(&serde_json::json!({ "output": p, "findings": findings }));
            } else if !out.quiet {
                println!(
                    "wrote {} ({} hosts, {} findings drawn)",
                    p.display(),
                    topo.hosts.len(),
                    findings.len()
                );
            }
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn script(fixture: &Path) -> Result<(), Error> {
    let topo = topology::load_fixture(fixture)?;
    print!(
        "{}",
        crate::script::script(&topo, &fixture.display().to_string())?
    );
    Ok(())
}

fn adopt(fixture: &Path, name: &str, out: Out) -> Result<(), Error> {
    let topo = topology::load_fixture(fixture)?;
    let rec = registry::adopt(name, std::fs::canonicalize(fixture).ok(), &topo)?;
    // What the script cannot make: pods' resolv.conf files and the cluster DNS server.
    if topo.k8s.dns.is_some() {
        crate::lab::k8s::write_resolv_confs(&topo, &crate::paths::resolv_dir(name))?;
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

async fn case_new(
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

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}
