//! The command line's words: every subcommand and its arguments (clap).

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub(super) enum CniCmd {
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
pub(super) enum DiagramFormat {
    Svg,
    Dot,
}

#[derive(Subcommand)]
pub(super) enum CaseCmd {
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
pub(super) enum DrillCmd {
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
pub(super) enum Cmd {
    /// Build a lab from a fixture and pin it under /run/netns/<LAB>-<host> until `netfault down`.
    Up {
        fixture: PathBuf,
        /// The lab's name: 1 to 32 lowercase letters, digits and '-'.
        #[arg(long)]
        name: String,
    },
    /// Remove a lab `netfault up` built (a lab already gone is a note and exit 0, as cleanup
    /// scripts expect).
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
        /// Also write the run as JUnit XML into this file (one testcase per case), for CI.
        #[arg(long)]
        junit: Option<PathBuf>,
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
