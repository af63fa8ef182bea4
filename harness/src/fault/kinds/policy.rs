//! NetworkPolicy: a default-deny for egress.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::{perr, ParamError};
use super::super::k8s::*;
use super::super::kind::{Breakage, Kind};
use super::super::undo::Undo;
use crate::lab::Lab;
use crate::topology::k8s::{Policy, PolicyPort, PolicyRule};
use crate::topology::Proto;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultDenyEgress {
    pub namespace: String,
    pub allow_port: Option<u16>,
}

impl Breakage for DefaultDenyEgress {
    const KIND: Kind = Kind { name: "default-deny-egress", params: &[("namespace", "a namespace with pods"), ("allow_port", "a UDP port egress stays open to (optional; 53 is the classic mistake when DNS is DNATed to 5353)")], description: "a NetworkPolicy selecting every pod of the namespace for egress, allowing nothing (or one UDP port)", component: "policy", example: "default-deny-egress:namespace=default,allow_port=53" };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self {
            namespace,
            allow_port,
        } = self;
        // Policies need no Service: any fixture with a Kubernetes layer renders them.
        if c.t.k8s.is_empty() {
            needs_k8s(c.t, "default-deny-egress")?;
        }
        if !c.t.pods().any(|(_, p)| &p.namespace == namespace) {
            let mut nss: Vec<&str> = c.t.pods().map(|(_, p)| p.namespace.as_str()).collect();
            nss.sort();
            nss.dedup();
            return Err(perr(
                "namespace",
                format!("no pod lives in namespace \"{namespace}\""),
                format!("namespaces with pods: {}", nss.join(", ")),
            ));
        }
        if *allow_port == Some(0) {
            return Err(perr("allow_port", "port 0 is not a port", "use 1..65535"));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let mut spec = t.k8s.clone();
        let Self {
            namespace,
            allow_port,
        } = self;
        spec.policies.push(Policy {
            name: "default-deny-egress".into(),
            namespace: namespace.clone(),
            pod_selector: Default::default(),
            ingress: None,
            egress: Some(
                allow_port
                    .map(|p| PolicyRule {
                        peers: Vec::new(),
                        ports: vec![PolicyPort::number(Proto::Udp, p)],
                    })
                    .into_iter()
                    .collect(),
            ),
        });
        rerender(lab, t, &spec).await
    }
}
