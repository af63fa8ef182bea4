//! State plugins leave: IPAM reservations, per-lab state directories and their collection.

use super::runtime::Runtime;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

impl Runtime {
    /// IPAM reservations host-local holds for a network: (address, container id).
    pub fn ipam_reservations(&self, network: &str) -> Vec<(String, String)> {
        let dir = self.data_dir.join("ipam").join(network);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut v: Vec<(String, String)> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.parse::<Ipv4Addr>().ok()?;
                let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
                Some((name, owner.lines().next().unwrap_or("").trim().to_string()))
            })
            .collect();
        v.sort();
        v
    }
}

/// A per-lab state directory for IPAM and tuning, under the run directory (so `gc` can find
/// one a killed process left): `<run>/cni/<pid>.<n>`.
pub fn state_dir() -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = crate::paths::run_dir().join("cni").join(format!(
        "{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removes state directories of processes that are gone, except those in `keep` (a named
/// lab's, which outlives the `netfault up` that made it); returns how many.
pub fn gc_state_dirs(keep: &[PathBuf]) -> usize {
    let root = crate::paths::run_dir().join("cni");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !keep.contains(&e.path())
            && !Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}
