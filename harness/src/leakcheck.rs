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

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A process as (pid, start time): a pid the kernel reuses is not mistaken for it.
pub type Proc = (u32, u64);

/// Whether that process still exists (a zombie counts until reaped).
pub fn alive(p: Proc) -> bool {
    crate::registry::process_start(p.0) == Some(p.1)
}

/// `pid` and every process below it.
pub fn process_tree(pid: u32) -> Vec<Proc> {
    let parents: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.into_iter()
        .filter_map(|p| Some((p, crate::registry::process_start(p)?)))
        .collect()
}

/// Processes whose environment holds `KEY=VALUE` (a marker a test gives the process it starts;
/// children inherit it, daemons too).
pub fn processes_marked(key: &str, value: &str) -> Vec<Proc> {
    let want = format!("{key}={value}");
    pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
        })
        .filter_map(|p| Some((p, crate::registry::process_start(p)?)))
        .collect()
}

/// Every network namespace a process has an fd of, as (/proc/PID/fd/N, inode).
pub fn namespace_fds(pid: u32) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(t) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = t.to_string_lossy().into_owned();
        if let Some(ino) = t
            .strip_prefix("net:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse().ok())
        {
            out.push((e.path(), ino));
        }
    }
    out
}

/// Every network namespace a process holds, other than `except` (an inode): its open fds and its
/// threads' namespaces, as (path under /proc, inode).
pub fn namespaces_held(pid: u32, except: u64) -> Vec<(std::path::PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<(std::path::PathBuf, u64)> = Vec::new();
    let mut add = |p: std::path::PathBuf, ino: u64| {
        if ino != except && !out.iter().any(|(_, i)| *i == ino) {
            out.push((p, ino));
        }
    };
    for (p, ino) in namespace_fds(pid) {
        add(p, ino);
    }
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let p = t.path().join("ns/net");
            if let Ok(m) = std::fs::metadata(&p) {
                add(p, m.ino());
            }
        }
    }
    out
}
