//! Proof that a lab left nothing behind: watch its namespaces die, from a namespace of our own.
//!
//! A namespace is freed when nothing refers to it any more. A [`Witness`] is a fresh namespace in
//! which every watched namespace gets an id (`ip netns set`); ids do not keep a namespace alive,
//! and the kernel removes one when its namespace is freed. When the witness lists no ids, every
//! watched namespace, and so every interface in it, is gone.

use std::path::Path;
use std::time::Duration;

use crate::error::{nl, Error, Result};
use crate::netns::Netns;
use crate::nl::{self as netlink, NlConn};

pub struct Witness {
    _ns: Netns,
    conn: NlConn,
    watched: usize,
}

impl Witness {
    pub async fn new() -> Result<Witness> {
        let ns = Netns::create().map_err(|e| Error::io("creating the witness namespace", e))?;
        let conn = netlink::connect(&ns)
            .await
            .map_err(|e| Error::io("witness: opening netlink", e))?;
        Ok(Witness {
            _ns: ns,
            conn,
            watched: 0,
        })
    }

    /// Watches a namespace. The caller should drop its own `ns` afterwards.
    pub async fn watch(&mut self, ns: &Netns) -> Result<()> {
        netlink::assign_nsid(&self.conn.handle, ns)
            .await
            .map_err(|e| nl("witness", "assigning a namespace id", e))?;
        self.watched += 1;
        Ok(())
    }

    /// Watches the namespace behind a path (a pin, /proc/PID/ns/net, /proc/PID/fd/N).
    pub async fn watch_path(&mut self, path: &Path) -> Result<()> {
        let ns =
            Netns::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        self.watch(&ns).await
    }

    /// How many watched namespaces still exist.
    pub async fn alive(&self) -> Result<usize> {
        let ids = netlink::list_nsids(&self.conn.handle)
            .await
            .map_err(|e| nl("witness", "listing namespace ids", e))?;
        Ok(ids.len())
    }

    /// Waits until every watched namespace is freed; returns how many remain after `timeout`.
    /// (The kernel frees namespaces asynchronously, in well under a second when idle.)
    pub async fn wait_gone(&self, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.alive().await?;
            if n == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn watched(&self) -> usize {
        self.watched
    }
}

/// Processes (pid, command) whose network namespace is one of `inodes`: children a lab step
/// started (nft, a shell) that outlived it.
pub fn processes_in(inodes: &[u64]) -> Vec<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let p = t.path().join("ns/net");
            if let Ok(m) = std::fs::metadata(&p) {
                if inodes.contains(&m.ino()) {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    out.push((pid, comm.trim().to_string()));
                    break;
                }
            }
        }
    }
    out
}
