//! A pair that reached, but whose server saw another source than the plan intends: the walk
//! finds the hop whose source NAT translated it (an over-broad masquerade, an SNAT by hand).

use std::net::Ipv4Addr;

use super::{culprit, Walker};
use crate::diagnose::vocab::{Component, Diagnosis, HopStatus};
use crate::error::Result;
use crate::topology::{Outcome, Proto};

impl Walker<'_> {
    /// `why` says what the server saw and what the plan intends (the matrix cell's note).
    pub(super) async fn explain_translation(
        &mut self,
        from: &str,
        to: &str,
        proto: Proto,
        seen: Ipv4Addr,
        why: &str,
    ) -> Result<Diagnosis> {
        let mut d = self
            .explain(from, to, proto, Outcome::Reachable, None)
            .await?;
        d.reply.clear();
        d.culprit = match self.last_snat.clone() {
            Some((host, orig, translated)) if translated == seen => {
                if let Some(h) = d
                    .forward
                    .iter_mut()
                    .find(|h| h.host == host && h.text.starts_with("postrouting:"))
                {
                    h.status = HopStatus::Fail;
                }
                culprit(
                    &host,
                    Component::Masquerade,
                    format!("{host} translates {orig} to {translated} on the way to {to}: reachable, {why}"),
                )
            }
            _ => match self.last_untranslated.clone() {
                // The pod's own address seen where the plan masquerades it: the node sent it out
                // untranslated (and the far end routes pod addresses back, or it would not reach).
                Some((node, uplink, pod_ip, at)) if pod_ip == seen => {
                    if let Some(h) = d.forward.get_mut(at) {
                        h.status = HopStatus::Fail;
                    }
                    culprit(
                        &node,
                        Component::Masquerade,
                        format!("{node} sends {pod_ip} out of {uplink} unmasqueraded: reachable only because {to} routes it back, {why}"),
                    )
                }
                _ => culprit(
                    from,
                    Component::Unexplained,
                    format!("reachable, {why}; the walk finds no hop that translates it to {seen}"),
                ),
            },
        };
        Ok(d)
    }
}
