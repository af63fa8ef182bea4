//! A deliberately wrong rule, for testing exploration's shrinking only: with
//! `NETFAULT_TEST_PLANTED_BUG=masquerade-as-bridge` in the environment, a node's masquerade
//! culprit is renamed its bridge whenever a pod of that node is blamed on its route in the same
//! explanation. It needs two broken components at once, so a shrunk failing round must keep
//! exactly a masquerade fault and a pod route fault. Without the variable it does nothing.

use super::{Component, Diagnosis};
use crate::topology::Topology;

const SWITCH: &str = "NETFAULT_TEST_PLANTED_BUG";

pub(super) fn apply(ds: &mut [Diagnosis], t: &Topology) {
    if std::env::var(SWITCH).as_deref() != Ok("masquerade-as-bridge") {
        return;
    }
    let route_broken_on = |node: &str| {
        ds.iter().any(|d| {
            d.culprit.component == Component::Route
                && t.host(&d.culprit.host)
                    .and_then(|h| h.as_pod())
                    .is_some_and(|p| p.node == node)
        })
    };
    let renamed: Vec<usize> = (0..ds.len())
        .filter(|&i| ds[i].culprit.component == Component::Masquerade)
        .filter(|&i| route_broken_on(&ds[i].culprit.host))
        .collect();
    for i in renamed {
        ds[i].culprit.component = Component::Bridge;
    }
}
