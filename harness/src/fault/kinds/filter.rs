//! Packet filters: a FORWARD drop policy, reject and drop rules, random loss (nft numgen).

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::{perr, ParamError};
use super::super::kind::{Breakage, Kind, NODE};
use super::super::ops::*;
use super::super::undo::Undo;
use crate::lab::Lab;
use crate::topology::Proto;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardDropPolicy {
    pub node: String,
}

impl Breakage for ForwardDropPolicy {
    const KIND: Kind = Kind {
        name: "forward-drop-policy",
        params: &[NODE],
        description: "table ip filter, chain FORWARD: policy drop, as Docker sets it",
        component: "filter",
        example: "forward-drop-policy:node=node1",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        c.role("node", node, "node")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node } = self;
        forward_drop_policy(lab, node).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftReject {
    pub node: String,
    pub from: String,
    pub proto: Option<Proto>,
    pub port: Option<u16>,
}

impl Breakage for NftReject {
    const KIND: Kind = Kind {
        name: "nft-reject",
        params: &[
            NODE,
            ("from", "a host whose traffic is rejected"),
            ("proto", "icmp, tcp or udp (optional)"),
            ("port", "a destination port (optional)"),
        ],
        description: "reject the host's traffic in the node's input and forward hooks",
        component: "filter",
        example: "nft-reject:node=node1,from=pod-a,proto=tcp,port=80",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self {
            node,
            from,
            port,
            proto,
        } = self;
        c.role("node", node, "node")?;
        c.role("from", from, "host")?;
        if port.is_some() && matches!(proto, None | Some(Proto::Icmp)) {
            return Err(perr(
                "port",
                "a port needs proto = \"tcp\" or \"udp\"",
                "add proto = \"tcp\"",
            ));
        }
        if *port == Some(0) {
            return Err(perr("port", "port 0 is not a port", "use 1..65535"));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self {
            node,
            from,
            proto,
            port,
        } = self;
        let src = t.host(from).map(|h| h.address()).expect("checked");
        let mut m = format!("ip saddr {src}");
        match (proto, port) {
            (Some(p), Some(port)) => m.push_str(&format!(" {p} dport {port}")),
            (Some(p), None) => m.push_str(&format!(" meta l4proto {p}")),
            _ => {}
        }
        let table = "filter";
        let script = format!(
            "table inet {table} {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  {m} reject\n }}\n \
             chain forward {{\n  type filter hook forward priority 0; policy accept;\n  {m} reject\n }}\n}}\n"
        );
        add_table(lab, node, "inet", table, &script).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropInSecondTable {
    pub node: String,
    pub from: String,
}

impl Breakage for DropInSecondTable {
    const KIND: Kind = Kind { name: "drop-in-second-table", params: &[NODE, ("from", "a host whose traffic is dropped")], description: "one table's forward chain accepts everything, a second table's drops the host's traffic", component: "filter", example: "drop-in-second-table:node=node1,from=pod-a" };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, from } = self;
        c.role("node", node, "node")?;
        c.role("from", from, "host")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { node, from } = self;
        let src = t.host(from).map(|h| h.address()).expect("checked");
        let mut log = add_table(
            lab,
            node,
            "inet",
            "firewall",
            "table inet firewall {\n chain forward {\n  type filter hook forward priority -10; policy accept;\n  accept\n }\n}\n",
        )
        .await?;
        log.extend(
            add_table(
                lab,
                node,
                "inet",
                "security",
                &format!(
                    "table inet security {{\n chain forward {{\n  type filter hook forward priority 0; policy accept;\n  ip saddr {src} drop\n }}\n}}\n"
                ),
            )
            .await?,
        );
        Ok(log)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketLoss {
    pub host: String,
    pub interface: String,
    pub percent: u8,
}

impl Breakage for PacketLoss {
    const KIND: Kind = Kind {
        name: "packet-loss",
        params: &[
            ("host", "any host"),
            ("interface", "an interface of the host"),
            ("percent", "1..100"),
        ],
        description: "drop that percentage of packets leaving the interface at random (nft numgen)",
        component: "filter",
        example: "packet-loss:host=node1,interface=eth0,percent=30",
    };

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self {
            host,
            interface,
            percent,
        } = self;
        c.role("host", host, "host")?;
        c.iface(host, interface)?;
        if !(1..=100).contains(percent) {
            return Err(perr(
                "percent",
                format!("{percent}% is out of range"),
                "use 1..100",
            ));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self {
            host,
            interface,
            percent,
        } = self;
        // `numgen random mod 100` is 0..99: nft refuses `< 100`, so 100% drops every packet.
        let lost = match percent {
            100 => String::new(),
            p => format!("numgen random mod 100 < {p} "),
        };
        add_table(
            lab,
            host,
            "inet",
            "shaping",
            &format!(
                "table inet shaping {{\n chain postrouting {{\n  type filter hook postrouting priority -150; policy accept;\n  oifname \"{interface}\" {lost}drop\n }}\n}}\n"
            ),
        )
        .await
    }
}
