//! Injecting a fault into a live lab, and the guard that heals it exactly.

use crate::error::{Error, Result};
use crate::lab::Lab;

use super::ops;
use super::registry::Fault;
use super::undo::Undo;

impl Fault {
    /// Injects the fault into a live lab.
    pub async fn inject(&self, lab: &Lab) -> Result<Guard> {
        self.check(lab.topology())
            .map_err(|e| Error::InvalidFault {
                fault: self.to_string(),
                source: e,
            })?;
        // Kubernetes faults change kube-proxy's and the policies' tables; the rest, links,
        // routes, rules and sysctls.
        let undo = if self.is_k8s() {
            self.inject_kind(lab).await?
        } else {
            inject_node_fault(self, lab).await?
        };
        crate::testhook::pause("fault:injected");
        Ok(Guard {
            fault: self.clone(),
            undo,
        })
    }
}

/// An injected fault; `heal` puts back exactly what inject changed.
#[must_use = "a fault that is never healed leaves the lab broken"]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Guard {
    pub fault: Fault,
    undo: Vec<Undo>,
}

impl Guard {
    pub async fn heal(self, lab: &Lab) -> Result<()> {
        self.heal_or_keep(lab).await.map_err(|(e, _)| e)
    }

    /// Heals; on a step that fails, returns the error with the guard holding that step and
    /// those after it, to be tried again.
    async fn heal_or_keep(mut self, lab: &Lab) -> std::result::Result<(), (Error, Guard)> {
        while let Some(u) = self.undo.pop() {
            if let Err(e) = u.clone().apply(lab).await {
                self.undo.push(u);
                return Err((e, self));
            }
            crate::testhook::pause("fault:healed");
        }
        Ok(())
    }
}

/// Heals faults injected in order `guards` (last first). A heal may need another one first —
/// a route goes back only once the link another fault set down is up again — so a heal that
/// fails waits until the others are done and is tried once more; the first error that remains
/// is returned.
pub async fn heal_all(lab: &Lab, guards: Vec<Guard>) -> Result<()> {
    let mut waiting = Vec::new();
    for g in guards.into_iter().rev() {
        if let Err((_, rest)) = g.heal_or_keep(lab).await {
            waiting.push(rest);
        }
    }
    let mut first = None;
    for g in waiting {
        let name = g.fault.to_string();
        if let Err((e, _)) = g.heal_or_keep(lab).await {
            first.get_or_insert(Error::other(format!("healing {name}: {e}")));
        }
    }
    first.map_or(Ok(()), Err)
}

/// A fault on links, routes, rules or sysctls: some changes take more with them than they name
/// (a link going down flushes its routes and neighbour entries): whatever vanishes from any host
/// is put back too.
async fn inject_node_fault(f: &Fault, lab: &Lab) -> Result<Vec<Undo>> {
    let before = ops::capture_restorable(lab).await?;
    let mut log = f.inject_kind(lab).await?;
    let after = ops::capture_restorable(lab).await?;
    let mut out = ops::vanished(&before, &after);
    out.append(&mut log);
    Ok(out)
}
