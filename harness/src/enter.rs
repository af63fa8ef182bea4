//! `netfault shell LAB HOST` and `netfault exec LAB HOST -- CMD...`: a command inside a pinned
//! lab host, the way `ip netns exec` runs one, plus the host's name as hostname.
//!
//! The child joins the host's network namespace (its pin under /run/netns), gets a UTS namespace
//! of its own with the host's name (so prompts say `root@pod-a`), and a mount namespace in which
//! /sys is remounted to show the host's interfaces (as `ip netns exec` does). Nothing of this
//! touches the caller: all of it happens in the forked child before exec.

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
        return Err(Error::NotFound(format!(
            "lab {lab} has no host \"{host}\" (hosts: {})",
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
    let status = cmd
        .status()
        .map_err(|e| Error::io(format!("running {prog} in {lab}-{host}"), e))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
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
