//! Named labs: the ones that outlive the process (`netfault up --name`, drills).
//!
//! Each host of a named lab is pinned at `/run/netns/<LAB>-<host>` so `ip netns exec` works. A
//! record at `/run/netfault/labs/<LAB>.json` says which pins are netfault's: `gc` and `down` only
//! ever remove pins a record lists. The record is written (exclusively) before the first pin, so
//! a process killed half-way leaves a record `gc` can use, and two `up` of one name cannot both win.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::topology::source::plain_io_error;
use crate::topology::Topology;

/// Where pins live; `NETFAULT_NETNS_DIR` overrides `/run/netns`.
pub fn netns_dir() -> PathBuf {
    std::env::var_os("NETFAULT_NETNS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/netns"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// `up` is still running (or died half-way: see `pid`).
    Building,
    Up,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabRecord {
    pub name: String,
    pub state: RecordState,
    /// The process building the lab, and its start time (so a reused pid is not mistaken for it).
    pub pid: u32,
    pub pid_start: u64,
    pub created_unix: u64,
    pub fixture: Option<PathBuf>,
    pub topology: Topology,
    /// (host, pin path) for every namespace, including the switch.
    pub pins: Vec<(String, PathBuf)>,
    /// CNI plugins' state (IPAM, tuning) of a lab whose pods plugins attached.
    #[serde(default)]
    pub cni_dir: Option<PathBuf>,
    #[serde(default)]
    pub cni_lists: std::collections::BTreeMap<String, crate::topology::conflist::ConfList>,
    #[serde(default)]
    pub cni_attachments: std::collections::BTreeMap<String, crate::topology::conflist::Attachment>,
    /// The cluster DNS server process serving the lab (`netfault dns-serve`), and its start
    /// time: `down` and `gc` end it by this PID only.
    #[serde(default)]
    pub dns_pid: Option<(u32, u64)>,
    /// The standing echo servers' process (`netfault serve`), and its start time.
    #[serde(default)]
    pub serve_pid: Option<(u32, u64)>,
}

impl LabRecord {
    pub fn new(name: &str, fixture: Option<PathBuf>, topology: &Topology) -> LabRecord {
        let pins = topology
            .namespace_names()
            .into_iter()
            .map(|h| {
                let p = pin_path(name, &h);
                (h, p)
            })
            .collect();
        LabRecord {
            name: name.to_string(),
            state: RecordState::Building,
            pid: std::process::id(),
            pid_start: process_start(std::process::id()).unwrap_or(0),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            fixture,
            topology: topology.clone(),
            pins,
            cni_dir: None,
            cni_lists: Default::default(),
            cni_attachments: Default::default(),
            dns_pid: None,
            serve_pid: None,
        }
    }

    /// Whether the process that wrote the record is still running.
    pub fn owner_alive(&self) -> bool {
        process_start(self.pid).is_some_and(|s| s == self.pid_start)
    }

    /// A record of a build whose process is gone: what `gc` reaps.
    pub fn is_abandoned(&self) -> bool {
        self.state == RecordState::Building && !self.owner_alive()
    }
}

pub fn pin_path(lab: &str, host: &str) -> PathBuf {
    netns_dir().join(format!("{lab}-{host}"))
}

fn record_path(name: &str) -> PathBuf {
    crate::paths::labs_dir().join(format!("{name}.json"))
}

/// Lab names become file names and pin prefixes: keep them plain.
pub fn check_lab_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "invalid lab name \"{}\": use 1 to 32 lowercase letters, digits and '-'",
            name.escape_debug()
        )))
    }
}

/// Writes a new record; fails if a lab of that name exists or one of its pins is taken.
pub fn reserve(rec: &LabRecord) -> Result<()> {
    check_lab_name(&rec.name)?;
    std::fs::create_dir_all(crate::paths::labs_dir()).map_err(|e| {
        Error::io(
            format!("creating {}", crate::paths::labs_dir().display()),
            e,
        )
    })?;
    let path = record_path(&rec.name);
    let taken = || {
        Error::NotFound(format!(
            "a lab named \"{}\" already exists (netfault status lists it): netfault down {} \
             removes it, or pick another name",
            rec.name, rec.name
        ))
    };
    if path.exists() {
        return Err(taken());
    }
    for (_, pin) in &rec.pins {
        if !pin.exists() {
            continue;
        }
        // Another lab's host may have this pin's name (lab "a" host "b-c", lab "a-b" host "c").
        let owner = list().into_iter().find_map(|l| {
            l.pins
                .iter()
                .find(|(_, p)| p == pin)
                .map(|(h, _)| (l.name.clone(), h.clone()))
        });
        return Err(Error::NotFound(match owner {
            Some((lab, host)) => format!(
                "{} is already lab {lab}'s host {host}: pick another lab name",
                pin.display()
            ),
            None => format!(
                "{} already exists, and no netfault lab record claims it: pick another lab name \
                 (netfault never removes namespaces it did not create)",
                pin.display()
            ),
        }));
    }
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(taken()),
        Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
    };
    let json = serde_json::to_vec_pretty(rec).expect("record serialises");
    f.write_all(&json)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(())
}

/// Rewrites an existing record (atomically: write a temp file, rename).
pub fn update(rec: &LabRecord) -> Result<()> {
    let path = record_path(&rec.name);
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(rec).expect("record serialises");
    std::fs::write(&tmp, json).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Marks a named lab's build finished: from now on `gc` leaves it alone.
pub fn mark_up(name: &str) -> Result<()> {
    let mut rec = load(name)?;
    rec.state = RecordState::Up;
    update(&rec)
}

pub fn load(name: &str) -> Result<LabRecord> {
    check_lab_name(name)?;
    let path = record_path(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let labs: Vec<String> = list().into_iter().map(|l| l.name).collect();
            let near = crate::topology::did_you_mean(name, labs.iter().map(String::as_str));
            return Err(Error::NotFound(match near {
                Some(n) => format!("no lab named \"{name}\"; did you mean \"{n}\"?"),
                None => format!(
                    "no lab named \"{name}\" (netfault status lists the labs on this machine)"
                ),
            }));
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    serde_json::from_str(&text).map_err(|e| {
        Error::other(format!(
            "{}: not a netfault lab record: {e}",
            path.display()
        ))
    })
}

pub fn list() -> Vec<LabRecord> {
    let Ok(rd) = std::fs::read_dir(crate::paths::labs_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<LabRecord> = rd
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "json" {
                return None;
            }
            let name = p.file_stem()?.to_str()?.to_string();
            load(&name).ok()
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Takes namespaces pinned by hand (`ip netns add LAB-HOST`, as `netfault script` does) as the
/// lab `name` of `topology`, so status, diagnose, drills and down work on it. Every host must be
/// pinned; nothing is created or changed but the record.
pub fn adopt(name: &str, fixture: Option<PathBuf>, topology: &Topology) -> Result<LabRecord> {
    let mut rec = LabRecord::new(name, fixture, topology);
    let missing: Vec<String> = rec
        .pins
        .iter()
        .filter(|(_, p)| !is_nsfs_pin(p))
        .map(|(h, p)| format!("{h} ({})", p.display()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::NotFound(format!(
            "no namespace pinned for {}: build the lab first (LAB={name} sh script) or check the name",
            missing.join(", ")
        )));
    }
    check_lab_name(name)?;
    std::fs::create_dir_all(crate::paths::labs_dir()).map_err(|e| {
        Error::io(
            format!("creating {}", crate::paths::labs_dir().display()),
            e,
        )
    })?;
    if record_path(name).exists() {
        return Err(Error::NotFound(format!(
            "a lab named \"{name}\" is already recorded: netfault status {name}"
        )));
    }
    rec.state = RecordState::Up;
    update(&rec)?;
    Ok(rec)
}

/// Removes a lab's pins and record. Only pins the record lists, and only if they are namespace
/// pins. Returns the pins removed.
pub fn remove(rec: &LabRecord) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for (_, pin) in &rec.pins {
        if !pin.exists() {
            continue;
        }
        if !is_nsfs_pin(pin) && !is_empty_file(pin) {
            errors.push(format!(
                "{} is not a namespace pin; left alone",
                pin.display()
            ));
            continue;
        }
        match crate::netns::unpin(pin) {
            Ok(()) => removed.push(pin.clone()),
            Err(e) => errors.push(format!("{}: {}", pin.display(), plain_io_error(&e))),
        }
    }
    if !errors.is_empty() {
        return Err(Error::other(format!(
            "lab {}: {}",
            rec.name,
            errors.join("; ")
        )));
    }
    if let Some(d) = &rec.cni_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    let _ = std::fs::remove_dir_all(crate::paths::resolv_dir(&rec.name));
    for (host, _) in &rec.pins {
        forget_etc_netns(&rec.name, host);
    }
    for (pid, start) in rec.dns_pid.into_iter().chain(rec.serve_pid) {
        end_process(pid, start);
    }
    // What other commands kept about the lab: its latest diagnosis, a drill on it.
    let _ = std::fs::remove_file(crate::paths::latest_diagnosis(&rec.name));
    let _ = std::fs::remove_file(crate::paths::drill_state(&rec.name));
    let _ = std::fs::remove_file(crate::paths::lab_faults(&rec.name));
    let _ = std::fs::remove_dir_all(crate::paths::drill_pcaps(&rec.name));
    let path = record_path(&rec.name);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
    }
    Ok(removed)
}

/// Ends a process netfault started, by its PID, if it is still the one started at `start`.
pub fn end_process(pid: u32, start: u64) {
    if process_start(pid) == Some(start) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// Removes the resolv.conf netfault wrote for `ip netns exec LAB-HOST`, and its directory when
/// nothing else is in it (a file the user put there stays).
fn forget_etc_netns(lab: &str, host: &str) {
    let dir = crate::paths::etc_netns(lab, host);
    let _ = std::fs::remove_file(dir.join("resolv.conf"));
    let _ = std::fs::remove_dir(&dir);
}

/// Whether `path` is a bind mount of a namespace (nsfs).
pub fn is_nsfs_pin(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e736673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// An empty regular file: a pin whose mount never happened (the process died in between).
fn is_empty_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names() {
        assert!(check_lab_name("demo-1").is_ok());
        assert!(check_lab_name("../x").is_err());
        assert!(check_lab_name("A").is_err());
        assert!(check_lab_name("").is_err());
        assert!(check_lab_name("-x").is_err());
    }

    #[test]
    fn our_own_start_time_is_readable() {
        let me = std::process::id();
        assert!(process_start(me).is_some());
        assert!(process_start(u32::MAX).is_none());
    }
}
