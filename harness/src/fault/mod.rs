//! Faults: one variant per kind of breakage, each with an inject that returns a [`Guard`] knowing
//! how to heal. Heal restores exactly the state before (names, MACs, addresses, routes,
//! neighbours, sysctls, rule positions); faults compose, and heal in reverse order.
//!
//! Faults read the live lab, not what the harness remembers building: `delete-masquerade` finds
//! masquerade rules by content, whoever wrote them (nft's native `masquerade` or iptables-nft's xt
//! `MASQUERADE` target).

use std::fmt;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{nl, Error, Result};
use crate::lab::Lab;
use crate::netns;
use crate::nft;
use crate::nl::{self as netlink, Mac, VethSpec};
use crate::topology::Topology;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Delete a pod's veth pair (the node side; the pod side goes with it).
    DeleteVeth { pod: String },
    /// Set the node side of a pod's veth administratively down.
    VethDown { pod: String },
    /// `sysctl net.ipv4.ip_forward=0` on a node.
    DisableIpForward { node: String },
    /// Delete every masquerade rule in a node's ruleset.
    DeleteMasquerade { node: String },
}

/// The fault kinds, for help texts.
pub const KINDS: [&str; 4] = [
    "delete-veth",
    "veth-down",
    "disable-ip-forward",
    "delete-masquerade",
];

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::DeleteVeth { pod } => write!(f, "delete-veth pod={pod}"),
            Fault::VethDown { pod } => write!(f, "veth-down pod={pod}"),
            Fault::DisableIpForward { node } => write!(f, "disable-ip-forward node={node}"),
            Fault::DeleteMasquerade { node } => write!(f, "delete-masquerade node={node}"),
        }
    }
}

/// What a fault's parameters got wrong: the field, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub field: &'static str,
    pub message: String,
    pub help: String,
}

impl Fault {
    /// Checks the fault's parameters against a topology (names exist and have the right role).
    pub fn check(&self, t: &Topology) -> std::result::Result<(), ParamError> {
        let (field, name, want) = match self {
            Fault::DeleteVeth { pod } | Fault::VethDown { pod } => ("pod", pod, "pod"),
            Fault::DisableIpForward { node } | Fault::DeleteMasquerade { node } => {
                ("node", node, "node")
            }
        };
        let of_role: Vec<&str> = t
            .hosts
            .iter()
            .filter(|h| h.role_name() == want)
            .map(|h| h.name.as_str())
            .collect();
        let help = if of_role.is_empty() {
            format!("the fixture {} has no {want}", t.name)
        } else {
            format!("{want}s in {}: {}", t.name, of_role.join(", "))
        };
        match t.host(name) {
            None => Err(ParamError {
                field,
                message: format!("unknown host \"{name}\""),
                help,
            }),
            Some(h) if h.role_name() != want => Err(ParamError {
                field,
                message: format!(
                    "{name} is a{} {}, not a {want}",
                    if h.role_name() == "external" { "n" } else { "" },
                    h.role_name()
                ),
                help,
            }),
            Some(_) => Ok(()),
        }
    }

    /// The host the fault changes.
    pub fn host<'a>(&'a self, t: &'a Topology) -> &'a str {
        match self {
            Fault::DeleteVeth { pod } | Fault::VethDown { pod } => t
                .host(pod)
                .and_then(|h| h.as_pod())
                .map(|p| p.node.as_str())
                .unwrap_or(pod),
            Fault::DisableIpForward { node } | Fault::DeleteMasquerade { node } => node,
        }
    }

    pub async fn inject(&self, lab: &Lab) -> Result<Guard> {
        self.check(lab.topology())
            .map_err(|e| Error::NotFound(format!("{self}: {}; {}", e.message, e.help)))?;
        let undo = match self {
            Fault::DeleteVeth { pod } => delete_veth(lab, pod).await?,
            Fault::VethDown { pod } => veth_down(lab, pod).await?,
            Fault::DisableIpForward { node } => disable_ip_forward(lab, node).await?,
            Fault::DeleteMasquerade { node } => delete_masquerade(lab, node).await?,
        };
        Ok(Guard {
            fault: self.clone(),
            undo,
        })
    }
}

/// An injected fault; `heal` puts back exactly what inject changed.
#[must_use = "a fault that is never healed leaves the lab broken"]
pub struct Guard {
    pub fault: Fault,
    undo: Undo,
}

enum Undo {
    Veth(Box<VethSnapshot>),
    LinkAdmin {
        host: String,
        ifname: String,
        was_up: bool,
    },
    Sysctls {
        host: String,
        values: Vec<(String, String)>,
    },
    Nft(NftUndo),
}

impl Guard {
    pub async fn heal(self, lab: &Lab) -> Result<()> {
        match self.undo {
            Undo::Veth(s) => (*s).restore(lab).await,
            Undo::LinkAdmin {
                host,
                ifname,
                was_up,
            } => {
                let h = lab.host(&host)?;
                let ix = h.index(&ifname).await?;
                netlink::set_up(h.handle(), ix, was_up)
                    .await
                    .map_err(|e| nl(&host, format!("setting {ifname} up"), e))?;
                if was_up {
                    let peers = lab
                        .plan()
                        .host(&host)
                        .and_then(|p| p.iface(&ifname))
                        .map(|i| i.kind.clone());
                    lab.wait_links_up(&host, std::slice::from_ref(&ifname))
                        .await?;
                    if let Some(crate::lab::IfaceKind::Veth {
                        peer_host,
                        peer_name,
                        ..
                    }) = peers
                    {
                        lab.wait_links_up(&peer_host, &[peer_name]).await?;
                    }
                }
                Ok(())
            }
            Undo::Sysctls { host, values } => {
                let h = lab.host(&host)?;
                h.ns.run_async(move || {
                    for (k, v) in &values {
                        netns::write_sysctl(k, v)?;
                    }
                    Ok::<(), std::io::Error>(())
                })
                .await
                .and_then(|r| r)
                .map_err(|e| Error::io(format!("{host}: restoring sysctls"), e))
            }
            Undo::Nft(u) => u.restore(lab).await,
        }
    }
}

/// Everything needed to rebuild a deleted veth pair and what lived on it.
struct VethSnapshot {
    node: String,
    pod: String,
    host_side: LinkSnap,
    pod_side: LinkSnap,
    master: Option<String>,
}

struct LinkSnap {
    name: String,
    mac: Mac,
    mtu: u32,
    up: bool,
    addresses: Vec<Ipv4Net>,
    /// (destination, gateway) of routes through the link, kernel-made routes excluded.
    routes: Vec<(Ipv4Net, Option<Ipv4Addr>)>,
    neighbours: Vec<(Ipv4Addr, Vec<u8>)>,
}

async fn snap_link(lab: &Lab, host: &str, ifname: &str) -> Result<LinkSnap> {
    let h = lab.host(host)?;
    let hd = h.handle();
    let l = netlink::link_by_name(hd, ifname)
        .await
        .map_err(|e| nl(host, format!("reading {ifname}"), e))?
        .ok_or_else(|| Error::NotApplicable(format!("{host} has no interface {ifname}")))?;
    let mac: Mac = l
        .mac
        .as_deref()
        .and_then(|m| m.try_into().ok())
        .ok_or_else(|| Error::other(format!("{host}: {ifname} has no MAC address")))?;
    let addresses = netlink::addresses(hd)
        .await
        .map_err(|e| nl(host, "listing addresses", e))?
        .into_iter()
        .filter(|a| a.index == l.index)
        .map(|a| a.net)
        .collect();
    let routes = netlink::routes(hd)
        .await
        .map_err(|e| nl(host, "listing routes", e))?
        .into_iter()
        .filter(|r| {
            r.oif == Some(l.index)
                && r.table == 254
                && r.protocol != "kernel"
                && r.kind == "unicast"
        })
        .map(|r| (r.dst, r.gateway))
        .collect();
    let neighbours = netlink::neighbours(hd)
        .await
        .map_err(|e| nl(host, "listing neighbours", e))?
        .into_iter()
        .filter(|n| n.index == l.index && n.state == "permanent")
        .filter_map(|n| Some((n.ip, n.mac?)))
        .collect();
    Ok(LinkSnap {
        name: ifname.to_string(),
        mac,
        mtu: l.mtu,
        up: l.admin_up,
        addresses,
        routes,
        neighbours,
    })
}

fn pod_sides(lab: &Lab, pod: &str) -> Result<(String, String, String)> {
    let p = lab
        .topology()
        .host(pod)
        .and_then(|h| h.as_pod())
        .ok_or_else(|| Error::NotFound(format!("{pod} is not a pod")))?;
    Ok((p.node.clone(), p.host_veth.clone(), p.ifname.clone()))
}

async fn delete_veth(lab: &Lab, pod: &str) -> Result<Undo> {
    let (node, host_veth, ifname) = pod_sides(lab, pod)?;
    let host_side = snap_link(lab, &node, &host_veth).await?;
    let pod_side = snap_link(lab, pod, &ifname).await?;
    let n = lab.host(&node)?;
    let l = netlink::link_by_name(n.handle(), &host_veth)
        .await
        .map_err(|e| nl(&node, format!("reading {host_veth}"), e))?
        .ok_or_else(|| Error::NotApplicable(format!("{node} has no {host_veth}")))?;
    let master = match l.master {
        Some(m) => netlink::links(n.handle())
            .await
            .map_err(|e| nl(&node, "listing links", e))?
            .into_iter()
            .find(|x| x.index == m)
            .map(|x| x.name),
        None => None,
    };
    netlink::del_link(n.handle(), l.index)
        .await
        .map_err(|e| nl(&node, format!("deleting {host_veth}"), e))?;
    Ok(Undo::Veth(Box::new(VethSnapshot {
        node,
        pod: pod.to_string(),
        host_side,
        pod_side,
        master,
    })))
}

impl VethSnapshot {
    async fn restore(self, lab: &Lab) -> Result<()> {
        let n = lab.host(&self.node)?;
        let p = lab.host(&self.pod)?;
        let master = match &self.master {
            Some(m) => Some(n.index(m).await?),
            None => None,
        };
        netlink::add_veth(
            n.handle(),
            VethSpec {
                name: &self.host_side.name,
                mac: self.host_side.mac,
                mtu: Some(self.host_side.mtu),
                master,
                up: self.host_side.up,
                peer_name: &self.pod_side.name,
                peer_mac: self.pod_side.mac,
                peer_mtu: Some(self.pod_side.mtu),
                peer_ns: &p.ns,
            },
        )
        .await
        .map_err(|e| {
            nl(
                &self.node,
                format!("re-creating {}", self.host_side.name),
                e,
            )
        })?;
        for (host, side) in [(&self.node, &self.host_side), (&self.pod, &self.pod_side)] {
            let h = lab.host(host)?;
            let ix = h.index(&side.name).await?;
            let hd = h.handle();
            if side.up {
                netlink::set_up(hd, ix, true)
                    .await
                    .map_err(|e| nl(host, format!("bringing {} up", side.name), e))?;
            }
            for a in &side.addresses {
                netlink::add_address(hd, ix, *a)
                    .await
                    .map_err(|e| nl(host, format!("adding {a} to {}", side.name), e))?;
            }
            for (dst, gw) in &side.routes {
                netlink::add_route(hd, *dst, *gw, ix)
                    .await
                    .map_err(|e| nl(host, format!("adding route {dst}"), e))?;
            }
            for (ip, mac) in &side.neighbours {
                netlink::add_permanent_neighbour(hd, ix, *ip, mac)
                    .await
                    .map_err(|e| nl(host, format!("adding neighbour {ip}"), e))?;
            }
        }
        if self.host_side.up && self.pod_side.up {
            lab.wait_links_up(&self.node, std::slice::from_ref(&self.host_side.name))
                .await?;
            lab.wait_links_up(&self.pod, std::slice::from_ref(&self.pod_side.name))
                .await?;
        }
        Ok(())
    }
}

async fn veth_down(lab: &Lab, pod: &str) -> Result<Undo> {
    let (node, host_veth, _) = pod_sides(lab, pod)?;
    let n = lab.host(&node)?;
    let l = netlink::link_by_name(n.handle(), &host_veth)
        .await
        .map_err(|e| nl(&node, format!("reading {host_veth}"), e))?
        .ok_or_else(|| Error::NotApplicable(format!("{node} has no {host_veth}")))?;
    netlink::set_up(n.handle(), l.index, false)
        .await
        .map_err(|e| nl(&node, format!("setting {host_veth} down"), e))?;
    Ok(Undo::LinkAdmin {
        host: node,
        ifname: host_veth,
        was_up: l.admin_up,
    })
}

async fn disable_ip_forward(lab: &Lab, node: &str) -> Result<Undo> {
    let h = lab.host(node)?;
    let ifnames: Vec<String> = netlink::links(h.handle())
        .await
        .map_err(|e| nl(node, "listing links", e))?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let values =
        h.ns.run_async(move || {
            // Writing ip_forward rewrites every conf.*.forwarding: keep them all to restore.
            let mut before = vec![(
                "net.ipv4.ip_forward".to_string(),
                netns::read_sysctl("net.ipv4.ip_forward")?,
            )];
            for dev in ["all", "default"]
                .into_iter()
                .map(String::from)
                .chain(ifnames)
            {
                let key = format!("net/ipv4/conf/{dev}/forwarding");
                if let Ok(v) = netns::read_sysctl(&key) {
                    before.push((key, v));
                }
            }
            netns::write_sysctl("net.ipv4.ip_forward", "0")?;
            Ok::<_, std::io::Error>(before)
        })
        .await
        .and_then(|r| r)
        .map_err(|e| Error::io(format!("{node}: net.ipv4.ip_forward"), e))?;
    Ok(Undo::Sysctls {
        host: node.to_string(),
        values,
    })
}

struct NftUndo {
    host: String,
    /// Deleted native rules in ruleset order, with their index in the chain before deletion.
    /// (nft 1.0.6 places a JSON `add` by `index` only, not by handle.)
    native: Vec<(nftables::schema::Rule<'static>, usize)>,
    /// iptables-nft tables whose xt rules were deleted: (table, `iptables-restore --noflush`
    /// lines re-inserting each rule at its old position).
    iptables: Vec<(String, Vec<String>)>,
}

async fn delete_masquerade(lab: &Lab, node: &str) -> Result<Undo> {
    let h = lab.host(node)?;
    let set = nft::list(&h.ns, node).await?;
    let mut native = Vec::new();
    let mut doomed = Vec::new();
    let mut xt_tables: Vec<String> = Vec::new();
    let mut index_in_chain: std::collections::HashMap<(String, String, String), usize> =
        Default::default();
    for r in nft::rules(&set) {
        let key = (
            nft::family_name(r.family).to_string(),
            r.table.to_string(),
            r.chain.to_string(),
        );
        let index = index_in_chain.entry(key).or_insert(0);
        if nft::is_masquerade(r) {
            doomed.push(r.clone());
            if nft::uses_xt(r) {
                if r.family != nftables::types::NfFamily::IP {
                    return Err(Error::Unsupported(format!(
                        "{node}: an xt masquerade rule in a {} table cannot be restored",
                        nft::family_name(r.family)
                    )));
                }
                if !xt_tables.contains(&r.table.to_string()) {
                    xt_tables.push(r.table.to_string());
                }
            } else {
                native.push((r.clone(), *index));
            }
        }
        *index += 1;
    }
    if doomed.is_empty() {
        return Err(Error::NotApplicable(format!(
            "{node} has no masquerade rule to delete"
        )));
    }
    let save = |table: String| async move {
        h.ns.run_async(move || run_tool("iptables-nft-save", &["-t", &table], None))
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("{node}: iptables-nft-save"), e))
    };
    let mut saved = Vec::new();
    for t in &xt_tables {
        saved.push((t.clone(), save(t.clone()).await?));
    }
    nft::apply(&h.ns, node, nft::delete_batch(&doomed)).await?;
    let mut iptables = Vec::new();
    for (t, before) in saved {
        let after = save(t.clone()).await?;
        iptables.push((t, reinsert_lines(&before, &after)));
    }
    Ok(Undo::Nft(NftUndo {
        host: node.to_string(),
        native,
        iptables,
    }))
}

/// `-I CHAIN POS SPEC` lines that put back the `-A` rules of `before` missing from `after`.
fn reinsert_lines(before: &str, after: &str) -> Vec<String> {
    let rules = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("-A "))
            .filter_map(|l| l.split_once(' '))
            .map(|(c, spec)| (c.to_string(), spec.to_string()))
            .collect()
    };
    let mut remaining = rules(after);
    let mut pos: std::collections::HashMap<String, usize> = Default::default();
    let mut out = Vec::new();
    for (chain, spec) in rules(before) {
        let p = pos.entry(chain.clone()).or_insert(0);
        *p += 1;
        if let Some(i) = remaining
            .iter()
            .position(|(c, s)| *c == chain && *s == spec)
        {
            remaining.remove(i);
        } else {
            out.push(format!("-I {chain} {p} {spec}"));
        }
    }
    out
}

impl NftUndo {
    async fn restore(self, lab: &Lab) -> Result<()> {
        let h = lab.host(&self.host)?;
        for (table, lines) in self.iptables {
            let host = self.host.clone();
            let input = format!("*{table}\n{}\nCOMMIT\n", lines.join("\n"));
            h.ns.run_async(move || run_tool("iptables-nft-restore", &["--noflush"], Some(&input)))
                .await
                .and_then(|r| r)
                .map_err(|e| Error::io(format!("{host}: iptables-nft-restore"), e))?;
        }
        // In chain order, each rule goes right after the rule now at its old index minus one.
        for (rule, index) in self.native {
            let mut b = nftables::batch::Batch::new();
            b.add_cmd(nft::readd_cmd(&rule, index.checked_sub(1)));
            nft::apply(&h.ns, &self.host, b.to_nftables()).await?;
        }
        Ok(())
    }
}

/// Runs a helper program (iptables-nft-save/-restore) in the calling thread's namespace.
fn run_tool(prog: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<String> {
    use std::io::Write;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                std::io::Error::new(
                    e.kind(),
                    format!("{prog} is missing: install iptables (apt-get install iptables)"),
                )
            } else {
                e
            }
        })?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{prog} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_reject_unknown_fields() {
        let f: Fault = toml::from_str("type = \"delete-veth\"\npod = \"pod-a\"\n").unwrap();
        assert_eq!(
            f,
            Fault::DeleteVeth {
                pod: "pod-a".into()
            }
        );
        assert!(
            toml::from_str::<Fault>("type = \"delete-veth\"\npod = \"pod-a\"\nnode = \"x\"\n")
                .is_err()
        );
        assert!(toml::from_str::<Fault>("type = \"melt-cpu\"\n").is_err());
        assert_eq!(f.to_string(), "delete-veth pod=pod-a");
    }

    #[test]
    fn iptables_rules_go_back_where_they_were() {
        let before = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j A\n-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE\n-A POSTROUTING -j B\n-A X -j MASQUERADE\nCOMMIT\n";
        let after =
            "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j A\n-A POSTROUTING -j B\nCOMMIT\n";
        assert_eq!(
            reinsert_lines(before, after),
            [
                "-I POSTROUTING 2 -s 10.0.0.0/8 -j MASQUERADE",
                "-I X 1 -j MASQUERADE"
            ]
        );
    }
}
