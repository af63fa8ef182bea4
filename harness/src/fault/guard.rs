//! Injecting a fault into a live lab, and the guard that heals it exactly.

use crate::error::{Error, Result};
use crate::lab::Lab;

use super::kind::*;
use super::undo::Undo;
use super::{k8s, ops};

impl Fault {
    /// Injects the fault into a live lab.
    pub async fn inject(&self, lab: &Lab) -> Result<Guard> {
        self.check(lab.topology())
            .map_err(|e| Error::NotFound(format!("{self}: {}; {}", e.message, e.help)))?;
        // Kubernetes faults change kube-proxy's and the policies' tables; the rest, links,
        // routes, rules and sysctls.
        let undo = if k8s::is_k8s(self) {
            k8s::inject(self, lab).await?
        } else {
            ops::inject(self, lab).await?
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
pub struct Guard {
    pub fault: Fault,
    undo: Vec<Undo>,
}

impl Guard {
    pub async fn heal(self, lab: &Lab) -> Result<()> {
        for u in self.undo.into_iter().rev() {
            u.apply(lab).await?;
            crate::testhook::pause("fault:healed");
        }
        Ok(())
    }
}
