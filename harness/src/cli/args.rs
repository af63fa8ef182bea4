//! The command line's words: every subcommand and its arguments (clap).

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub(super) enum CniCmd {
    /// ADD, break, CHECK, probe, DEL, look for leftovers: per catalog fault and lifecycle check.
    ///
    /// Example: netfault cni audit --conflist fixtures/cni/bridge.conflist
    Audit {
        /// The CNI network configuration list to audit, e.g. fixtures/cni/bridge.conflist.
        #[arg(long)]
        conflist: PathBuf,
        /// How many fresh labs at once, e.g. --jobs 2.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// For CI: exit 1 when CHECK misses a fault or DEL fails or leaks (default: report
        /// only, exit 0).
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum DiagramFormat {
    Svg,
    Dot,
}

#[derive(Subcommand)]
pub(super) enum CaseCmd {
    /// Run a fixture with faults and write cases/NAME.toml with what the lab showed as its
    /// expectations (marked for review), plus its snapshot for `cargo insta review`.
    ///
    /// Example: netfault case new no-masq --fixture fixtures/single-node.toml --fault delete-masquerade:node=node1
    New {
        /// The case's name (its file and snapshot), e.g. no-masq.
        name: String,
        /// The fixture the case breaks, e.g. fixtures/single-node.toml.
        #[arg(long)]
        fixture: PathBuf,
        /// KIND[:KEY=VALUE,...], e.g. delete-masquerade:node=node1 (repeatable, in order).
        #[arg(long = "fault", required = true)]
        faults: Vec<String>,
        /// Where cases live, e.g. --dir cases.
        #[arg(long, default_value = "cases")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub(super) enum DrillCmd {
    /// Bring up a pinned lab, break it (faults chosen by the seed) and print the symptom.
    ///
    /// Example: netfault drill start --level 2 --seed 7
    Start {
        /// The fixture to drill on, e.g. fixtures/two-node-vxlan.toml (default: the built-in
        /// single-node fixture).
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// 1: one obvious fault; 2: one subtle fault; 3: two faults in different places
        /// (e.g. --level 3).
        #[arg(long, default_value_t = 1)]
        level: u8,
        /// The same seed gives the same drill, e.g. --seed 42 (default: a fresh one, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// The lab's name, e.g. --name drill2.
        #[arg(long, default_value = "drill")]
        name: String,
    },
    /// The drill's symptom, level, seed, hints used and time spent.
    ///
    /// Example: netfault drill status drill2
    Status {
        /// The drill's lab, e.g. drill2 (default: drill).
        #[arg(default_value = "drill")]
        lab: String,
    },
    /// Probe the lab: solved when every pair is healthy again, whatever the repair.
    ///
    /// Example: netfault drill check drill2
    Check {
        /// The drill's lab, e.g. drill2 (default: drill).
        #[arg(default_value = "drill")]
        lab: String,
    },
    /// One hint more: area, then host, then component, then a command to look with.
    ///
    /// Example: netfault drill hint drill2
    Hint {
        /// The drill's lab, e.g. drill2 (default: drill).
        #[arg(default_value = "drill")]
        lab: String,
    },
    /// What was broken, and how netfault would repair it.
    ///
    /// Example: netfault drill reveal drill2
    Reveal {
        /// The drill's lab, e.g. drill2 (default: drill).
        #[arg(default_value = "drill")]
        lab: String,
    },
    /// Remove the drill's lab and state.
    ///
    /// Example: netfault drill end drill2
    End {
        /// The drill's lab, e.g. drill2 (default: drill).
        #[arg(default_value = "drill")]
        lab: String,
    },
}

#[derive(Subcommand)]
pub(super) enum Cmd {
    /// Build a lab from a fixture and pin it under /run/netns/<LAB>-<host> until `netfault down`.
    ///
    /// Example: netfault up fixtures/single-node.toml --name lab1
    Up {
        /// The fixture to build, e.g. fixtures/single-node.toml.
        fixture: PathBuf,
        /// The lab's name: 1 to 32 lowercase letters, digits and '-', e.g. lab1.
        #[arg(long)]
        name: String,
        /// Do not keep echo servers on the probe ports (your own servers may take them).
        #[arg(long)]
        no_serve: bool,
    },
    /// Remove a lab `netfault up` built (a lab already gone is a note and exit 0, as cleanup
    /// scripts expect).
    ///
    /// Example: netfault down lab1
    Down {
        /// The lab's name, e.g. lab1.
        name: String,
    },
    /// List labs; with a name, probe that lab and show its matrix against the fixture.
    ///
    /// Example: netfault status lab1
    Status {
        /// The lab to probe, e.g. lab1 (none: list the labs).
        name: Option<String>,
    },
    /// A pinned lab's hosts, their interfaces, state and addresses, read from the kernel.
    ///
    /// Example: netfault inventory lab1
    Inventory {
        /// The lab's name, e.g. lab1.
        lab: String,
    },
    /// Probe a named lab's healthy pairs and explain each broken one (exit 0 healthy, 1 broken).
    ///
    /// Example: netfault diagnose lab1
    Diagnose {
        /// The lab's name, e.g. lab1.
        name: String,
    },
    /// Run breakage cases (case files or directories of them), each on a fresh lab.
    ///
    /// Example: netfault run cases/ --report out/
    Run {
        /// Case files or directories of them, e.g. cases/delete-veth.toml or cases/.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        /// How many cases run at once, e.g. --jobs 2 (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write an HTML report (matrix, diagram, diagnosis, state diff per case) and packet
        /// captures of failing cases into this directory, e.g. --report out/.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Also write the run as JUnit XML into this file (one testcase per case), for CI,
        /// e.g. --junit results.xml.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Break a fixture in seeded rounds of 1..M faults at once, check every diagnosis against
    /// what the faults may be blamed as (wrong), what each breaks alone (missed) and heal;
    /// shrink failing rounds to minimal cases (exit 1 on a wrong culprit or a heal failure).
    ///
    /// Example: netfault explore fixtures/two-node-vxlan.toml --seed 7 --rounds 20 --write-cases found/
    Explore {
        /// A fixture (.toml), or a CNI conflist to explore in the audit's lab, e.g.
        /// fixtures/k8s.toml or fixtures/cni/bridge.conflist.
        target: PathBuf,
        /// The seed: the same seed draws the same rounds, e.g. --seed 7.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many rounds (default 10 without --budget), e.g. --rounds 50.
        #[arg(long, conflicts_with = "budget")]
        rounds: Option<u64>,
        /// Start rounds until this much time has passed, e.g. --budget 10m (s, m, h).
        #[arg(long, value_parser = parse_budget)]
        budget: Option<std::time::Duration>,
        /// The most faults a round injects together, e.g. --max-faults 3.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=8))]
        max_faults: u64,
        /// How many labs at once, e.g. --jobs 2 (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Shrink every failing round and write it as a case file here, e.g. --write-cases found/.
        #[arg(long)]
        write_cases: Option<PathBuf>,
    },
    /// Remove what crashed netfault processes left (half-built pinned labs); --all removes every
    /// lab netfault pinned. Never touches anything that is not netfault's.
    ///
    /// Example: netfault gc --all
    Gc {
        /// Remove every lab netfault pinned, not only abandoned ones.
        #[arg(long)]
        all: bool,
    },
    /// Run real CNI plugins against labs.
    Cni {
        #[command(subcommand)]
        cmd: CniCmd,
    },
    /// List the fault catalog: each kind, what it does, the component it breaks, and an example
    /// as --fault takes it and as a case file's [[fault]] table.
    ///
    /// Example: netfault faults
    Faults,
    /// The main job: bring up the single-node lab, break it three ways, explain, heal, tear down.
    ///
    /// Example: netfault demo
    Demo,
    /// Draw a fixture or a pinned lab (with its latest diagnosis in red) as SVG or DOT.
    ///
    /// Example: netfault diagram lab1 -o lab1.svg
    Diagram {
        /// A fixture file, or the name of a lab `netfault up` built, e.g. lab1.
        target: String,
        /// svg (a picture) or dot (Graphviz source), e.g. --format dot.
        #[arg(long, value_enum, default_value_t = DiagramFormat::Svg)]
        format: DiagramFormat,
        /// Write to this file instead of stdout, e.g. -o lab1.svg.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// The shell script of ip, bridge, sysctl and nft commands that builds a fixture's lab by
    /// hand (what a CNI plugin automates).
    ///
    /// Example: netfault script fixtures/single-node.toml > build.sh
    Script {
        /// The fixture, e.g. fixtures/single-node.toml.
        fixture: PathBuf,
    },
    /// Take namespaces pinned by hand (LAB-HOST under /run/netns, as `netfault script` makes
    /// them) as a lab of the fixture, for status, diagnose, drills and down.
    ///
    /// Example: netfault adopt fixtures/single-node.toml --name lab1
    Adopt {
        /// The fixture the namespaces were built from, e.g. fixtures/single-node.toml.
        fixture: PathBuf,
        /// The lab's name: the prefix of the pins (lab1 for /run/netns/lab1-node1).
        #[arg(long)]
        name: String,
    },
    /// The matrix a fixture expects, decided from the fixture alone (its rules, the defaults,
    /// Services and NetworkPolicies): nothing is built or probed.
    ///
    /// Example: netfault truth-table fixtures/k8s-policy.toml
    TruthTable {
        /// The fixture, e.g. fixtures/k8s-policy.toml.
        fixture: PathBuf,
    },
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
    /// Inject catalog faults into a pinned lab, in order (the syntax of `case new --fault`);
    /// with none, list the faults it holds.
    ///
    /// Example: netfault fault lab1 delete-masquerade:node=node1
    Fault {
        /// The lab's name (as given to `netfault up --name`).
        lab: String,
        /// KIND[:KEY=VALUE,...], e.g. nft-reject:node=node1,from=pod-a,proto=tcp,port=80
        /// (`netfault faults` lists the kinds).
        faults: Vec<String>,
    },
    /// Heal faults `netfault fault` injected, putting back exactly what each changed.
    ///
    /// Example: netfault heal lab1 1   (or: netfault heal lab1 --all)
    Heal {
        /// The lab's name, e.g. lab1.
        lab: String,
        /// Which fault: its number (#1), its KIND[:KEY=VALUE,...], or its kind when only one
        /// fault is of that kind. Optional when the lab holds one fault.
        fault: Option<String>,
        /// Heal every fault the lab holds, newest first.
        #[arg(long, conflicts_with = "fault")]
        all: bool,
    },
    /// Put a pinned lab back to its fixture's state, whatever was done to it (faults or changes
    /// by hand), and list what changed back. Shells and servers inside keep running.
    ///
    /// Example: netfault reset lab1
    Reset {
        /// The lab's name, e.g. lab1.
        lab: String,
    },
    /// Keep echo servers listening on every port a pinned lab's probes use (`up` starts them),
    /// so curl, nc and ping inside the lab get answers; --stop frees the ports for your own.
    ///
    /// Example: netfault serve lab1 --stop
    Serve {
        /// The lab's name, e.g. lab1.
        lab: String,
        /// End the lab's echo servers instead.
        #[arg(long)]
        stop: bool,
    },
    /// The echo servers' daemon (`up` and `serve` start it; `down` ends it).
    #[command(hide = true)]
    EchoServe {
        /// The lab's name.
        name: String,
    },
    /// Serve a pinned lab's cluster DNS until ended (`up` starts it; `down` ends it).
    #[command(hide = true)]
    DnsServe {
        /// The lab's name.
        name: String,
    },
    /// A shell inside a host of a pinned lab (its network namespace, its name as hostname).
    ///
    /// Example: netfault shell lab1 pod-a
    Shell {
        /// The lab's name, e.g. lab1.
        lab: String,
        /// The host, e.g. pod-a.
        host: String,
    },
    /// Run a command inside a host of a pinned lab: netfault exec LAB HOST -- CMD [ARG...].
    /// Exits with the command's code (127: no such command, 126: not executable).
    ///
    /// Example: netfault exec lab1 pod-a -- curl -s 10.244.1.3
    Exec {
        /// The lab's name, e.g. lab1.
        lab: String,
        /// The host, e.g. pod-a.
        host: String,
        /// The command and its arguments, after --, e.g. -- ping -c1 10.244.1.3.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
}

/// A duration as `90s`, `10m`, `2h` (or bare seconds).
fn parse_budget(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .trim()
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s.trim(), "s"), |i| s.trim().split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration: write 90s, 10m or 2h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("\"{s}\": the unit is s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}
