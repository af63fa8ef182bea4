//! What netfault may do here: real root, or rootless inside a user namespace.
//!
//! A lab needs CAP_SYS_ADMIN (new network namespaces) and CAP_NET_ADMIN in the user namespace
//! that owns them. Root has both. Without root, `netfault` becomes root of a user namespace of its
//! own (like `unshare -rn`) before any thread starts; everything but pinned names works there.
//! Pins are bind mounts under /run/netns, which need root in the machine's own user namespace.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};

/// The first line of this process's `uid_map` or `gid_map`: (inside, outside, count).
fn first_mapping(map: &str) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/self/{map}")).ok()?;
    let mut w = text
        .lines()
        .next()?
        .split_whitespace()
        .map(|x| x.parse().ok());
    Some((w.next()??, w.next()??, w.next()??))
}

/// The identity map of the machine's own user namespace.
const WHOLE: (u64, u64, u64) = (0, 0, 4294967295);

/// Whether this process is in the machine's initial user namespace (its uid map is whole).
pub fn in_initial_userns() -> bool {
    first_mapping("uid_map").is_none_or(|m| m == WHOLE)
}

/// `net.ipv4.ping_group_range` for every group this process's user namespace maps: all of them
/// as root, the mapped range rootless (usually group 0 alone).
pub fn mapped_groups() -> String {
    match first_mapping("gid_map") {
        Some((inner, _, count)) if count > 0 => {
            let last = (inner + count - 1).min(2147483647);
            format!("{} {last}", inner.min(last))
        }
        _ => "0 2147483647".to_string(),
    }
}

/// Whether named labs (pins under /run/netns) can be made: root in the initial user namespace.
pub fn can_pin() -> bool {
    nix::unistd::geteuid().is_root() && in_initial_userns()
}

/// The user outside the user namespace this process is in (its own uid when there is none).
pub fn outer_uid() -> u32 {
    match first_mapping("uid_map") {
        Some(m @ (0, outer, _)) if m != WHOLE => outer as u32,
        _ => nix::unistd::getuid().as_raw(),
    }
}

/// Where netfault keeps state when it is not root of the machine: a directory of the user's.
pub fn rootless_run_dir() -> PathBuf {
    std::env::temp_dir().join(format!("netfault-{}", outer_uid()))
}

/// Whether the effective capability set has CAP_SYS_ADMIN (21) and CAP_NET_ADMIN (12).
fn has_lab_caps() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    eff & (1 << 21) != 0 && eff & (1 << 12) != 0
}

/// Makes this process able to build labs: nothing to do with the capabilities already; otherwise
/// it becomes root of a new user namespace (and a mount and network namespace of its own: the
/// process's own namespace must be one it may setns back into, see `netns::return_home`). Returns whether it
/// entered one. Must be called before any thread starts (the kernel refuses a threaded caller).
pub fn become_lab_capable() -> Result<bool, String> {
    if has_lab_caps() {
        return Ok(false);
    }
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    if let Err(e) =
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET)
    {
        return Err(no_userns_message(uid, e));
    }
    let maps = [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("0 {uid} 1")),
        ("/proc/self/gid_map", format!("0 {gid} 1")),
    ];
    for (path, text) in maps {
        std::fs::write(path, text).map_err(|e| {
            format!("entering a user namespace: writing {path}: {e}; run netfault as root instead")
        })?;
    }
    Ok(true)
}

fn no_userns_message(uid: u32, e: Errno) -> String {
    let why = match e {
        Errno::EPERM => "unprivileged user namespaces are switched off here \
             (kernel.unprivileged_userns_clone=0, kernel.apparmor_restrict_unprivileged_userns=1, \
             or a seccomp policy such as a container's)"
            .to_string(),
        Errno::ENOSPC => format!(
            "the user namespace limit is reached (user.max_user_namespaces = {})",
            std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into())
        ),
        Errno::EINVAL => "this kernel or process cannot create one (built without \
             CONFIG_USER_NS, or the process is threaded or chrooted)"
            .to_string(),
        other => other.desc().to_string(),
    };
    format!(
        "netfault needs root, or a user namespace to run without it: you are uid {uid}, and \
         creating a user namespace failed: {why}. Run it as root (sudo netfault ...), or allow \
         unprivileged user namespaces (sysctl -w kernel.unprivileged_userns_clone=1 and \
         user.max_user_namespaces > 0)"
    )
}

/// The message for a command that needs pinned names when this process cannot pin.
pub fn pins_need_root(what: &str) -> String {
    let who = if nix::unistd::geteuid().is_root() {
        "this process is root only of a user namespace".to_string()
    } else {
        format!("you are uid {}", nix::unistd::geteuid())
    };
    format!(
        "{what} pins namespaces under /run/netns, which needs root of the machine ({who}); \
         without it, `netfault run CASES`, `netfault demo` and `netfault cni audit` work: their \
         labs live in a user namespace of their own"
    )
}

/// In a fresh mount namespace: mounts made here never propagate back to the host (those of the
/// host still arrive). A syscall only: safe between fork and exec.
pub fn mounts_stay_here() -> nix::Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
}

/// Gives this process a mount namespace of its own (mounts still propagate in from the host, none
/// out) with a fresh tmpfs over `dir` (the CNI state directory): the CNI plugins' state of its anonymous labs then
/// lives in memory that vanishes with the process and its children, even after SIGKILL.
/// Must be called before any thread starts; `unshared` says the namespace exists already.
pub fn private_state_dir(unshared: bool, dir: &std::path::Path) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(dir)?;
    if !unshared {
        unshare(CloneFlags::CLONE_NEWNS)?;
    }
    mounts_stay_here()?;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700"),
    )?;
    Ok(())
}

/// For tests that need named labs: whether to skip this one (a rootless run). A skip is said on
/// stderr and appended to the file `NETFAULT_SKIP_LOG` names, where `ci/run` counts them.
pub fn skip_without_pins(test: &str) -> bool {
    if can_pin() {
        return false;
    }
    eprintln!("skipped {test}: it needs root of the machine (pinned names, or switching users)");
    if let Some(log) = std::env::var_os("NETFAULT_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            // One write, so that tests skipping at once do not interleave.
            let _ = f.write_all(format!("{test}\n").as_bytes());
        }
    }
    true
}
