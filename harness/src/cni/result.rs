//! What a plugin's result says: the first IPv4 address and gateway, and its interfaces.

use ipnet::Ipv4Net;
use serde_json::Value;
use std::net::Ipv4Addr;

/// The first IPv4 address and gateway of a result, and its interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSummary {
    pub address: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// (name, mac, in the sandbox?)
    pub interfaces: Vec<(String, String, bool)>,
}

pub fn summarize(result: &Value) -> ResultSummary {
    let address = result.get("ips").and_then(|i| i.as_array()).and_then(|a| {
        a.iter()
            .find_map(|ip| ip.get("address")?.as_str()?.parse::<Ipv4Net>().ok())
    });
    let gateway = result.get("ips").and_then(|i| i.as_array()).and_then(|a| {
        a.iter()
            .find_map(|ip| ip.get("gateway")?.as_str()?.parse::<Ipv4Addr>().ok())
    });
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
        interfaces,
    }
}
