//! The faults injected into a pinned lab: `netfault fault` injects one and saves its undo log
//! beside the lab's record, so a later `netfault heal` (another process) puts back exactly what
//! it changed, as a case's heal does.

use serde::{Deserialize, Serialize};

use super::guard::Guard;
use super::registry::Fault;
use crate::error::{Error, Result};
use crate::lab::Lab;

/// One fault still in a pinned lab.
#[derive(Serialize, Deserialize)]
pub struct Active {
    /// Numbered from 1 in the order injected; `heal LAB 2` names one.
    pub id: u32,
    pub guard: Guard,
}

impl Active {
    pub fn fault(&self) -> &Fault {
        &self.guard.fault
    }
}

/// The faults a pinned lab holds, oldest first (none when nothing was injected).
pub fn active(lab: &str) -> Result<Vec<Active>> {
    let p = crate::paths::lab_faults(lab);
    match std::fs::read_to_string(&p) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            Error::other(format!(
                "{}: unreadable fault log: {e} (netfault reset {lab} rebuilds the lab)",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
    }
}

fn save(lab: &str, faults: &[Active]) -> Result<()> {
    let p = crate::paths::lab_faults(lab);
    if faults.is_empty() {
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", p.display()), e))
            }
            _ => Ok(()),
        };
    }
    crate::paths::write_atomic(&p, &serde_json::to_vec(faults).expect("json"))
}

/// Forgets every saved fault (after a reset rebuilt the lab, nothing is left to heal).
pub fn forget_all(lab: &str) -> Result<()> {
    save(lab, &[])
}

/// Injects `f` into the pinned lab and saves how to heal it; returns its number.
pub async fn inject(lab: &Lab, name: &str, f: &Fault) -> Result<u32> {
    let mut faults = active(name)?;
    let guard = f.inject(lab).await?;
    let id = faults.iter().map(|a| a.id).max().unwrap_or(0) + 1;
    faults.push(Active { id, guard });
    save(name, &faults)?;
    Ok(id)
}

/// Which saved faults a `heal` selects.
pub enum Which<'a> {
    All,
    /// The one fault the lab holds (none: nothing to heal; several: an error listing them).
    Sole,
    /// Its number, its `KIND:k=v,...` text, or its kind when only one fault is of that kind.
    One(&'a str),
}

/// Heals the selected faults, newest first (later faults may rest on earlier ones); returns
/// them. A fault that fails to heal stays saved, with the ones before it.
pub async fn heal(lab: &Lab, name: &str, which: Which<'_>) -> Result<Vec<Fault>> {
    let mut faults = active(name)?;
    let chosen: Vec<u32> = match which {
        Which::All => faults.iter().map(|a| a.id).collect(),
        Which::Sole if faults.len() > 1 => {
            return Err(Error::BadInput(format!(
                "lab {name} holds {} faults ({}): name one (netfault heal {name} N) or --all",
                faults.len(),
                listed(&faults)
            )))
        }
        Which::Sole => faults.iter().map(|a| a.id).collect(),
        Which::One(sel) => vec![select(&faults, name, sel)?],
    };
    let mut healed = Vec::new();
    for id in chosen.into_iter().rev() {
        let at = faults.iter().position(|a| a.id == id).expect("selected");
        let a = faults.remove(at);
        let fault = a.guard.fault.clone();
        if let Err(e) = a.guard.heal(lab).await {
            save(name, &faults)?;
            return Err(Error::other(format!(
                "healing #{id} {fault}: {e} (netfault reset {name} rebuilds the lab from its fixture)"
            )));
        }
        healed.push(fault);
        save(name, &faults)?;
    }
    Ok(healed)
}

/// The id a selector names: a number, a fault's full text, or a kind held by one fault.
fn select(faults: &[Active], lab: &str, sel: &str) -> Result<u32> {
    let sel = sel.trim().trim_start_matches('#');
    if faults.is_empty() {
        return Err(Error::NotFound(format!(
            "lab {lab} holds no fault netfault injected (a change made by hand: netfault reset {lab})"
        )));
    }
    let listed = || listed(faults);
    if let Ok(n) = sel.parse::<u32>() {
        return match faults.iter().find(|a| a.id == n) {
            Some(a) => Ok(a.id),
            None => Err(Error::NotFound(format!(
                "lab {lab} holds no fault #{n} (it holds {})",
                listed()
            ))),
        };
    }
    let same = |a: &&Active| a.fault().to_string() == sel || same_spec(a.fault(), sel);
    if let Some(a) = faults.iter().find(same) {
        return Ok(a.id);
    }
    let of_kind: Vec<&Active> = faults.iter().filter(|a| a.fault().name() == sel).collect();
    match of_kind.as_slice() {
        [one] => Ok(one.id),
        [] => Err(Error::NotFound(format!(
            "lab {lab} holds no fault \"{sel}\" (it holds {})",
            listed()
        ))),
        _ => Err(Error::BadInput(format!(
            "lab {lab} holds {} faults of kind {sel}: name one by number ({})",
            of_kind.len(),
            listed()
        ))),
    }
}

/// The faults held, as `#1 KIND:k=v, #2 ...`.
fn listed(faults: &[Active]) -> String {
    faults
        .iter()
        .map(|a| format!("#{} {}", a.id, a.fault().spec()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `sel`, parsed as `KIND:k=v,...`, is the fault `f`.
fn same_spec(f: &Fault, sel: &str) -> bool {
    Fault::parse_spec(sel).is_ok_and(|g| &g == f)
}
