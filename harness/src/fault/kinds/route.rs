//! Routes: a pod's default route, a host's route to a network deleted or sent elsewhere.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::ParamError;
use super::super::kind::{Breakage, Kind, POD};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::error::{nl_error, Error};
use crate::lab::Lab;
use crate::nl::{self as netlink};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletePodRoute {
    pub pod: String,
}

impl Breakage for DeletePodRoute {
    const KIND: Kind = Kind {
        name: "delete-pod-route",
        params: &[POD],
        description: "delete the pod's default route",
        component: "route",
        example: "delete-pod-route:pod=pod-a",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { pod } = self;
        c.role("pod", pod, "pod")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { pod } = self;
        let h = lab.host(pod)?;
        let routes = routes_to(h, "0.0.0.0/0".parse().expect("default")).await?;
        if routes.is_empty() {
            return Err(Error::NotApplicable(format!("{pod} has no default route")));
        }
        for m in &routes {
            netlink::del_route_msg(h.handle(), m.clone())
                .await
                .map_err(|e| nl_error(pod, "deleting the default route", e))?;
        }
        Ok(vec![super::super::ops::readd_routes(h, routes).await?])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteVia {
    pub host: String,
    pub to: String,
    pub via: String,
}

impl Breakage for RouteVia {
    const KIND: Kind = Kind { name: "route-via", params: &[("host", "any host"), ("to", "a destination CIDR"), ("via", "a gateway address")], description: "replace the host's route to a network by one via another gateway (say, to make a path asymmetric)", component: "route", example: "route-via:host=node1,to=10.244.2.0/24,via=203.0.113.10" };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { host, to, via } = self;
        c.role("host", host, "host")?;
        c.cidr("to", to)?;
        c.addr("via", via).map(|_| ())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { host, to, via } = self;
        let to: Ipv4Net = to.parse::<Ipv4Net>().expect("checked").trunc();
        let via: Ipv4Addr = via.parse().expect("checked");
        let h = lab.host(host)?;
        let dev = iface_reaching(h, via).await?.ok_or_else(|| {
            Error::NotApplicable(format!(
                "no interface of {host} is on the same network as {via}"
            ))
        })?;
        let old = routes_to(h, to).await?;
        let ix = h.index(&dev).await?;
        let what = format!("{to} via {via}");
        let add = netlink::add_route(h.handle(), to, Some(via), ix);
        Ok(vec![
            swap_routes(h, old, &what, add).await?,
            Undo::DeleteRoute {
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
pub struct DeleteRoute {
    pub host: String,
    pub to: String,
}

impl Breakage for DeleteRoute {
    const KIND: Kind = Kind {
        name: "delete-route",
        params: &[("host", "any host"), ("to", "a destination CIDR")],
        description: "delete the host's route to a network (host-gw: a remote pod CIDR)",
        component: "route",
        example: "delete-route:host=node1,to=10.244.2.0/24",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { host, to } = self;
        c.role("host", host, "host")?;
        c.cidr("to", to).map(|_| ())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { host, to } = self;
        let to: Ipv4Net = to.parse::<Ipv4Net>().expect("checked").trunc();
        let h = lab.host(host)?;
        let routes = routes_to(h, to).await?;
        if routes.is_empty() {
            return Err(Error::NotApplicable(format!("{host} has no route to {to}")));
        }
        for m in &routes {
            netlink::del_route_msg(h.handle(), m.clone())
                .await
                .map_err(|e| nl_error(host, format!("deleting the route to {to}"), e))?;
        }
        Ok(vec![super::super::ops::readd_routes(h, routes).await?])
    }
}
