//! The validator every part of fixture parsing reports through: errors located at a key path
//! of the source (at most [`MAX_ERRORS`] of them, then a count), and the value checks the parts
//! share (networks, interface addresses, addresses).

use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::super::source::{ConfigError, ConfigErrors, Key, Source};

/// Past this many errors in one file, the rest are counted, not located.
pub const MAX_ERRORS: usize = 20;

pub(super) struct Validator<'a> {
    pub(super) src: &'a Source,
    pub(super) errors: Vec<ConfigError>,
    pub(super) suppressed: usize,
    /// What the fixture says that is accepted but probably not meant (as the API server's
    /// warnings): located like errors, kept on the topology, printed by the commands.
    pub(super) warnings: Vec<ConfigError>,
}

impl Validator<'_> {
    pub(super) fn warn(&mut self, path: &[Key], message: impl Into<String>, help: Option<String>) {
        let e = self.src.error_at_path(path, message, help);
        self.warnings.push(e);
    }

    /// An ipBlock's network, either family. Host bits are accepted and cleared with a warning,
    /// as the API server does without StrictIPCIDRValidation (`GetWarningsForCIDR`).
    pub(super) fn block_net(&mut self, at: &[Key], s: &str, field: &str) -> Option<IpNet> {
        let Ok(net) = IpNet::from_str(s) else {
            return self.any_net(at, s, field);
        };
        if net.trunc() != net {
            self.warn(
                at,
                format!(
                    "{field} \"{s}\" has host bits set: it means \"{}\"",
                    net.trunc()
                ),
                Some(format!("write \"{}\" to say so", net.trunc())),
            );
        }
        Some(net.trunc())
    }

    pub(super) fn err(
        &mut self,
        path: &[Key],
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) {
        if self.errors.len() >= MAX_ERRORS {
            self.suppressed += 1;
            return;
        }
        let e = self.src.error_at_path(path, message, help.into());
        self.errors.push(e);
    }

    /// Records that `host` holds `ip`; a second holder (or the same host twice) is an error.
    pub(super) fn claim<A: Ord + Copy + std::fmt::Display>(
        &mut self,
        addrs: &mut std::collections::BTreeMap<A, String>,
        ip: A,
        host: &str,
        at: &[Key],
    ) {
        if let Some(prev) = addrs.get(&ip) {
            let msg = if prev == host {
                format!("{host} uses {ip} twice")
            } else {
                format!("duplicate address {ip}: {prev} already uses it")
            };
            self.err(
                at,
                msg,
                Some("every address in a lab must be unique".into()),
            );
        } else {
            addrs.insert(ip, host.to_string());
        }
    }

    pub(super) fn finish<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        if self.suppressed > 0 {
            self.errors.push(ConfigError::whole_file(
                &self.src.path,
                format!("... and {} more errors", self.suppressed),
                None,
            ));
        }
        Err(ConfigErrors(self.errors))
    }

    pub(super) fn net(&mut self, at: &[Key], s: &str, field: &str) -> Option<Ipv4Net> {
        match parse_cidr(s) {
            Ok(net) if net.trunc() != net => {
                self.err(
                    at,
                    format!("{field} \"{s}\" has host bits set"),
                    Some(format!("did you mean \"{}\"?", net.trunc())),
                );
                None
            }
            Ok(net) => Some(net),
            Err(msg) => {
                self.err(
                    at,
                    format!("{field}: {msg}"),
                    Some("write a CIDR such as \"10.244.1.0/24\"".into()),
                );
                None
            }
        }
    }

    /// An IPv4 or IPv6 network without host bits (a NetworkPolicy's ipBlock takes either).
    pub(super) fn any_net(&mut self, at: &[Key], s: &str, field: &str) -> Option<IpNet> {
        if !s.contains(':') {
            return self.net(at, s, field).map(IpNet::V4);
        }
        match Ipv6Net::from_str(s) {
            Ok(net) if net.trunc() != net => {
                self.err(
                    at,
                    format!("{field} \"{s}\" has host bits set"),
                    Some(format!("did you mean \"{}\"?", net.trunc())),
                );
                None
            }
            Ok(net) => Some(IpNet::V6(net)),
            Err(_) => {
                self.err(
                    at,
                    format!("{field} \"{s}\" is not a network"),
                    Some("write a CIDR such as \"10.244.0.0/16\" or \"fd00:10:244::/56\"".into()),
                );
                None
            }
        }
    }

    pub(super) fn iface_addr(&mut self, at: &[Key], s: &str, field: &str) -> Option<Ipv4Net> {
        match parse_cidr(s) {
            Ok(net) => {
                if net.prefix_len() < 31
                    && (net.addr() == net.network() || net.addr() == net.broadcast())
                {
                    self.err(
                        at,
                        format!(
                            "{field} {s} is the network or broadcast address of {}",
                            net.trunc()
                        ),
                        Some("pick a host address inside the network".into()),
                    );
                    return None;
                }
                Some(net)
            }
            Err(msg) => {
                self.err(
                    at,
                    format!("{field}: {msg}"),
                    Some("write an address with its prefix, such as \"203.0.113.1/24\"".into()),
                );
                None
            }
        }
    }

    pub(super) fn addr(&mut self, at: &[Key], s: &str, field: &str) -> Option<Ipv4Addr> {
        match Ipv4Addr::from_str(s) {
            Ok(a) => Some(a),
            Err(_) => {
                let help = if s.contains('/') {
                    "write the address without a prefix, such as \"10.244.1.2\""
                } else {
                    "write an IPv4 address such as \"10.244.1.2\""
                };
                self.err(
                    at,
                    format!("{field} \"{s}\" is not an IPv4 address"),
                    Some(help.into()),
                );
                None
            }
        }
    }
}

pub(super) fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!("\"{s}\" has no prefix length"));
    };
    let addr = Ipv4Addr::from_str(addr)
        .map_err(|_| format!("\"{addr}\" in \"{s}\" is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("prefix length \"{len}\" in \"{s}\" is not a number"))?;
    Ipv4Net::new(addr, len).map_err(|_| format!("prefix length /{len} in \"{s}\" is over 32"))
}
