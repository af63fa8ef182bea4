//! Proof that a lab left nothing behind: watch its namespaces die, from a namespace of our own.
//!
//! A namespace is freed when nothing refers to it any more. A [`Witness`] is a fresh namespace in
//! which every watched namespace gets an id (`ip netns set`); ids do not keep a namespace alive,
//! and the kernel removes one when its namespace is freed. When the witness lists no ids, every
//! watched namespace, and so every interface in it, is gone.

use std::path::Path;
use std::time::Duration;

use crate::error::{nl_error, Error, Result};
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
            .map_err(|e| nl_error("witness", "assigning a namespace id", e))?;
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
            .map_err(|e| nl_error("witness", "listing namespace ids", e))?;
        Ok(ids.len())
    }

    /// Waits until every watched namespace is freed; returns how many remain after `timeout`.
    /// (The kernel frees namespaces asynchronously, in well under a second when idle.)
    pub async fn wait_gone(&self, timeout: Duration) -> Result<usize> {
        self.wait_down_to(0, timeout).await
    }

    /// Waits until at most `n` watched namespaces remain; returns how many remain then (or when
    /// `timeout` runs out).
    pub async fn wait_down_to(&self, n: usize, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let alive = self.alive().await?;
            if alive <= n || tokio::time::Instant::now() >= deadline {
                return Ok(alive);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn watched(&self) -> usize {
        self.watched
    }
}

/// Processes (pid, command) whose network namespace is one of `inodes`: children a lab step
/// started (nft, a shell) that outlived it. Fails closed: a /proc entry it cannot read is an
/// error, not "nothing there". Passed over: a process or thread that ends while it looks, a
/// zombie, and a process it may not inspect that started before this one or runs as another
/// user (which none of ours can be: the rootless CLI tests met another user's process).
pub fn processes_in(inodes: &[u64]) -> std::io::Result<Vec<(u32, String)>> {
    let me = crate::registry::process_start(std::process::id());
    let mut out = Vec::new();
    for pid in pids_checked()? {
        let Some(tasks) = gone_is_none(std::fs::read_dir(format!("/proc/{pid}/task")))? else {
            continue;
        };
        for t in tasks {
            let t = t?;
            let ino = match gone_is_none(ns_inode(&t.path())) {
                Ok(Some(ino)) => ino,
                Ok(None) => continue,
                // Denied: a zombie (it holds nothing), or a process outside our user namespaces
                // (rootless: our processes, and whatever they leave behind, live in ours, where
                // we may inspect them; the kernel denies only others, such as the root shell
                // that started this test in the same clock tick).
                Err(e)
                    if e.kind() == std::io::ErrorKind::PermissionDenied
                        && (older_than(pid, me) || is_zombie(pid) || outside_our_userns()) =>
                {
                    break
                }
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e} ({})", t.path().join("ns/net").display(), who(pid)),
                    ))
                }
            };
            if inodes.contains(&ino) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                out.push((pid, comm.trim().to_string()));
                break;
            }
        }
    }
    Ok(out)
}

/// A thread of this process: (tid, its name, the namespace it is in).
pub type Thread = (u32, String, u64);

/// This process's threads that sit in one of `inodes`. Fails closed, as [`processes_in`].
pub fn threads_in(inodes: &[u64]) -> std::io::Result<Vec<Thread>> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task")? {
        let t = t?;
        let Some(ino) = thread_ns(&t.path())? else {
            continue;
        };
        if inodes.contains(&ino) {
            let tid = t.file_name().to_string_lossy().parse().unwrap_or(0);
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            out.push((tid, comm.trim().to_string(), ino));
        }
    }
    Ok(out)
}

/// Threads of this process still inside a namespace whose last fd it closed: each keeps that
/// namespace (and its interfaces) alive. Short-lived namespace threads may still be finishing
/// when their lab drops, so it waits up to `patience` for them to end before it answers.
pub fn threads_in_released(patience: Duration) -> std::io::Result<Vec<Thread>> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let left = threads_in(&crate::netns::released())?;
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(left);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The namespace a thread of this process is in; None if it ended while we looked. A thread
/// that is exiting can refuse the read for a moment (EACCES seen here) before it is gone: an
/// error counts only if it lasts while the thread stays.
fn thread_ns(task: &Path) -> std::io::Result<Option<u64>> {
    let mut tries = 0;
    loop {
        match gone_is_none(ns_inode(task)) {
            Err(_) if tries < 50 && task.exists() => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) if !task.exists() => return Ok(None),
            Err(e) => {
                let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
                let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
                let state = stat
                    .rsplit_once(") ")
                    .and_then(|(_, r)| r.get(..1))
                    .unwrap_or("?");
                return Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "{} (thread {}, state {state}): {e}",
                        task.join("ns/net").display(),
                        comm.trim()
                    ),
                ));
            }
            r => return r,
        }
    }
}

/// Whether `pid` started before the process whose start time is `me`.
/// Whether a process has exited and waits to be reaped. A zombie holds nothing (the kernel
/// closes its files and drops its namespaces before it becomes one), yet /proc denies its ns and
/// fd entries to anyone but root: a helper of a killed run, reparented and not yet reaped, is
/// one (the rootless CLI tests met it).
pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.get(s.rfind(')')? + 2..)?.starts_with('Z')))
        .unwrap_or(false)
}

/// A process in a few words, for an error: its name, state, real uid and parent.
fn who(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    format!(
        "{} state {} uid {} parent {}",
        field("Name:"),
        field("State:"),
        field("Uid:"),
        field("PPid:")
    )
}

/// Whether a process we may not inspect is outside the user namespaces we created: we run in a
/// user namespace of our own (rootless), where every process of ours is inspectable by us.
/// As root in the first user namespace nothing is denied us but zombies, so this says no there
/// (and any other denial stays an error).
fn outside_our_userns() -> bool {
    // The first user namespace maps every uid to itself: "0 0 4294967295".
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let first = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    !map.is_empty() && !first
}

fn older_than(pid: u32, me: Option<u64>) -> bool {
    matches!((crate::registry::process_start(pid), me), (Some(p), Some(m)) if p < m)
}

fn ns_inode(task: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(task.join("ns/net"))?.ino())
}

/// `Ok(None)` where the thing ended while we looked (ENOENT/ESRCH); other errors stay errors.
fn gone_is_none<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn pids_checked() -> std::io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        if let Some(pid) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(pid);
        }
    }
    Ok(out)
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

/// Every network namespace a process has an fd of, as (/proc/PID/fd/N, inode). Fails closed: only
/// a process or fd that goes away while it looks is passed over.
pub fn namespace_fds(pid: u32) -> std::io::Result<Vec<(std::path::PathBuf, u64)>> {
    let mut out = Vec::new();
    let Some(fds) = gone_is_none(std::fs::read_dir(format!("/proc/{pid}/fd")))? else {
        return Ok(out);
    };
    for e in fds {
        let e = e?;
        let Some(t) = gone_is_none(std::fs::read_link(e.path()))? else {
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
    Ok(out)
}

/// Every network namespace a process holds, other than `except` (an inode): its open fds and its
/// threads' namespaces, as (path under /proc, inode). Fails closed, as [`namespace_fds`].
pub fn namespaces_held(pid: u32, except: u64) -> std::io::Result<Vec<(std::path::PathBuf, u64)>> {
    let mut out: Vec<(std::path::PathBuf, u64)> = Vec::new();
    let mut add = |p: std::path::PathBuf, ino: u64| {
        if ino != except && !out.iter().any(|(_, i)| *i == ino) {
            out.push((p, ino));
        }
    };
    for (p, ino) in namespace_fds(pid)? {
        add(p, ino);
    }
    if let Some(tasks) = gone_is_none(std::fs::read_dir(format!("/proc/{pid}/task")))? {
        for t in tasks {
            let p = t?.path().join("ns/net");
            if let Some(ino) = gone_is_none(ns_inode(p.parent().expect("task dir")))? {
                add(p, ino);
            }
        }
    }
    Ok(out)
}
