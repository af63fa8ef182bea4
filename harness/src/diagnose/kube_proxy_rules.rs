//! Reading kube-proxy's live nftables rules on a node, in either family (`table ip kube-proxy`,
//! `table ip6 kube-proxy`, laid out alike): where a Service's address is translated to, or why
//! it is not. Both walks ask it; neither trusts the fixture for it.

use std::net::IpAddr;

use crate::error::Result;
use crate::lab::kube_proxy::{service_chain, KUBE_PROXY_TABLE};
use crate::lab::kube_proxy_iptables::LiveChains;
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

/// How kube-proxy's live rules on `node` translate the Service at `key` (see [`translation`]),
/// in the mode the lab's kube-proxy runs in: its nftables table of `family`, or in iptables
/// mode the `KUBE-*` chains of `table ip nat` and `table ip filter` as iptables-nft left them.
pub(crate) async fn live_translation<A: Into<IpAddr> + Copy + std::str::FromStr + PartialEq>(
    lab: &Lab,
    node: &str,
    family: &'static str,
    s: &Service,
    key: (A, u16),
    nodeport: bool,
    outside: bool,
) -> Result<Translation<A>> {
    if lab.topology().k8s.proxy_mode == crate::topology::k8s::ProxyMode::Iptables {
        let nat = lab.nft_table_text(node, "ip", "nat").await?;
        let filter = lab.nft_table_text(node, "ip", "filter").await?;
        return Ok(iptables_translation(
            (nat.as_deref(), filter.as_deref()),
            s,
            key,
            nodeport,
            outside,
        ));
    }
    let text = lab.nft_table_text(node, family, KUBE_PROXY_TABLE).await?;
    Ok(translation(text.as_deref(), s, key, nodeport, outside))
}

/// The iptables proxier's layout read back (as iptables-nft lists it: `ip daddr 10.96.0.20
/// tcp dport 80 counter packets 0 bytes 0 jump KUBE-SVC-...`): the ClusterIP's rule in
/// `KUBE-SERVICES`, or a NodePort's in `KUBE-NODEPORTS` behind the jump at the node's address
/// and its `KUBE-EXT-*` chain; the Service chain's `KUBE-SEP-*` chains and their DNAT; a
/// reject in the filter table's `KUBE-SERVICES` or `KUBE-EXTERNAL-SERVICES`.
fn iptables_translation<A: Into<IpAddr> + Copy + std::str::FromStr + PartialEq>(
    (nat, filter): (Option<&str>, Option<&str>),
    s: &Service,
    (addr, port): (A, u16),
    nodeport: bool,
    outside: bool,
) -> Translation<A> {
    let Some(nat) = nat.filter(|t| t.contains("chain KUBE-SERVICES {")) else {
        return Translation::NoTable;
    };
    let kube_rules: usize = LiveChains::read(nat)
        .iter()
        .map(|c| chain(nat, c).len())
        .sum();
    if kube_rules == 0 {
        return Translation::Flushed;
    }
    let ip: IpAddr = addr.into();
    let p = s.protocol.l4_name();
    let (daddr, dport) = (format!("ip daddr {ip} "), format!("{p} dport {port} "));
    let jump = |c: &str, l: &str| -> Option<String> {
        let to = l.split("jump ").nth(1)?.split_whitespace().next()?;
        to.starts_with(c).then(|| to.to_string())
    };
    // A Service chain: all endpoints (KUBE-SVC-*) or the node's own (KUBE-SVL-*).
    let service_jump = |l: &str| jump("KUBE-SVC-", l).or_else(|| jump("KUBE-SVL-", l));
    // An external IP's rule goes straight to the external chain.
    let direct = chain(nat, "KUBE-SERVICES")
        .into_iter()
        .filter(|l| l.contains(&daddr) && l.contains(&dport))
        .find_map(|l| jump("KUBE-EXT-", l));
    let svc = if let (true, Some(ext)) = (nodeport, &direct) {
        Some(external(nat, ext, outside, &service_jump))
    } else if nodeport {
        let entry = chain(nat, "KUBE-SERVICES")
            .into_iter()
            .any(|l| l.contains(&daddr) && l.contains("jump KUBE-NODEPORTS"));
        chain(nat, "KUBE-NODEPORTS")
            .into_iter()
            .filter(|_| entry)
            .filter(|l| l.contains(&dport))
            .find_map(|l| jump("KUBE-EXT-", l))
            .map(|ext| external(nat, &ext, outside, &service_jump))
    } else {
        chain(nat, "KUBE-SERVICES")
            .into_iter()
            .filter(|l| l.contains(&daddr) && l.contains(&dport))
            .find_map(service_jump)
            .map(Some)
    };
    let svc = match svc {
        // externalTrafficPolicy Local, and no endpoint on this node for outside clients.
        Some(None) => return Translation::NoLocal,
        Some(Some(svc)) => Some(svc),
        None => None,
    };
    let Some(svc) = svc else {
        let rejects = if nodeport {
            "KUBE-EXTERNAL-SERVICES"
        } else {
            "KUBE-SERVICES"
        };
        // iptables-nft does not list the rules' comments: a reject is "no endpoints", a drop
        // "no local endpoints", as kube-proxy writes them.
        let turned: Vec<&str> = filter
            .map(|f| chain(f, rejects))
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.contains(&daddr) && l.contains(&dport))
            .collect();
        return match turned.first() {
            Some(l) if l.contains("reject") => Translation::Rejected,
            Some(l) if l.split_whitespace().any(|w| w == "drop") => Translation::NoLocal,
            _ => Translation::NoRule,
        };
    };
    let mut eps = Vec::new();
    for sep in chain(nat, &svc)
        .into_iter()
        .filter_map(|l| jump("KUBE-SEP-", l))
    {
        for l in chain(nat, &sep) {
            let Some(to) = l.split("dnat to ").nth(1) else {
                continue;
            };
            let to = to.split_whitespace().next().unwrap_or_default();
            if let Some((ip, port)) = to.rsplit_once(':') {
                if let (Ok(ip), Ok(port)) = (ip.parse::<A>(), port.parse::<u16>()) {
                    if !eps.contains(&(ip, port)) {
                        eps.push((ip, port));
                    }
                }
            }
        }
    }
    Translation::Endpoints(eps)
}

/// The Service chain a NodePort's `KUBE-EXT-*` chain sends a client to: every endpoint, or
/// with externalTrafficPolicy Local (its `addrtype --src-type LOCAL` rules, `fib saddr type
/// local` as listed) an outside client to the node's own (`KUBE-SVL-*`; None: there are none).
fn external(
    nat: &str,
    ext: &str,
    outside: bool,
    service_jump: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let rules = chain(nat, ext);
    let local_policy = rules.iter().any(|l| l.contains("fib saddr type local"));
    if local_policy && outside {
        return rules.iter().find_map(|l| {
            let to = l.split("jump ").nth(1)?.split_whitespace().next()?;
            to.starts_with("KUBE-SVL-").then(|| to.to_string())
        });
    }
    rules.iter().find_map(|l| service_jump(l))
}
