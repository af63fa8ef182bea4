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
