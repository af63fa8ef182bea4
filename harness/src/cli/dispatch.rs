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
    /// How matrices are drawn: auto (the table if it fits the terminal, else grouped by
    /// source), table, or by-source; e.g. --matrix by-source.
    #[arg(long, global = true, value_enum, default_value_t = MatrixView::Auto)]
    matrix: MatrixView,
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
        Cmd::Run { .. } | Cmd::Demo | Cmd::Cni { .. } | Cmd::Case { .. } | Cmd::Explore { .. } => {
            Needs::Labs
        }
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
        Cmd::Fault { .. } => Needs::Pins("netfault fault"),
        Cmd::Heal { .. } => Needs::Pins("netfault heal"),
        Cmd::Reset { .. } => Needs::Pins("netfault reset"),
        Cmd::Serve { .. } => Needs::Pins("netfault serve"),
        Cmd::Inventory { .. } => Needs::Pins("netfault inventory"),
        Cmd::EchoServe { .. } => Needs::Pins("netfault echo-serve"),
    }
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let out = Out {
        json: cli.json,
        quiet: cli.quiet,
        matrix: cli.matrix,
    };
    // Still one thread: the only time user and mount namespaces can be entered.
    match needs(&cli.cmd) {
        Needs::Nothing => {}
        Needs::Pins(what) => {
            if !crate::privilege::can_pin() {
                let msg = crate::privilege::pins_need_root(what);
                return fail_with(&msg, &[], exit::ERROR, out);
            }
        }
        Needs::Labs => {
            let entered = match crate::privilege::become_lab_capable() {
                Ok(entered) => entered,
                Err(msg) => return fail_with(&msg, &[], exit::ERROR, out),
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
        return r.unwrap_or_else(|e| fail(&e, out));
    }
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
                exit::INTERRUPTED
            }
        }
    })
}

/// A command line clap refused: its message (as JSON under `--json`) and exit 2; `--help` and
/// `--version` print as usual and exit 0.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let json = std::env::args().skip(1).any(|a| a == "--json");
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let text = e.to_string();
    let mut lines = text
        .lines()
        .map(|l| l.trim_start_matches("error: ").to_string());
    let message = lines.next().unwrap_or_default();
    let rest: Vec<String> = lines.filter(|l| !l.trim().is_empty()).collect();
    let out = Out {
        json: true,
        quiet: false,
        matrix: MatrixView::Auto,
    };
    fail_with(&message, &rest, exit::BAD_INPUT, out)
}

pub(super) async fn dispatch(cmd: Cmd, out: Out) -> i32 {
    let r = match cmd {
        Cmd::Up {
            fixture,
            name,
            no_serve,
        } => up(&fixture, &name, !no_serve, out).await,
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
        Cmd::Explore {
            target,
            seed,
            rounds,
            budget,
            max_faults,
            jobs,
            write_cases,
        } => {
            let opts = crate::explore::Options {
                seed,
                rounds: rounds.or(budget.is_none().then_some(10)),
                budget,
                max_faults: max_faults as usize,
                jobs: jobs.unwrap_or_else(default_jobs),
                write_cases,
            };
            return super::explore::explore(&target, &opts, out).await;
        }
        Cmd::Diagnose { name } => return diagnose(&name, out).await,
        Cmd::Gc { all } => gc(all, out),
        Cmd::Demo => return run::demo(out).await,
        Cmd::Cni {
            cmd:
                CniCmd::Audit {
                    conflist,
                    jobs,
                    strict,
                },
        } => return cni_audit(&conflist, out, jobs, strict).await,
        Cmd::Faults => {
            faults(out);
            Ok(())
        }
        Cmd::Drill { cmd } => return drill::dispatch(cmd, out).await,
        Cmd::Diagram {
            target,
            format,
            output,
        } => diagram(&target, format, output.as_deref(), out).await,
        Cmd::Script { fixture } => script(&fixture, out),
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
        Cmd::Fault { lab, faults } => super::pinned::fault(&lab, &faults, out).await,
        Cmd::Heal { lab, fault, all } => {
            super::pinned::heal(&lab, fault.as_deref(), all, out).await
        }
        Cmd::Reset { lab } => super::pinned::reset(&lab, out).await,
        Cmd::Inventory { lab } => inventory(&lab, out).await,
        Cmd::Serve { lab, stop } => super::serve::serve(&lab, stop, out),
        Cmd::EchoServe { name } => super::serve::echo_serve(&name).await,
        Cmd::Shell { .. } | Cmd::Exec { .. } => unreachable!("handled before the runtime"),
    };
    match r {
        Ok(()) => exit::OK,
        Err(e) => fail(&e, out),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command a user can type has an example, and every argument and option a help text.
    #[test]
    fn every_command_has_an_example_and_every_argument_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let subs: Vec<&clap::Command> = cmd
                .get_subcommands()
                .filter(|c| !c.is_hide_set() && c.get_name() != "help")
                .collect();
            if subs.is_empty() {
                let about = cmd
                    .get_long_about()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                if !about.contains("Example: netfault") {
                    missing.push(format!("{path}: no example"));
                }
            }
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}: no help"));
                }
            }
            for s in subs {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut root = Cli::command();
        root.build();
        let mut missing = Vec::new();
        walk(&root, "netfault", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
