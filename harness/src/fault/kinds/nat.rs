//! NAT: the node's masquerade, whoever wrote it.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::ParamError;
use super::super::kind::{Breakage, Kind, NODE};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::lab::Lab;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMasquerade {
    pub node: String,
}

impl Breakage for DeleteMasquerade {
    const KIND: Kind = Kind {
        name: "delete-masquerade",
        params: &[NODE],
        description:
            "delete every masquerade rule in the node's live ruleset (native or iptables-nft)",
        component: "masquerade",
        example: "delete-masquerade:node=node1",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        c.role("node", node, "node")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node } = self;
        delete_masquerade(lab, node).await
    }
}
