//! Parsing the command line, entering what the command needs (namespaces, privileges), and
//! handing it to its command.

use clap::Parser;

use super::args::*;
use super::out::*;

use super::commands::*;
use super::dns::dns_serve;
use super::{drill, run};

#[derive(Parser)]
#[command(
    name = "netfault",
    version,
    about = "Break container networking on purpose, in disposable namespace labs, and explain what broke"
)]
pub(super) struct Cli {
    /// JSON on stdout, for every command that reports.
    #[arg(long, global = true)]
    json: bool,
    /// Print only failures, errors and the final verdict.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// What a command needs of the machine.
#[derive(PartialEq)]
pub(super) enum Needs {
    /// Files only (the catalog, scripts, truth tables, drawings, the list of labs).
    Nothing,
    /// Anonymous labs: root, or a user namespace netfault enters itself.
    Labs,
    /// Pinned names under /run/netns: root of the machine.
    Pins(&'static str),
}

pub(super) fn needs(cmd: &Cmd) -> Needs {
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

pub(super) async fn dispatch(cmd: Cmd, out: Out) -> i32 {
    let r = match cmd {
        Cmd::Up { fixture, name } => up(&fixture, &name, out).await,
        Cmd::Down { name } => down(&name, out),
        Cmd::Status { name: None } => list(out),
        Cmd::Status { name: Some(n) } => return status(&n, out).await,
        Cmd::Run {
            cases,
            jobs,
            report,
            junit,
        } => {
            let jobs = jobs.unwrap_or_else(default_jobs);
            let to = run::Outputs {
                report: report.as_deref(),
                junit: junit.as_deref(),
            };
            return run::run(&cases, out, jobs, to).await;
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

/// Every command's help as the Markdown page `docs/cli.md` (generated; a test keeps it current).
pub fn reference_markdown() -> String {
    use clap::CommandFactory;
    let mut root = Cli::command();
    let mut s = String::from(
        "# Command-line reference\n\nGenerated from the code (`netfault::cli::reference_markdown`): \
         each command's `--help`.\n",
    );
    fn walk(cmd: &mut clap::Command, path: &str, s: &mut String) {
        let help = cmd.render_long_help().to_string();
        s.push_str(&format!(
            "\n## `{path}`\n\n```text\n{}\n```\n",
            help.trim_end()
        ));
        let names: Vec<String> = cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
            .map(|c| c.get_name().to_string())
            .collect();
        for n in names {
            if let Some(sub) = cmd.find_subcommand_mut(&n) {
                walk(sub, &format!("{path} {n}"), s);
            }
        }
    }
    root.build();
    walk(&mut root, "netfault", &mut s);
    s
}
