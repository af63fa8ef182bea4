//! `netfault serve LAB`: echo servers that stay on every port the lab's probes use (started by
//! `up`), so real clients inside the lab get answers; `--stop` ends them.

use std::io::BufRead;

use crate::error::Error;
use crate::lab::Lab;
use crate::registry;

use super::out::*;

/// Starts the standing servers' daemon and records it; returns its PID and the ports a server
/// that is not netfault's already held.
pub(super) fn spawn_echo_server(name: &str) -> Result<(u32, Vec<String>), Error> {
    let mut child = super::daemon::spawn_detached(&["echo-serve", name], true)
        .map_err(|e| Error::io("starting the echo servers", e))?;
    let pid = child.id();
    let mut rec = registry::load(name)?;
    rec.serve_pid = Some((pid, registry::process_start(pid).unwrap_or(0)));
    registry::update(&rec)?;
    // Its first line: "ready" and the ports left to other servers, or nothing if it died.
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let Some(rest) = line.trim_end().strip_prefix("ready") else {
        return Err(Error::other(format!(
            "the echo servers (pid {pid}) did not come up; run `netfault echo-serve {name}` to see why"
        )));
    };
    let taken = rest
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok((pid, taken))
}

/// The body of `netfault echo-serve`: serves until killed or until its lab no longer names it.
pub(super) async fn echo_serve(name: &str) -> Result<(), Error> {
    let lab = Lab::attach_building(name).await?;
    let (_servers, taken) = crate::probe::standing::serve(&lab).await?;
    super::daemon::report_ready(&format!("ready {}", taken.join("; ")));
    super::daemon::stay_while_named(name, |rec| rec.serve_pid).await;
    Ok(())
}

/// `netfault serve LAB [--stop]`.
pub(super) fn serve(name: &str, stop: bool, out: Out) -> Result<(), Error> {
    let mut rec = registry::load(name)?;
    let running = rec
        .serve_pid
        .filter(|(pid, start)| registry::process_start(*pid) == Some(*start));
    let (pid, taken, note) = match (stop, running) {
        (true, Some((pid, start))) => {
            registry::end_process(pid, start);
            rec.serve_pid = None;
            registry::update(&rec)?;
            (
                None,
                Vec::new(),
                format!("echo servers of lab {name} stopped (pid {pid})"),
            )
        }
        (true, None) => (
            None,
            Vec::new(),
            format!("lab {name} has no echo servers running"),
        ),
        (false, Some((pid, _))) => (
            Some(pid),
            Vec::new(),
            format!("lab {name}'s echo servers already run (pid {pid})"),
        ),
        (false, None) => {
            let (pid, taken) = spawn_echo_server(name)?;
            (
                Some(pid),
                taken,
                format!("lab {name}'s echo servers run (pid {pid})"),
            )
        }
    };
    if out.json {
        emit_json(&serde_json::json!({ "lab": name, "serve_pid": pid, "left_to_others": taken }));
    } else if out.chatty() {
        println!("{note}");
        for t in taken {
            println!("  {t}: another server holds the port; left to it");
        }
    }
    Ok(())
}
