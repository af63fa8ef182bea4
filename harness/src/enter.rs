//! `netfault shell LAB HOST` and `netfault exec LAB HOST -- CMD...`: a command inside a pinned
//! lab host, the way `ip netns exec` runs one, plus the host's name as hostname.
//!
//! The child joins the host's network namespace (its pin under /run/netns), gets a UTS namespace
//! of its own with the host's name (so prompts say `root@pod-a`), and a mount namespace in which
//! /sys is remounted to show the host's interfaces (as `ip netns exec` does). Nothing of this
//! touches the caller: all of it happens in the forked child before exec.
//!
//! A pod's command also gets a PID namespace of its own, as a pod has: it is PID 1 there, `ps`
//! shows only what runs in it (/proc is mounted afresh), and whatever it leaves running ends
//! with it. A node's command sees the machine's processes, as a node's shell would.

use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};
use crate::registry;

/// Runs `argv` (a login-less shell when empty) inside `host` of the pinned lab `lab`; returns
/// its exit code (128 + signal when a signal ended it).
pub fn run(lab: &str, host: &str, argv: &[String]) -> Result<i32> {
    let rec = registry::load(lab)?;
    if rec.topology.host(host).is_none() {
        let names: Vec<&str> = rec.topology.hosts.iter().map(|h| h.name.as_str()).collect();
        let near = crate::topology::did_you_mean(host, names.iter().copied())
            .map(|n| format!("did you mean \"{n}\"? "))
            .unwrap_or_default();
        return Err(Error::NotFound(format!(
            "lab {lab} has no host \"{host}\" ({near}hosts: {})",
            names.join(", ")
        )));
    }
    let pin = registry::pin_path(lab, host);
    let ns = std::fs::File::open(&pin).map_err(|e| {
        Error::io(
            format!(
                "opening {} (is lab {lab} up? netfault status)",
                pin.display()
            ),
            e,
        )
    })?;
    let (prog, args): (String, Vec<String>) = match argv.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => (
            std::env::var("SHELL")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".into()),
            Vec::new(),
        ),
    };
    let mut cmd = Command::new(&prog);
    cmd.args(&args)
        .env("NETFAULT_LAB", lab)
        .env("NETFAULT_HOST", host);
    let hostname = host.to_string();
    let fd = ns.as_raw_fd();
    // A pod of a fixture with cluster DNS gets its own resolv.conf, as the kubelet mounts it.
    let resolv = crate::paths::resolv_dir(lab).join(host);
    let resolv = resolv.exists().then_some(resolv);
    let own_pids = rec
        .topology
        .host(host)
        .is_some_and(|h| h.as_pod().is_some());
    if own_pids {
        // Only children are moved (the caller stays where it is): the command is PID 1.
        unshare(CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::io("creating the pod's PID namespace", e.into()))?;
    }
    // SAFETY: the closure runs in the forked child before exec and makes only syscalls.
    unsafe {
        cmd.pre_exec(move || {
            let ns = std::os::fd::BorrowedFd::borrow_raw(fd);
            setns(ns, CloneFlags::CLONE_NEWNET)?;
            unshare(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS)?;
            nix::unistd::sethostname(&hostname)?;
            // Our mounts must not propagate back to the host; then /sys for this namespace.
            crate::privilege::mounts_stay_here()?;
            if let Some(r) = &resolv {
                mount(
                    Some(r.as_path()),
                    "/etc/resolv.conf",
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )?;
            }
            if own_pids {
                // The pod ends with this process: killed, it must not leave a PID 1 behind.
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                mount(
                    Some("proc"),
                    "/proc",
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    None::<&str>,
                )?;
            }
            if umount2("/sys", MntFlags::MNT_DETACH).is_ok() {
                let _ = mount(
                    Some("sysfs"),
                    "/sys",
                    Some("sysfs"),
                    MsFlags::empty(),
                    None::<&str>,
                );
            }
            Ok(())
        });
    }
    // The child takes Ctrl-C (an interactive shell ignores it); we wait for it either way.
    ignore_interrupts();
    // As a shell says it: 127 when there is no such command, 126 when it is not executable.
    // (Decided before the fork: an error of the set-up above must not read as either.)
    match executable(&prog) {
        None => {
            eprintln!("netfault: {prog}: command not found");
            return Ok(127);
        }
        Some(false) => {
            eprintln!("netfault: {prog}: permission denied");
            return Ok(126);
        }
        Some(true) => {}
    }
    let status = cmd
        .status()
        .map_err(|e| Error::io(format!("running {prog} in {lab}-{host}"), e))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Whether `prog` (a path, or a name looked up in PATH as execvp does) is an executable file:
/// None when there is no such file.
fn executable(prog: &str) -> Option<bool> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        let m = std::fs::metadata(p).ok()?;
        Some(m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        return is_exec(std::path::Path::new(prog));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    let found: Vec<bool> = std::env::split_paths(&path)
        .filter_map(|d| is_exec(&d.join(prog)))
        .collect();
    match found.is_empty() {
        true => None,
        false => Some(found.contains(&true)),
    }
}

/// SIGINT and SIGQUIT get a handler that does nothing: this process keeps waiting, and the
/// child (handlers are reset at exec) gets the default behaviour.
fn ignore_interrupts() {
    extern "C" fn nothing(_: libc::c_int) {}
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(nothing),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGQUIT] {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        let _ = unsafe { sigaction(s, &act) };
    }
}
