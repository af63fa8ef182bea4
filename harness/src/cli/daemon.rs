//! The processes a pinned lab keeps running after `up` returns (its DNS server, its standing
//! echo servers): netfault itself, started again in a session of its own.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Starts `netfault ARGS...` detached (setsid, no terminal); with `report`, its stdout is a
/// pipe the caller reads until the daemon says it is ready.
pub(super) fn spawn_detached(args: &[&str], report: bool) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(if report {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// In a daemon: says it is ready (one line for its parent), then lets go of the pipe.
pub(super) fn report_ready(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    // SAFETY: plain fd calls; stdout becomes /dev/null so later prints cannot fail.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
}

/// A daemon's life after it is ready: it serves until its lab's record is gone, no longer names
/// it (`pid_of` reads its slot; a grace of 5 s covers the spawner recording it), or says the
/// build that started it died.
pub(super) async fn stay_while_named(
    name: &str,
    pid_of: impl Fn(&crate::registry::LabRecord) -> Option<(u32, u64)>,
) {
    use crate::registry::{self, RecordState};
    use std::time::{Duration, Instant};
    let me = std::process::id();
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(rec) = registry::load(name) else {
            return;
        };
        let named = pid_of(&rec).is_some_and(|(pid, _)| pid == me);
        let builder_gone = rec.state == RecordState::Building && !rec.owner_alive();
        if builder_gone || (!named && started.elapsed() > Duration::from_secs(5)) {
            return;
        }
    }
}
