//! IPv6 faults for dual-stack labs: each breaks one family and leaves IPv4 working, as the
//! classic "IPv4 works, IPv6 doesn't" does.

use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use super::super::check::{perr, Checker, ParamError};
use super::super::kind::{Breakage, Kind, NODE, POD};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::diagnose::Component;
use crate::error::{nl_error, Error, Result};
use crate::lab::Lab;
use crate::nl6;

/// The host has an IPv6 address (the fixture is dual-stack).
fn dual(c: &Checker, field: &'static str, host: &str) -> std::result::Result<(), ParamError> {
    match c.t.host(host).and_then(|h| h.address6()) {
        Some(_) => Ok(()),
        None => Err(perr(
            field,
            format!("{host} has no IPv6 address in {}", c.t.name),
            "use a dual-stack fixture, e.g. dual-stack",
        )),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableIpv6Forward {
    pub node: String,
}

impl Breakage for DisableIpv6Forward {
    const KIND: Kind = Kind {
        name: "disable-ipv6-forward",
        params: &[NODE],
        description: "net.ipv6.conf.all.forwarding = 0 on the node (IPv4 keeps forwarding)",
        component: "forwarding",
        example: "disable-ipv6-forward:node=node1",
    };

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("node", &self.node, "node")?;
        dual(c, "node", &self.node)
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        disable_forwarding(lab, &self.node, crate::topology::Family::V6).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMasquerade6 {
    pub node: String,
}

impl Breakage for DeleteMasquerade6 {
    const KIND: Kind = Kind {
        name: "delete-masquerade6",
        params: &[NODE],
        description:
            "delete the node's ip6 (and inet) masquerade rules only: IPv4 stays masqueraded",
        component: "masquerade",
        example: "delete-masquerade6:node=node1",
    };

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("node", &self.node, "node")?;
        dual(c, "node", &self.node)
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        use nftables::types::NfFamily;
        delete_masquerade_in(lab, &self.node, |f| {
            matches!(f, NfFamily::IP6 | NfFamily::INet)
        })
        .await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletePodRoute6 {
    pub pod: String,
}

impl Breakage for DeletePodRoute6 {
    const KIND: Kind = Kind {
        name: "delete-pod-route6",
        params: &[POD],
        description: "delete the pod's IPv6 default route (its IPv4 one stays)",
        component: "route",
        example: "delete-pod-route6:pod=pod-a",
    };

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("pod", &self.pod, "pod")?;
        dual(c, "pod", &self.pod)
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        let pod = &self.pod;
        let h = lab.host(pod)?;
        let all = nl6::routes_raw6(h.handle())
            .await
            .map_err(|e| nl_error(pod, "listing IPv6 routes", e))?;
        let doomed: Vec<_> = all
            .into_iter()
            .filter(|m| m.header.destination_prefix_length == 0)
            .collect();
        if doomed.is_empty() {
            return Err(Error::NotApplicable(format!(
                "{pod} has no IPv6 default route"
            )));
        }
        for m in &doomed {
            crate::nl::del_route_msg(h.handle(), m.clone())
                .await
                .map_err(|e| nl_error(pod, "deleting its IPv6 default route", e))?;
        }
        Ok(vec![super::super::ops::readd_routes(h, doomed).await?])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongNeighbour6 {
    pub pod: String,
}

impl Breakage for WrongNeighbour6 {
    const KIND: Kind = Kind {
        name: "wrong-neighbour6",
        params: &[POD],
        description: "a permanent NDP entry for the pod's IPv6 gateway with a MAC nobody has (its ARP entry stays right)",
        component: "neighbour",
        example: "wrong-neighbour6:pod=pod-a",
    };

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("pod", &self.pod, "pod")?;
        dual(c, "pod", &self.pod)
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        let pod = &self.pod;
        let gw = pod_gateway6(lab, pod)?;
        let (_, _, ifname) = pod_sides(lab, pod)?;
        let h = lab.host(pod)?;
        let ix = h.index(&ifname).await?;
        let before = nl6::neighbours6(h.handle())
            .await
            .map_err(|e| nl_error(pod, "listing NDP entries", e))?
            .into_iter()
            .find(|n| n.index == ix && n.ip == gw && n.state == "permanent")
            .and_then(|n| n.mac);
        let wrong = [0x02, 0xde, 0xad, 0xbe, 0xef, 0x06];
        crate::nl::add_permanent_neighbour(h.handle(), ix, gw, &wrong)
            .await
            .map_err(|e| nl_error(pod, format!("adding NDP entry {gw}"), e))?;
        Ok(vec![Undo::Neighbour6 {
            host: pod.clone(),
            ifname,
            ip: gw,
            mac: before,
        }])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtuBelowIpv6Minimum {
    pub pod: String,
}

impl Breakage for MtuBelowIpv6Minimum {
    const KIND: Kind = Kind {
        name: "mtu-below-ipv6-minimum",
        params: &[POD],
        description: "the pod's eth0 MTU to 1200, under IPv6's 1280: the kernel turns IPv6 off on it (its IPv6 address, routes and NDP entries go); IPv4 works",
        component: "mtu",
        example: "mtu-below-ipv6-minimum:pod=pod-a",
    };
    /// The kernel drops the addresses for good: another fault that raises the MTU again (a
    /// pod-side MTU change) leaves the pod without its IPv6 address, rightly blamed on it.
    const ALSO_BLAMED_AS: &'static [Component] = &[Component::Address];

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("pod", &self.pod, "pod")?;
        dual(c, "pod", &self.pod)
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        let pod = &self.pod;
        let (_, _, ifname) = pod_sides(lab, pod)?;
        let h = lab.host(pod)?;
        let link = live_link(h, &ifname).await?;
        let ix = link.index;
        // What IPv6 loses with the interface: put back after the MTU (undone in reverse).
        let addrs: Vec<_> = nl6::addresses6(h.handle())
            .await
            .map_err(|e| nl_error(pod, "listing IPv6 addresses", e))?
            .into_iter()
            .filter(|a| a.index == ix && !a.is_link_local())
            .collect();
        let routes: Vec<_> = nl6::added_routes6(h.handle(), Some(ix))
            .await
            .map_err(|e| nl_error(pod, "listing IPv6 routes", e))?
            .into_iter()
            .map(|m| (m, ifname.clone()))
            .collect();
        let neigh: Vec<_> = nl6::neighbours6(h.handle())
            .await
            .map_err(|e| nl_error(pod, "listing NDP entries", e))?
            .into_iter()
            .filter(|n| n.index == ix && n.state == "permanent")
            .collect();
        let mut log = vec![Undo::Restore {
            host: pod.clone(),
            routes,
            neighbours: Vec::new(),
            fdb: Vec::new(),
        }];
        for n in neigh {
            log.push(Undo::Neighbour6 {
                host: pod.clone(),
                ifname: ifname.clone(),
                ip: n.ip,
                mac: n.mac,
            });
        }
        for a in addrs {
            log.push(Undo::Address6 {
                host: pod.clone(),
                ifname: ifname.clone(),
                net: a.net,
            });
        }
        log.push(Undo::LinkMtu {
            host: pod.clone(),
            ifname: ifname.clone(),
            mtu: link.mtu,
        });
        crate::nl::set_mtu(h.handle(), ix, 1200)
            .await
            .map_err(|e| nl_error(pod, format!("setting {ifname}'s MTU"), e))?;
        Ok(log)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardDropPolicy6 {
    pub node: String,
}

impl Breakage for ForwardDropPolicy6 {
    const KIND: Kind = Kind {
        name: "forward-drop-policy6",
        params: &[NODE],
        description: "table ip6 filter, chain FORWARD: policy drop (ip6tables -P FORWARD DROP): IPv6 is not forwarded, IPv4 is",
        component: "filter",
        example: "forward-drop-policy6:node=node1",
    };

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("node", &self.node, "node")?;
        dual(c, "node", &self.node)
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        add_table(
            lab,
            &self.node,
            "ip6",
            "filter",
            "table ip6 filter {\n chain FORWARD {\n  type filter hook forward priority 0; policy drop;\n }\n}\n",
        )
        .await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteVia6 {
    pub host: String,
    pub to: String,
    pub via: String,
}

impl Breakage for RouteVia6 {
    const KIND: Kind = Kind {
        name: "route-via6",
        params: &[
            ("host", "any dual-stack host"),
            ("to", "an IPv6 destination CIDR"),
            ("via", "an IPv6 gateway address"),
        ],
        description: "replace the host's IPv6 route to a network by one via another gateway (say, to make an IPv6 path asymmetric)",
        component: "route",
        example: "route-via6:host=node1,to=fd00:10:244:2::/64,via=2001:db8::2",
    };

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("host", &self.host, "host")?;
        dual(c, "host", &self.host)?;
        self.to.parse::<ipnet::Ipv6Net>().map_err(|_| {
            perr(
                "to",
                format!("\"{}\" is not an IPv6 CIDR", self.to),
                "write a network such as \"fd00:10:244:2::/64\"",
            )
        })?;
        self.via.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| {
            perr(
                "via",
                format!("\"{}\" is not an IPv6 address", self.via),
                "write an address such as \"2001:db8::2\"",
            )
        })
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        let host = &self.host;
        let to = self.to.parse::<ipnet::Ipv6Net>().expect("checked").trunc();
        let via: Ipv6Addr = self.via.parse().expect("checked");
        let h = lab.host(host)?;
        let addrs = nl6::addresses6(h.handle())
            .await
            .map_err(|e| nl_error(host, "listing IPv6 addresses", e))?;
        if addrs.iter().any(|a| a.net.addr() == via) {
            // The kernel refuses an IPv6 route via the host's own address (EINVAL; IPv4 takes it).
            return Err(Error::NotApplicable(format!(
                "{via} is {host}'s own address: a route cannot go via it"
            )));
        }
        let on = addrs
            .iter()
            .find(|a| {
                !a.is_link_local() && a.net.prefix_len() < 128 && a.net.trunc().contains(&via)
            })
            .ok_or_else(|| {
                Error::NotApplicable(format!(
                    "no interface of {host} is on the same IPv6 network as {via}"
                ))
            })?;
        let dev = ifname_of(h, on.index).await?;
        let old: Vec<_> = nl6::routes_raw6(h.handle())
            .await
            .map_err(|e| nl_error(host, "listing IPv6 routes", e))?
            .into_iter()
            .filter(|m| nl6::parse_route6(m).is_some_and(|r| r.dst == to))
            .collect();
        let what = format!("{to} via {via}");
        let add = nl6::add_route6(h.handle(), to, Some(via), on.index, false);
        Ok(vec![
            swap_routes(h, old, &what, add).await?,
            Undo::DeleteRoute6 {
                host: host.clone(),
                dst: to,
                gateway: Some(via),
                ifname: dev,
            },
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrictRpFilter6 {
    pub node: String,
}

impl Breakage for StrictRpFilter6 {
    const KIND: Kind = Kind {
        name: "strict-rp-filter6",
        params: &[NODE],
        description: "IPv6 reverse-path filtering as firewalld's IPv6_rpfilter does it (IPv6 has no rp_filter sysctl): an inet prerouting chain drops IPv6 packets whose route back to their source leaves by another interface",
        component: "filter",
        example: "strict-rp-filter6:node=node2",
    };

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("node", &self.node, "node")?;
        dual(c, "node", &self.node)
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        // firewalld's own table and rule (neighbour discovery is let through first, as it does).
        add_table(
            lab,
            &self.node,
            "inet",
            "firewalld",
            "table inet firewalld {\n chain filter_PREROUTING {\n  type filter hook prerouting priority filter + 10; policy accept;\n  icmpv6 type { nd-router-advert, nd-neighbor-solicit } accept\n  meta nfproto ipv6 fib saddr . mark . iif oif missing drop\n }\n}\n",
        )
        .await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicateAddress6 {
    pub pod: String,
    pub of: String,
}

impl Breakage for DuplicateAddress6 {
    const KIND: Kind = Kind {
        name: "duplicate-address6",
        params: &[
            POD,
            ("of", "a pod on the same bridge whose IPv6 address the pod claims"),
        ],
        description: "the pod also holds the other pod's IPv6 address (an IPAM double booking); the other pod's address is then re-added with DAD on, which fails: it no longer uses it",
        component: "address",
        example: "duplicate-address6:pod=pod-b,of=pod-a",
    };

    fn check(&self, c: &Checker) -> std::result::Result<(), ParamError> {
        c.role("pod", &self.pod, "pod")?;
        c.role("of", &self.of, "pod")?;
        dual(c, "pod", &self.pod)?;
        dual(c, "of", &self.of)?;
        let node = |p: &str| c.t.host(p).and_then(|h| h.as_pod()).map(|p| p.node.clone());
        if self.pod == self.of || node(&self.pod) != node(&self.of) || !c.t.has_bridge() {
            return Err(perr(
                "of",
                format!(
                    "{} and {} must be two pods on one bridge (DAD asks the link)",
                    self.pod, self.of
                ),
                "name another pod of the same node",
            ));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> Result<Vec<Undo>> {
        let (pod, of) = (&self.pod, &self.of);
        let (_, _, pif) = pod_sides(lab, pod)?;
        let (_, _, vif) = pod_sides(lab, of)?;
        let v = lab.host(of)?;
        let vix = v.index(&vif).await?;
        let net = nl6::addresses6(v.handle())
            .await
            .map_err(|e| nl_error(of, "listing IPv6 addresses", e))?
            .into_iter()
            .find(|a| a.index == vix && !a.is_link_local() && !a.dadfailed)
            .map(|a| a.net)
            .ok_or_else(|| Error::NotApplicable(format!("{of} holds no IPv6 address")))?;
        let routes: Vec<_> = nl6::added_routes6(v.handle(), Some(vix))
            .await
            .map_err(|e| nl_error(of, "listing IPv6 routes", e))?
            .into_iter()
            .map(|m| (m, vif.clone()))
            .collect();
        // Undone in reverse: the claimant lets go, the failed address goes, DAD is as it was,
        // the address comes back without DAD, and any route it took with it.
        let mut log = vec![
            Undo::Restore {
                host: of.clone(),
                routes,
                neighbours: Vec::new(),
                fdb: Vec::new(),
            },
            Undo::Address6 {
                host: of.clone(),
                ifname: vif.clone(),
                net,
            },
        ];
        let p = lab.host(pod)?;
        let pix = p.index(&pif).await?;
        crate::nl6::add_address6(p.handle(), pix, net)
            .await
            .map_err(|e| nl_error(pod, format!("adding {net} to {pif}"), e))?;
        let claim = Undo::DelAddress6 {
            host: pod.clone(),
            ifname: pif,
            net,
        };
        log.extend(
            set_sysctls(
                lab,
                of,
                vec![(format!("net/ipv6/conf/{vif}/accept_dad"), "1".into())],
            )
            .await?,
        );
        log.push(Undo::DelAddress6 {
            host: of.clone(),
            ifname: vif.clone(),
            net,
        });
        log.push(claim);
        nl6::del_address6(v.handle(), vix, net)
            .await
            .map_err(|e| nl_error(of, format!("removing {net}"), e))?;
        v.handle()
            .address()
            .add(vix, std::net::IpAddr::V6(net.addr()), net.prefix_len())
            .execute()
            .await
            .map_err(|e| nl_error(of, format!("adding {net} with DAD"), e))?;
        // DAD takes a retransmission interval (1 s) per probe it sends.
        for _ in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let failed = nl6::addresses6(v.handle())
                .await
                .map_err(|e| nl_error(of, "listing IPv6 addresses", e))?
                .iter()
                .any(|a| a.index == vix && a.net == net && a.dadfailed);
            if failed {
                return Ok(log);
            }
        }
        // Heal what was done before saying it did not take.
        let mut undo_failed = None;
        for u in log.into_iter().rev() {
            if let Err(e) = u.apply(lab).await {
                undo_failed.get_or_insert(e);
            }
        }
        Err(Error::other(format!(
            "{of}: duplicate address detection of {net} did not fail within 4 s{}",
            undo_failed
                .map(|e| format!(" (and undoing it failed: {e})"))
                .unwrap_or_default()
        )))
    }
}

/// The IPv6 gateway a pod's node gives it.
fn pod_gateway6(lab: &Lab, pod: &str) -> Result<Ipv6Addr> {
    let t = lab.topology();
    t.host(pod)
        .and_then(|h| h.as_pod())
        .and_then(|p| t.host(&p.node))
        .and_then(|n| n.as_node())
        .and_then(|n| n.v6)
        .map(|v| v.gateway)
        .ok_or_else(|| Error::NotApplicable(format!("{pod} has no IPv6 gateway")))
}
