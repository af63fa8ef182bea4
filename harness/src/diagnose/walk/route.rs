//! Why a route lookup failed at a host: the address or device the route went with, a router that
//! refuses to forward (ip_forward, rp_filter), a host that is no router handed a packet.

use super::*;

impl<'a> Walker<'a> {
    /// The route lookup at `host` failed: a host that does not route by design (a pod, an
    /// external host) was handed a packet to forward, so the previous hop's route is wrong; or
    /// what the failure says of `host` itself.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn unroutable(
        &mut self,
        host: &str,
        pkt: &Pkt,
        in_name: Option<&str>,
        prev_route: Option<&(String, String)>,
        e: &netlink::RouteGetError,
        dir: &str,
        hops: &mut Vec<Hop>,
    ) -> Result<Culprit> {
        let t = self.lab.topology().clone();
        // A host that does not route by design (a pod, an external host) was
        // handed a packet to forward: the previous hop's route is wrong.
        let by_design = t.host(host).is_some_and(|h| h.as_node().is_none())
            && t.owner_of(pkt.dst).is_none_or(|o| o.name != host);
        if let (Some(n), Some((prev, route)), true) = (
            in_name,
            prev_route,
            by_design && e.errno == libc::EHOSTUNREACH,
        ) {
            hops.push(hop(
                HopStatus::Fail,
                host,
                format!(
                    "forward {n} → {}: not forwarded ({host} does not route)",
                    pkt.dst
                ),
            ));
            return Ok(culprit(
                prev,
                Component::Route,
                format!(
                    "{prev} sends {} {route}: {host} is no router and drops it",
                    pkt.dst
                ),
            ));
        }
        let (c, text) = self
            .route_failure(host, pkt, in_name, e.errno, &e.message, dir)
            .await?;
        hops.push(hop(HopStatus::Fail, host, text));
        Ok(c)
    }

    /// Why the kernel refused a route lookup, as a culprit and a hop line.
    pub(super) async fn route_failure(
        &mut self,
        host: &str,
        pkt: &Pkt,
        in_name: Option<&str>,
        errno: i32,
        message: &str,
        dir: &str,
    ) -> Result<(Culprit, String)> {
        let dst = pkt.dst;
        // Arrived where the address should be, and it is not there.
        if self
            .lab
            .topology()
            .owner_of(dst)
            .is_some_and(|o| o.name == host)
            && !self.has_address(host, dst).await?
        {
            let on = self
                .planned_iface_of(host, dst)
                .map(|i| format!(" on {i}"))
                .unwrap_or_default();
            return Ok((
                culprit(
                    host,
                    Component::Address,
                    format!("{host} lacks its address {dst}{on}: packets for it are not delivered"),
                ),
                format!("{dir}{dst} is not local: the address{on} is missing"),
            ));
        }
        if let Some(n) = in_name {
            if let Some(r) = self.refused_by_router(host, n, pkt, errno, dir).await? {
                return Ok(r);
            }
        }
        if errno == libc::ENETUNREACH {
            if let Some(r) = self.route_lost_with_address(host, dst, dir).await? {
                return Ok(r);
            }
            if let Some(r) = self.planned_route_gone(host, dst, dir).await? {
                return Ok(r);
            }
            if in_name.is_none() {
                if let Some(missing) = self.missing_planned_links(host).await? {
                    return Ok((
                        culprit(
                            host,
                            Component::Link,
                            format!("{host} has no {missing}: its routes through it are gone"),
                        ),
                        format!("{dir}route {dst}: no route ({missing} is missing)"),
                    ));
                }
            }
        }
        let what = match errno {
            libc::ENETUNREACH => "no route",
            libc::EHOSTUNREACH => "an unreachable route",
            libc::EACCES => "a prohibit route",
            libc::EINVAL => "a blackhole route (or a rejected source)",
            _ => message,
        };
        Ok((
            culprit(
                host,
                Component::Route,
                format!("{host} has {what} to {dst}"),
            ),
            format!("{dir}route {dst}: {what}"),
        ))
    }

    /// A router that will not pass a packet arriving on `n`: forwarding off (the same lookup
    /// without iif succeeds), or strict rp_filter.
    pub(super) async fn refused_by_router(
        &mut self,
        host: &str,
        n: &str,
        pkt: &Pkt,
        errno: i32,
        dir: &str,
    ) -> Result<Option<(Culprit, String)>> {
        let dst = pkt.dst;
        if errno == libc::EHOSTUNREACH {
            // The same lookup without iif succeeds when the host routes but will not forward;
            // with forwarding off the kernel answers EHOSTUNREACH even where it has no route
            // either (ip_route_input_slow), and forwarding is what stops the packet first.
            let h = self.lab.host(host)?.handle().clone();
            let all = self
                .sysctl(host, "net.ipv4.ip_forward")
                .await
                .unwrap_or_else(|| "?".into());
            let per_if = self
                .sysctl(host, &format!("net/ipv4/conf/{n}/forwarding"))
                .await
                .unwrap_or_else(|| "?".into());
            let off = all == "0" || per_if == "0";
            if off || netlink::route_get(&h, dst, None, None).await.is_ok() {
                let why = if all == "0" {
                    "net.ipv4.ip_forward = 0".to_string()
                } else {
                    format!("net.ipv4.conf.{n}.forwarding = {per_if}")
                };
                return Ok(Some((
                    culprit(
                        host,
                        Component::Forwarding,
                        format!("{host} does not forward packets arriving on {n} ({why})"),
                    ),
                    format!("forward {n} → {dst}: not forwarded ({why})"),
                )));
            }
        }
        if errno == libc::EINVAL {
            let all = self.sysctl(host, "net.ipv4.conf.all.rp_filter").await;
            let per_if = self
                .sysctl(host, &format!("net/ipv4/conf/{n}/rp_filter"))
                .await;
            let strict = |v: &Option<String>| v.as_deref() == Some("1");
            if strict(&all) || strict(&per_if) {
                let s = pkt.src;
                return Ok(Some((
                    culprit(
                        host,
                        Component::RpFilter,
                        format!("{host} drops {s} arriving on {n}: strict rp_filter, and its route back to {s} leaves by another interface"),
                    ),
                    format!("{dir}from {s} on {n}: rejected by rp_filter"),
                )));
            }
        }
        Ok(None)
    }

    /// A route that went away with an address, an interface or its link.
    pub(super) async fn route_lost_with_address(
        &mut self,
        host: &str,
        dst: Ipv4Addr,
        dir: &str,
    ) -> Result<Option<(Culprit, String)>> {
        if let Some(plan) = self.lab.plan().host(host).cloned() {
            for (dev, net) in &plan.addresses {
                if !net.trunc().contains(&dst) {
                    continue;
                }
                match self.link(host, dev).await? {
                    None => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Link,
                                format!(
                                    "{host} has no {dev}: the route to {} went with it",
                                    net.trunc()
                                ),
                            ),
                            format!("{dir}route {dst}: no route ({dev} is missing)"),
                        )))
                    }
                    Some(l) if !l.admin_up => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Link,
                                format!(
                                    "{host} {dev} is down: its route to {} is gone",
                                    net.trunc()
                                ),
                            ),
                            format!("{dir}route {dst}: no route ({dev} is down)"),
                        )))
                    }
                    Some(_) => {
                        if !self.has_address(host, net.addr()).await? {
                            return Ok(Some((
                                culprit(
                                    host,
                                    Component::Address,
                                    format!(
                                        "{host} {dev} lacks {net}: the route to {} went with it",
                                        net.trunc()
                                    ),
                                ),
                                format!("{dir}route {dst}: no route ({net} missing on {dev})"),
                            )));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// A planned route towards `dst`: its device missing or down, or the route itself gone.
    pub(super) async fn planned_route_gone(
        &mut self,
        host: &str,
        dst: Ipv4Addr,
        dir: &str,
    ) -> Result<Option<(Culprit, String)>> {
        if let Some(plan) = self.lab.plan().host(host).cloned() {
            if let Some(r) = plan.routes.iter().find(|r| r.dst.contains(&dst)) {
                let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                let dst_s = if r.dst.prefix_len() == 0 {
                    "default".to_string()
                } else {
                    r.dst.to_string()
                };
                match self.link(host, &r.dev).await? {
                    None => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Link,
                                format!(
                                    "{host} has no {}: its route {dst_s}{via} went with it",
                                    r.dev
                                ),
                            ),
                            format!("{dir}route {dst}: no route ({} is missing)", r.dev),
                        )))
                    }
                    Some(l) if !l.admin_up => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Link,
                                format!("{host} {} is down: its route {dst_s}{via} is gone", r.dev),
                            ),
                            format!("{dir}route {dst}: no route ({} is down)", r.dev),
                        )))
                    }
                    Some(_) => {
                        return Ok(Some((
                            culprit(
                                host,
                                Component::Route,
                                format!("{host} lacks its route {dst_s}{via} dev {}", r.dev),
                            ),
                            format!(
                                "{dir}route {dst}: no route ({dst_s}{via} dev {} is missing)",
                                r.dev
                            ),
                        )))
                    }
                }
            }
        }
        Ok(None)
    }

    pub(super) async fn missing_planned_links(&mut self, host: &str) -> Result<Option<String>> {
        let Some(plan) = self.lab.plan().host(host) else {
            return Ok(None);
        };
        let planned: Vec<String> = plan.ifaces.iter().map(|i| i.name.clone()).collect();
        let live = self.links(host).await?;
        Ok(planned
            .into_iter()
            .find(|n| !live.iter().any(|l| &l.name == n)))
    }
}
