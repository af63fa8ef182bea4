//! Reading kube-proxy's live nftables rules on a node, in either family (`table ip kube-proxy`,
//! `table ip6 kube-proxy`, laid out alike): where a Service's address is translated to, or why
//! it is not. Both walks ask it; neither trusts the fixture for it.

use std::net::IpAddr;

use crate::error::Result;
use crate::lab::kube_proxy::{service_chain, KUBE_PROXY_TABLE};
use crate::lab::Lab;
use crate::topology::k8s::Service;

/// What kube-proxy's live table says about a Service on one node.
pub(crate) enum Translation<A> {
    /// The node has no kube-proxy table at all.
    NoTable,
    /// The table is there, but holds no rule at all (flushed).
    Flushed,
    /// No rule sends the Service's address anywhere.
    NoRule,
    /// The Service is rejected: no endpoints.
    Rejected,
    /// Dropped: a traffic policy of Local, and no endpoint on the node.
    NoLocal,
    /// DNAT to these (address, port) endpoints.
    Endpoints(Vec<(A, u16)>),
}

/// The text of kube-proxy's table of one family on `node` (`ip` or `ip6`); None when missing.
pub(crate) fn kube_proxy_text(
    lab: &Lab,
    node: &str,
    family: &'static str,
) -> Result<Option<String>> {
    let h = lab.host(node)?;
    let r =
        h.ns.run(move || {
            crate::tools::run_tool("nft", &["list", "table", family, KUBE_PROXY_TABLE], None)
        })
        .map_err(|e| crate::Error::io(format!("{node}: nft"), e))?;
    Ok(r.ok())
}

/// Lines of one chain of an `nft list table` text.
pub(crate) fn chain<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("chain {name} {{");
    let mut out = Vec::new();
    let mut inside = false;
    for l in text.lines() {
        let l = l.trim();
        if l == head {
            inside = true;
            continue;
        }
        if inside {
            if l == "}" {
                break;
            }
            if !l.is_empty() && !l.starts_with("type ") {
                out.push(l);
            }
        }
    }
    out
}

/// Whether the table holds any rule (a flushed one keeps its chains and sets).
fn has_rules(text: &str) -> bool {
    let mut in_chain = false;
    for l in text.lines().map(str::trim) {
        if l.starts_with("chain ") {
            in_chain = true;
        } else if l == "}" {
            in_chain = false;
        } else if in_chain && !l.is_empty() && !l.starts_with("type ") {
            return true;
        }
    }
    false
}

/// How kube-proxy's live table on a node translates the Service at `addr:port` — its
/// ClusterIP, or with `nodeport` the address and port of its external chain's rule (a NodePort
/// at the node's address, a load balancer's address). `outside`: the NodePort's client is
/// neither the node nor one of its pods, so an `externalTrafficPolicy: Local` Service sends it
/// to the node's own endpoints.
pub(crate) fn translation<A: Into<IpAddr> + Copy + std::str::FromStr + PartialEq>(
    text: Option<&str>,
    s: &Service,
    (addr, port): (A, u16),
    nodeport: bool,
    outside: bool,
) -> Translation<A> {
    let Some(text) = text else {
        return Translation::NoTable;
    };
    if !has_rules(text) {
        return Translation::Flushed;
    }
    let p = s.protocol.l4_name();
    let ip: IpAddr = addr.into();
    let kw = if ip.is_ipv4() { "ip" } else { "ip6" };
    let key = format!("{kw} daddr {ip} {p} dport {port}");
    let services = chain(text, "services");
    let Some(rule) = services.iter().find(|l| l.starts_with(&key)) else {
        let filtered: Vec<&str> = ["filter-forward", "filter-output", "filter-input"]
            .iter()
            .flat_map(|c| chain(text, c))
            .filter(|l| l.starts_with(&key))
            .collect();
        return match filtered.first() {
            Some(l) if l.contains("has no local endpoints") => Translation::NoLocal,
            Some(_) => Translation::Rejected,
            None => Translation::NoRule,
        };
    };
    let mut target = rule
        .split("goto ")
        .nth(1)
        .and_then(|x| x.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    if nodeport {
        // external-<chain> marks for masquerade, then goes to the Service's chain; with
        // externalTrafficPolicy Local, to the node's own endpoints (none: nothing DNATs it,
        // and the node's input drops it).
        target = service_chain(s);
        if s.external_local && outside {
            target = format!("{target}-external-local");
            if chain(text, &target).is_empty() {
                return Translation::NoLocal;
            }
        }
    }
    Translation::Endpoints(endpoints(text, &target, p))
}

/// The (address, port) pairs the endpoint chains that `target` goes to DNAT to, for the
/// transport `p` (`dnat to 10.244.1.3:8080`, `dnat to [fd00::3]:8080`).
fn endpoints<A: std::str::FromStr + PartialEq + Copy>(
    text: &str,
    target: &str,
    p: &str,
) -> Vec<(A, u16)> {
    let mut eps = Vec::new();
    for l in chain(text, target) {
        for part in l.split("goto ").skip(1) {
            let ec = part.split([',', ' ', '}']).next().unwrap_or_default();
            // An endpoint chain may translate other protocols too (kube-dns: udp and tcp).
            let ours = |l: &&&str| {
                !l.contains("meta l4proto ") || l.contains(&format!("meta l4proto {p} "))
            };
            for el in chain(text, ec).iter().filter(ours) {
                let Some(to) = el.split("dnat to ").nth(1) else {
                    continue;
                };
                let to = to.split_whitespace().next().unwrap_or_default();
                let Some((ip, port)) = to.rsplit_once(':') else {
                    continue;
                };
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                if let (Ok(ip), Ok(port)) = (ip.parse::<A>(), port.parse::<u16>()) {
                    // ClientIP affinity names each endpoint chain twice.
                    if !eps.contains(&(ip, port)) {
                        eps.push((ip, port));
                    }
                }
            }
        }
    }
    eps
}
