//! Shaping qdiscs: a tbf rate, netem delay.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::{perr, ParamError};
use super::super::kind::{parse_rate, Breakage, Kind};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::error::Error;
use crate::lab::Lab;
use crate::nl::{self as netlink};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    pub host: String,
    pub interface: String,
    pub rate: String,
}

impl Breakage for Bandwidth {
    const KIND: Kind = Kind {
        name: "bandwidth",
        params: &[
            ("host", "any host"),
            ("interface", "an interface of the host"),
            ("rate", "like 1mbit, 500kbit"),
        ],
        description: "shape the interface's egress with a tbf qdisc",
        component: "link",
        example: "bandwidth:host=node1,interface=eth0,rate=1mbit",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self {
            host,
            interface,
            rate,
        } = self;
        c.role("host", host, "host")?;
        c.iface(host, interface)?;
        parse_rate(rate)
            .map(|_| ())
            .map_err(|m| perr("rate", m, "write a rate such as \"1mbit\" or \"500kbit\""))
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self {
            host,
            interface,
            rate,
        } = self;
        let bits = parse_rate(rate).map_err(Error::other)?;
        let h = lab.host(host)?;
        let l = live_link(h, interface).await?;
        // A burst of 10 ms at the rate (at least two full frames), and 50 ms of queue.
        let burst = ((bits / 8 / 100) as u32).max(2 * (l.mtu + 14));
        let limit = burst + (bits / 8 / 20) as u32;
        netlink::add_tbf(h.handle(), l.index, bits, burst, limit)
            .await
            .map_err(|e| qdisc_error(host, "tbf", e))?;
        Ok(vec![Undo::Qdisc {
            host: host.clone(),
            ifname: interface.clone(),
        }])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    pub host: String,
    pub interface: String,
    pub ms: u32,
}

impl Breakage for Delay {
    const KIND: Kind = Kind { name: "delay", params: &[("host", "any host"), ("interface", "an interface of the host"), ("ms", "milliseconds")], description: "delay the interface's egress (needs netem: reported unsupported where the kernel lacks it)", component: "link", example: "delay:host=node1,interface=eth0,ms=50" };
    const KERNEL_FEATURE: Option<&'static str> = Some("netem qdisc");

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self {
            host,
            interface,
            ms,
        } = self;
        c.role("host", host, "host")?;
        c.iface(host, interface)?;
        if *ms == 0 || *ms > 60_000 {
            return Err(perr(
                "ms",
                format!("{ms} ms is out of range"),
                "use 1..60000",
            ));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self {
            host,
            interface,
            ms,
        } = self;
        let h = lab.host(host)?;
        let l = live_link(h, interface).await?;
        netlink::add_netem(h.handle(), l.index, *ms)
            .await
            .map_err(|e| qdisc_error(host, "netem", e))?;
        Ok(vec![Undo::Qdisc {
            host: host.clone(),
            ifname: interface.clone(),
        }])
    }
}
