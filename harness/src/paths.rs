//! Every place netfault keeps files: one home for the run directory and what lives under it
//! (named labs' records and resolv.conf files, drill state, packet captures, the latest diagnosis,
//! CNI state). Higher layers ask here; none of them builds these paths itself.

use std::path::PathBuf;

/// Where records live; `NETFAULT_RUN_DIR` overrides `/run/netfault` (tests use a temp dir). A
/// rootless run keeps its (CNI) state in a directory of the user's instead.
pub fn run_dir() -> PathBuf {
    match std::env::var_os("NETFAULT_RUN_DIR") {
        Some(d) => PathBuf::from(d),
        None if crate::privilege::in_initial_userns() => PathBuf::from("/run/netfault"),
        None => crate::privilege::rootless_run_dir(),
    }
}

pub fn labs_dir() -> PathBuf {
    run_dir().join("labs")
}

/// Where a named lab keeps its pods' resolv.conf files (`<dir>/<pod>`).
pub fn resolv_dir(lab: &str) -> PathBuf {
    labs_dir().join(format!("{lab}.resolv"))
}

/// `/etc/netns/LAB-HOST`: what `ip netns exec LAB-HOST` bind-mounts over /etc (a pod's
/// resolv.conf). With `NETFAULT_NETNS_DIR` set (pins elsewhere: tests), under the run directory.
pub fn etc_netns(lab: &str, host: &str) -> PathBuf {
    let base = match std::env::var_os("NETFAULT_NETNS_DIR") {
        Some(_) => run_dir().join("etc-netns"),
        None => PathBuf::from("/etc/netns"),
    };
    base.join(format!("{lab}-{host}"))
}

/// The faults `netfault fault` injected into a pinned lab, with their undo logs.
pub fn lab_faults(lab: &str) -> PathBuf {
    labs_dir().join(format!("{lab}.faults.json"))
}

/// A drill's state file.
pub fn drill_state(lab: &str) -> PathBuf {
    run_dir().join("drills").join(format!("{lab}.json"))
}

/// Where `drill check` writes packet captures when the drill is not solved.
pub fn drill_pcaps(lab: &str) -> PathBuf {
    run_dir().join("drills").join(format!("{lab}-pcap"))
}

/// A named lab's latest diagnosis, for `netfault diagram LAB`.
pub fn latest_diagnosis(lab: &str) -> PathBuf {
    run_dir().join("diagnoses").join(format!("{lab}.json"))
}

/// The CNI plugins' state (IPAM reservations, tuning) of this process's labs.
pub fn cni_state() -> PathBuf {
    run_dir().join("cni")
}

/// Writes `bytes` to `path` at once (a temp file renamed over it), creating its directory: a
/// reader never sees half a file.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> crate::error::Result<()> {
    use crate::error::Error;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
