//! The IPv6 walk of a ClusterIP probe (`svc/NAME` over tcp6 or udp6): kube-proxy's live ip6
//! table on the client's node says where the Service's IPv6 ClusterIP goes (or why nowhere);
//! then the IPv6 walk follows the packet to the endpoint that holds that address, at the
//! endpoint's port, as the translated packet travels.

use std::net::Ipv6Addr;

use super::{diagnosis, hop, unexplained, Walker6};
use crate::diagnose::kube_proxy_rules::{live_translation, Translation};
use crate::diagnose::vocab::*;
use crate::error::Result;
use crate::topology::k8s::{Service, Target};
use crate::topology::{Outcome, Proto, Role};

impl Walker6<'_> {
    /// Explains an IPv6 probe of a Kubernetes target; only ClusterIPs are followed (NodePorts,
    /// load balancers and lookups are said to be unexplained, with why).
    pub(super) async fn explain_service(
        &mut self,
        from: &str,
        to: &str,
        proto: Proto,
        outcome: Outcome,
    ) -> Result<Diagnosis> {
        let t = self.lab.topology().clone();
        let mut d = diagnosis(from, to, proto, outcome, "");
        let svc = match Target::parse(to) {
            Some(Target::Service(name)) => t.k8s.service(&name).cloned(),
            _ => None,
        };
        let Some((svc, cip)) = svc.and_then(|s| Some((s.clone(), s.cluster_ip6?))) else {
            d.culprit = unexplained(
                from,
                "the IPv6 walk follows IPv6 ClusterIPs only (compare the IPv4 twin)",
            );
            return Ok(d);
        };
        let node = match t.host(from).map(|h| &h.role) {
            Some(Role::Pod(p)) => p.node.clone(),
            Some(Role::Node(_)) => from.to_string(),
            _ => {
                let why = format!("{from} is outside the cluster: no ClusterIP is for it to reach");
                d.culprit = unexplained(from, &why);
                return Ok(d);
            }
        };
        let name = format!("{}/{}", svc.namespace, svc.name);
        let addr = format!("[{cip}]:{}", svc.port);
        let eps =
            match live_translation(self.lab, &node, "ip6", &svc, (cip, svc.port), false, false)
                .await?
            {
                Translation::Endpoints(eps) => eps,
                other => {
                    let (seen, why) = untranslated(&other, &node, &name, &addr, outcome);
                    d.forward.push(hop(HopStatus::Fail, &node, seen));
                    d.culprit = why;
                    return Ok(d);
                }
            };
        let Some(&(ep, port)) = eps.first() else {
            d.culprit = culprit(
                &node,
                format!("Service {name} translates to no pod on {node} (IPv6)"),
            );
            return Ok(d);
        };
        self.on_to_endpoint(d, &svc, &node, &addr, (ep, port)).await
    }

    /// The walk on from the translation: to the pod the fixture gives the endpoint's address,
    /// at the endpoint's port.
    async fn on_to_endpoint(
        &mut self,
        mut d: Diagnosis,
        svc: &Service,
        node: &str,
        addr: &str,
        (ep, port): (Ipv6Addr, u16),
    ) -> Result<Diagnosis> {
        let t = self.lab.topology().clone();
        let name = format!("{}/{}", svc.namespace, svc.name);
        let Some(pod) = t.owner_of6(ep).map(|h| h.name.clone()) else {
            d.culprit = culprit(node, format!("Service {name} has a stale endpoint [{ep}]:{port}: no pod of the lab holds {ep}, yet kube-proxy on {node} sends {addr} there (IPv6)"));
            return Ok(d);
        };
        let sent = hop(
            HopStatus::Ok,
            node,
            format!("kube-proxy sends {addr} to [{ep}]:{port} ({pod})"),
        );
        if pod == d.from {
            d.forward.push(sent);
            d.culprit = unexplained(
                node,
                "the endpoint is the client itself (hairpin): the IPv6 walk does not follow it",
            );
            return Ok(d);
        }
        let saved = self.dport.replace(port);
        let inner = Box::pin(self.explain(&d.from, &pod, d.protocols[0], d.outcome)).await;
        self.dport = saved;
        let inner = inner?;
        d.forward.push(sent);
        d.forward.extend(inner.forward);
        d.reply = inner.reply;
        d.culprit = if inner.culprit.component == Component::Unexplained {
            unexplained(node, &format!("kube-proxy on {node} translates {addr} to [{ep}]:{port} ({pod}), and the IPv6 path there: {}", inner.culprit.summary))
        } else {
            inner.culprit
        };
        Ok(d)
    }
}

/// The hop and culprit of a Service its node's ip6 table does not translate. A rejected
/// Service is blamed only for a refused probe: a UDP flow that began before keeps its old
/// translation past the reject, which this walk does not read.
fn untranslated(
    tr: &Translation<Ipv6Addr>,
    node: &str,
    name: &str,
    addr: &str,
    outcome: Outcome,
) -> (String, Culprit) {
    match tr {
        Translation::NoTable | Translation::Flushed => {
            let what = if matches!(tr, Translation::NoTable) { "is missing" } else { "is empty (flushed)" };
            (
                format!("kube-proxy's ip6 table {what}"),
                culprit(node, format!("kube-proxy's ip6 nft table on {node} {what}: {addr} of Service {name} is not translated there")),
            )
        }
        Translation::NoRule => (
            format!("no kube-proxy rule for {addr}"),
            culprit(node, format!("kube-proxy on {node} has no IPv6 rule for Service {name} ({addr}): packets to it are not DNATed to any endpoint")),
        ),
        Translation::Rejected if outcome == Outcome::Refused => (
            format!("kube-proxy rejects {addr}: no endpoints"),
            culprit(node, format!("Service {name} has no endpoints: kube-proxy on {node} rejects {addr} (IPv6)")),
        ),
        Translation::Rejected => (
            format!("kube-proxy rejects new flows to {addr}: no endpoints"),
            unexplained(node, &format!("kube-proxy on {node} rejects {addr} (no endpoints), but the probe was not refused: {outcome}")),
        ),
        Translation::NoLocal => (
            format!("kube-proxy drops {addr}: no local endpoint"),
            culprit(node, format!("Service {name} has internalTrafficPolicy Local and no endpoint on {node}: kube-proxy there drops {addr} (IPv6)")),
        ),
        Translation::Endpoints(_) => unreachable!("translated"),
    }
}

fn culprit(node: &str, summary: String) -> Culprit {
    Culprit {
        host: node.to_string(),
        component: Component::Service,
        summary,
    }
}
