//! nftables inside a lab namespace: build with the nftables crate, run `nft` on a thread that joined
//! the namespace (the child inherits it), read the ruleset back as JSON (for logic) and as text
//! without handles or counters (for people and snapshots).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Applies a batch inside `ns`.
pub async fn apply(ns: &Netns, host: &str, batch: Nftables<'static>) -> Result<()> {
    let r = ns
        .run_async(move || nftables::helper::apply_ruleset(&batch))
        .await
        .map_err(|e| Error::io(format!("{host}: running nft"), e))?;
    r.map_err(|e| nft_error(host, e))
}

/// Applies a batch inside `ns` and returns nft's echo (which carries the new rule handles).
pub async fn apply_echo(
    ns: &Netns,
    host: &str,
    batch: Nftables<'static>,
) -> Result<Nftables<'static>> {
    let r = ns
        .run_async(move || nftables::helper::apply_and_return_ruleset(&batch))
        .await
        .map_err(|e| Error::io(format!("{host}: running nft"), e))?;
    r.map_err(|e| nft_error(host, e))
}

/// The live ruleset of `ns` as typed JSON (with handles).
pub async fn list(ns: &Netns, host: &str) -> Result<Nftables<'static>> {
    let r = ns
        .run_async(nftables::helper::get_current_ruleset)
        .await
        .map_err(|e| Error::io(format!("{host}: running nft"), e))?;
    r.map_err(|e| nft_error(host, e))
}

/// The live ruleset of `ns` as nft prints it, stateless (`nft -s`): no handles, no counters.
pub async fn list_text(ns: &Netns, host: &str) -> Result<String> {
    let out = ns
        .run_async(|| {
            Command::new("nft")
                .args(["-s", "list", "ruleset"])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .and_then(|r| r)
        .map_err(|e| missing_nft(host, e))?;
    if !out.status.success() {
        return Err(Error::Nft {
            host: host.into(),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The live ruleset of `ns` as raw `nft -j` JSON (for evaluation: never fails on a statement the
/// typed schema does not know).
pub async fn list_json(ns: &Netns, host: &str) -> Result<serde_json::Value> {
    let out = ns
        .run_async(|| {
            Command::new("nft")
                .args(["-j", "list", "ruleset"])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .and_then(|r| r)
        .map_err(|e| missing_nft(host, e))?;
    if !out.status.success() {
        return Err(Error::Nft {
            host: host.into(),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| Error::Nft {
        host: host.into(),
        msg: format!("unreadable JSON from nft: {e}"),
    })
}

/// Whether `ns` has base chains (hooked into the stack): where an nft verdict can drop a packet.
/// None where the ruleset cannot be read.
pub async fn has_base_chains(ns: &Netns, host: &str) -> Option<bool> {
    let json = list_json(ns, host).await.ok()?;
    let objects = json.get("nftables")?.as_array()?;
    Some(
        objects
            .iter()
            .any(|o| o.get("chain").and_then(|c| c.get("hook")).is_some()),
    )
}

fn missing_nft(host: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Unsupported(
            "the nft program is missing: install nftables (apt-get install nftables)".into(),
        )
    } else {
        Error::io(format!("{host}: running nft"), e)
    }
}

fn nft_error(host: &str, e: nftables::helper::NftablesError) -> Error {
    use nftables::helper::NftablesError as E;
    match e {
        E::NftExecution { inner, .. } => missing_nft(host, inner),
        E::NftFailed { stderr, .. } => Error::Nft {
            host: host.into(),
            msg: stderr.trim().lines().next().unwrap_or("failed").to_string(),
        },
        other => Error::Nft {
            host: host.into(),
            msg: other.to_string(),
        },
    }
}

/// The table and base chain netfault's built-in wiring uses for masquerade, like a CNI's ipMasq.
pub const NAT_TABLE: &str = "nat";
pub const NAT_CHAIN: &str = "postrouting";

/// `table ip nat { chain postrouting { type nat hook postrouting priority srcnat; policy accept;
///  ip saddr POD_CIDR ip daddr != CLUSTER_CIDR oifname UPLINK masquerade } }`
///
/// With IPv6 networks, the same in `table ip6 nat` (`ip6 saddr`, `ip6 daddr`).
pub fn masquerade_batch(
    pod_cidr: ipnet::IpNet,
    cluster_cidr: ipnet::IpNet,
    uplink: &str,
    comment: &str,
) -> Nftables<'static> {
    let (family, proto) = match pod_cidr {
        ipnet::IpNet::V4(_) => (NfFamily::IP, "ip"),
        ipnet::IpNet::V6(_) => (NfFamily::IP6, "ip6"),
    };
    let mut b = nftables::batch::Batch::new();
    b.add(NfListObject::Table(Table {
        family,
        name: NAT_TABLE.into(),
        handle: None,
    }));
    b.add(NfListObject::Chain(Chain {
        family,
        table: NAT_TABLE.into(),
        name: NAT_CHAIN.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(100),
        policy: Some(NfChainPolicy::Accept),
        ..Default::default()
    }));
    let prefix = |net: ipnet::IpNet| {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(net.network().to_string().into())),
            len: u32::from(net.prefix_len()),
        }))
    };
    let ip = |field: &'static str| {
        Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: proto.into(),
                field: field.into(),
            },
        )))
    };
    b.add(NfListObject::Rule(Rule {
        family,
        table: NAT_TABLE.into(),
        chain: NAT_CHAIN.into(),
        expr: Cow::Owned(vec![
            Statement::Match(Match {
                left: ip("saddr"),
                right: prefix(pod_cidr),
                op: Operator::EQ,
            }),
            Statement::Match(Match {
                left: ip("daddr"),
                right: prefix(cluster_cidr),
                op: Operator::NEQ,
            }),
            Statement::Match(Match {
                left: Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::Oifname,
                })),
                right: Expression::String(uplink.to_string().into()),
                op: Operator::EQ,
            }),
            Statement::Masquerade(None),
        ]),
        comment: Some(comment.to_string().into()),
        ..Default::default()
    }));
    b.to_nftables()
}

/// Whether a rule masquerades: the native `masquerade` statement or iptables-nft's xt target.
pub fn is_masquerade(rule: &Rule) -> bool {
    rule.expr.iter().any(|s| match s {
        Statement::Masquerade(_) => true,
        Statement::XT(Some(v)) => {
            v.get("type").and_then(|t| t.as_str()) == Some("target")
                && v.get("name").and_then(|t| t.as_str()) == Some("MASQUERADE")
        }
        _ => false,
    })
}

/// Whether a rule uses iptables-nft's xt compat expressions (nft cannot re-add those itself).
pub fn uses_xt(rule: &Rule) -> bool {
    rule.expr.iter().any(|s| matches!(s, Statement::XT(_)))
}

/// The rules of a ruleset, in listing order (which is chain order).
pub fn rules<'a>(set: &'a Nftables<'static>) -> impl Iterator<Item = &'a Rule<'static>> {
    set.objects.iter().filter_map(|o| match o {
        NfObject::ListObject(NfListObject::Rule(r)) => Some(r),
        _ => None,
    })
}

pub fn family_name(f: NfFamily) -> &'static str {
    match f {
        NfFamily::IP => "ip",
        NfFamily::IP6 => "ip6",
        NfFamily::INet => "inet",
        NfFamily::ARP => "arp",
        NfFamily::Bridge => "bridge",
        NfFamily::NetDev => "netdev",
    }
}

/// A batch deleting the given rules by handle.
pub fn delete_batch(rules: &[Rule<'static>]) -> Nftables<'static> {
    let mut b = nftables::batch::Batch::new();
    for r in rules {
        b.delete(NfListObject::Rule(Rule {
            family: r.family,
            table: r.table.clone(),
            chain: r.chain.clone(),
            expr: Cow::Owned(vec![]),
            handle: r.handle,
            index: None,
            comment: None,
        }));
    }
    b.to_nftables()
}

/// A command re-adding `rule` right after the rule at chain index `after` (nft 1.0.6 honours
/// `index`, not `handle`, to place a rule given as JSON), or at the head of its chain.
pub fn readd_cmd(rule: &Rule<'static>, after: Option<usize>) -> NfCmd<'static> {
    let mut r = rule.clone();
    r.handle = None;
    // Counters restart from zero; state values are not part of a rule's meaning.
    r.expr = Cow::Owned(
        r.expr
            .iter()
            .map(|s| match s {
                Statement::Counter(_) => {
                    Statement::Counter(nftables::stmt::Counter::Anonymous(None))
                }
                other => other.clone(),
            })
            .collect(),
    );
    match after {
        Some(i) => {
            r.index = Some(i as u32);
            NfCmd::Add(NfListObject::Rule(r))
        }
        None => {
            r.index = None;
            NfCmd::Insert(NfListObject::Rule(r))
        }
    }
}

/// `nft -s list ruleset` text, split per table and chain: `"table ip nat" → "chain postrouting" →
/// [header, rules...]`. The chain's first entry is its header (`type ... policy ...;`) for base
/// chains, or empty.
pub type RulesetText = BTreeMap<String, BTreeMap<String, Vec<String>>>;

pub fn parse_text(text: &str) -> RulesetText {
    let mut out: RulesetText = BTreeMap::new();
    let mut table: Option<String> = None;
    let mut chain: Option<String> = None;
    let mut depth = 0usize;
    let mut skip_depth: Option<usize> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let opens = line.ends_with('{');
        let closes = line == "}";
        if closes {
            depth = depth.saturating_sub(1);
            if skip_depth == Some(depth) {
                skip_depth = None;
            }
            match depth {
                0 => table = None,
                1 => chain = None,
                _ => {}
            }
            continue;
        }
        if skip_depth.is_some() {
            if opens {
                depth += 1;
            }
            continue;
        }
        if opens {
            let head = line.trim_end_matches('{').trim().to_string();
            match depth {
                0 => {
                    table = Some(head.clone());
                    out.entry(head).or_default();
                }
                1 if head.starts_with("chain ") => {
                    chain = Some(head.clone());
                    if let Some(t) = &table {
                        out.entry(t.clone())
                            .or_default()
                            .entry(head)
                            .or_default()
                            .push(String::new());
                    }
                }
                _ => skip_depth = Some(depth),
            }
            depth += 1;
            continue;
        }
        if let (Some(t), Some(c), 2) = (&table, &chain, depth) {
            let entries = out
                .entry(t.clone())
                .or_default()
                .entry(c.clone())
                .or_default();
            if line.starts_with("type ") && entries.len() == 1 && entries[0].is_empty() {
                entries[0] = line.to_string();
            } else {
                entries.push(line.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_split_per_table_and_chain() {
        let text = "table ip nat {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr 10.244.1.0/24 masquerade\n\t}\n\tchain other {\n\t\tcounter\n\t}\n}\ntable inet f {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 1.2.3.4 }\n\t}\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n";
        let t = parse_text(text);
        let nat = &t["table ip nat"];
        assert_eq!(
            nat["chain postrouting"],
            [
                "type nat hook postrouting priority srcnat; policy accept;",
                "ip saddr 10.244.1.0/24 masquerade"
            ]
        );
        assert_eq!(nat["chain other"], ["", "counter"]);
        assert_eq!(
            t["table inet f"]["chain input"],
            ["type filter hook input priority filter; policy drop;"]
        );
        assert_eq!(t["table inet f"].len(), 1);
    }

    #[test]
    fn masquerade_is_found_in_native_and_xt_form() {
        let native = r#"{"family":"ip","table":"nat","chain":"postrouting","handle":3,"expr":[{"masquerade":null}]}"#;
        let xt = r#"{"family":"ip","table":"nat","chain":"POSTROUTING","handle":2,"expr":[{"counter":{"packets":0,"bytes":0}},{"xt":{"type":"target","name":"MASQUERADE"}}]}"#;
        let other = r#"{"family":"ip","table":"nat","chain":"POSTROUTING","handle":4,"expr":[{"xt":{"type":"target","name":"SNAT"}}]}"#;
        let native: Rule = serde_json::from_str(native).unwrap();
        let xt: Rule = serde_json::from_str(xt).unwrap();
        let other: Rule = serde_json::from_str(other).unwrap();
        assert!(is_masquerade(&native) && !uses_xt(&native));
        assert!(is_masquerade(&xt) && uses_xt(&xt));
        assert!(!is_masquerade(&other));
    }
}
