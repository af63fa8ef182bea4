//! What a live lab holds, host by host, as `clab inspect` shows a lab: each host's role, and its
//! interfaces with their state and addresses, read from the kernel (not from the plan).

use serde::Serialize;

use super::live::Lab;
use crate::error::{nl_error, Result};
use crate::nl as netlink;

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    /// node, pod (with its node), external, or switch (the underlay between nodes).
    pub role: String,
    pub interfaces: Vec<IfaceRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IfaceRow {
    pub name: String,
    /// up, down (set down), no-carrier (up, its other end is not), or the kernel's word.
    pub state: String,
    pub mtu: u32,
    pub addresses: Vec<String>,
}

impl Lab {
    /// Every host's interfaces (lo left out), in the lab's host order.
    pub async fn inventory(&self) -> Result<Vec<HostRow>> {
        let rows = futures::future::try_join_all(self.hosts().map(|h| async move {
            let hd = h.handle();
            let links = netlink::links(hd)
                .await
                .map_err(|e| nl_error(&h.name, "listing links", e))?;
            let dump = netlink::address_dump(hd)
                .await
                .map_err(|e| nl_error(&h.name, "listing addresses", e))?;
            let addrs: Vec<_> = dump.iter().filter_map(netlink::parse_addr).collect();
            // IPv6 addresses too (a dual-stack lab), but not the link-local one every link has.
            let addrs6: Vec<_> = dump.iter().filter_map(crate::nl6::parse_addr6).collect();
            let interfaces = links
                .iter()
                .filter(|l| l.name != "lo")
                .map(|l| IfaceRow {
                    name: l.name.clone(),
                    state: state_of(l),
                    mtu: l.mtu,
                    addresses: addrs
                        .iter()
                        .filter(|a| a.index == l.index)
                        .map(|a| a.net.to_string())
                        .chain(
                            addrs6
                                .iter()
                                .filter(|a| a.index == l.index && !a.is_link_local())
                                .map(|a| {
                                    let dad = if a.dadfailed { " (dadfailed)" } else { "" };
                                    format!("{}{dad}", a.net)
                                }),
                        )
                        .collect(),
                })
                .collect();
            Ok::<_, crate::error::Error>(HostRow {
                host: h.name.clone(),
                role: self.role_of(&h.name),
                interfaces,
            })
        }))
        .await?;
        Ok(rows)
    }

    fn role_of(&self, host: &str) -> String {
        match self.topo.host(host) {
            Some(h) => match h.as_pod() {
                Some(p) => format!("pod@{}", p.node),
                None => h.role_name().to_string(),
            },
            None => "switch".to_string(),
        }
    }
}

fn state_of(l: &netlink::Link) -> String {
    match (l.admin_up, l.is_oper_up()) {
        (false, _) => "down".into(),
        (true, true) => "up".into(),
        (true, false) if !l.lower_up => "no-carrier".into(),
        (true, false) => l.oper.clone(),
    }
}

/// The inventory as a table for a terminal.
pub fn render(rows: &[HostRow]) -> String {
    let mut s = format!(
        "{:<12} {:<14} {:<12} {:<10} {:>5}  {}\n",
        "HOST", "ROLE", "INTERFACE", "STATE", "MTU", "ADDRESSES"
    );
    for r in rows {
        let mut first = true;
        for i in &r.interfaces {
            let (h, role) = match first {
                true => (r.host.as_str(), r.role.as_str()),
                false => ("", ""),
            };
            first = false;
            s.push_str(&format!(
                "{h:<12} {role:<14} {:<12} {:<10} {:>5}  {}\n",
                i.name,
                i.state,
                i.mtu,
                i.addresses.join(", ")
            ));
        }
        if first {
            s.push_str(&format!("{:<12} {:<14} (no interface)\n", r.host, r.role));
        }
    }
    s
}
