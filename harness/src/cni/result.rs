//! What a plugin's result says: the first address and gateway of each family, and its
//! interfaces.

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The first IPv4 and IPv6 address and gateway of a result, and its interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSummary {
    pub address: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// From a dual-stack range (host-local's second range): None in an IPv4-only result.
    pub address6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    /// (name, mac, in the sandbox?)
    pub interfaces: Vec<(String, String, bool)>,
}

/// The first of the result's `ips` whose `key` parses as `T` (an entry of that family).
fn first<T: std::str::FromStr>(result: &Value, key: &str) -> Option<T> {
    let ips = result.get("ips")?.as_array()?;
    ips.iter()
        .find_map(|ip| ip.get(key)?.as_str()?.parse::<T>().ok())
}

pub fn summarize(result: &Value) -> ResultSummary {
    let address = first::<Ipv4Net>(result, "address");
    let gateway = first::<Ipv4Addr>(result, "gateway");
    let address6 = first::<Ipv6Net>(result, "address");
    let gateway6 = first::<Ipv6Addr>(result, "gateway");
    let interfaces = result
        .get("interfaces")
        .and_then(|i| i.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    Some((
                        i.get("name")?.as_str()?.to_string(),
                        i.get("mac")
                            .and_then(|m| m.as_str())
                            .unwrap_or("")
                            .to_string(),
                        i.get("sandbox")
                            .and_then(|s| s.as_str())
                            .is_some_and(|s| !s.is_empty()),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    ResultSummary {
        address,
        gateway,
        address6,
        gateway6,
        interfaces,
    }
}
