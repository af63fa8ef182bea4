//! The walk against the lab's plan: a route that sends the packet elsewhere than the plan does
//! (out of another interface, via another gateway, or by a route the plan does not have) is a
//! divergence. It is the culprit when the packet dies before it is back on the plan's path —
//! before it reaches the host the plan's route leads to — whatever hop it dies at; once the
//! packet is there, the divergence explains nothing further.

use super::*;
use crate::lab::intended_path::intended_path;

impl Divergence {
    pub(super) fn rejoined_at(&self, host: &str) -> bool {
        self.planned_next.as_deref() == Some(host)
    }
}

impl<'a> Walker<'a> {
    /// Whether `host`'s live route for `dst` (out of `oif`, via `gateway`) differs from its
    /// plan's. Not judged on hosts CNI plugins wired (the plan does not list what they made).
    pub(super) fn diverges(
        &self,
        host: &str,
        oif: &str,
        gateway: Option<Ipv4Addr>,
        (src, dst): (Ipv4Addr, Ipv4Addr),
        at: usize,
    ) -> Option<Divergence> {
        if self.lab.topology().plugin_wired(host) || oif == "lo" {
            return None;
        }
        let plan = self
            .lab
            .plan()
            .host(host)
            .filter(|h| !h.ifaces.is_empty())?;
        let route = plan.route_for(dst);
        let live = match gateway {
            Some(g) => format!("via {g} dev {oif}"),
            None => format!("dev {oif}"),
        };
        let planned = match route {
            Some((dev, Some(g))) => format!("via {g} dev {dev}"),
            Some((dev, None)) => format!("dev {dev}"),
            None => "no route".to_string(),
        };
        let foreign_iface = !plan.ifaces.iter().any(|i| i.name == oif);
        if !foreign_iface && route == Some((oif, gateway)) {
            return None;
        }
        let path = intended_path(self.lab.plan(), self.lab.topology(), host, src, dst);
        let planned_next = path.hops.first().and_then(|h| h.next.clone());
        Some(Divergence {
            host: host.to_string(),
            at,
            dst,
            live,
            planned,
            planned_next,
            oif: oif.to_string(),
            planned_dev: route.map(|(dev, _)| dev.to_string()),
            foreign_iface,
            path: path.describe(),
        })
    }

    /// A pair reachable where the lab does not intend it (the case loop explains pairs whose
    /// outcome changed): a route the plan does not have at all, that the packet took, is why.
    /// Anything else stays as the walk found it.
    pub(super) fn reached_off_plan(
        &self,
        c: Culprit,
        flow: &Flow,
        hops: &mut [Hop],
        from: &str,
        to: &str,
    ) -> Culprit {
        let Some(d) = flow.diverged.as_ref().filter(|d| d.planned_dev.is_none()) else {
            return c;
        };
        if c.component != Component::Unexplained {
            return c;
        }
        if let Some(h) = hops.get_mut(d.at) {
            h.status = HopStatus::Fail;
        }
        culprit(
            &d.host,
            Component::Route,
            format!(
                "{} routes {} {}, a route the lab's plan does not have: {from} reaches {to}, which the lab does not intend",
                d.host, d.dst, d.live
            ),
        )
    }

    /// A broken walk still off the plan's path: the route that left it is the culprit,
    /// whatever later hop the packet died at.
    pub(super) fn blame_divergence(&self, c: Culprit, flow: &Flow, hops: &mut [Hop]) -> Culprit {
        let Some(d) = &flow.diverged else {
            return c;
        };
        if let Some(h) = hops.get_mut(d.at) {
            h.status = HopStatus::Fail;
        }
        let why = if d.foreign_iface {
            let intended = match &d.planned_dev {
                Some(dev) => format!("the plan sends it out of {dev}: {}", d.path),
                None => "the plan has no such interface".to_string(),
            };
            format!(
                "out of {}, an interface the lab's plan does not have ({intended})",
                d.oif
            )
        } else if c.host == d.host && c.component == Component::Route {
            // The route itself already explains it: say what the plan has instead.
            return culprit(
                &c.host,
                c.component,
                format!(
                    "{} (the lab's plan routes it {}: {})",
                    c.summary, d.planned, d.path
                ),
            );
        } else {
            format!(
                "{}, where the lab's plan has {} ({})",
                d.live, d.planned, d.path
            )
        };
        culprit(
            &d.host,
            Component::Route,
            format!(
                "{} routes {} {why}; there: {} {}: {}",
                d.host,
                d.dst,
                c.host,
                c.component.as_str(),
                c.summary
            ),
        )
    }
}
