//! `[cluster] proxy_mode`: kube-proxy's nftables mode (the default) or its iptables mode, and
//! what the iptables rendering does not cover yet (a located error, never a silent fallback).

use super::super::k8s::{K8s, ProxyMode};
use super::super::source::Key;
use super::validator::Validator;

/// Service features the iptables rendering leaves out: (the field that asks for one, whether
/// a Service asks for it).
type Feature = (&'static str, fn(&crate::topology::k8s::Service) -> bool);

const NOT_IN_IPTABLES: [Feature; 2] = [
    ("load_balancer_ip", |s| s.load_balancer.is_some()),
    ("cluster_ip", |s| s.cluster_ip6.is_some()),
];

impl Validator<'_> {
    /// Reads the mode; in iptables mode, each Service feature it does not render is an error
    /// at that Service's field.
    pub(super) fn proxy_mode(&mut self, raw: Option<&String>, services: &[&String], k: &mut K8s) {
        k.proxy_mode = match raw.map(|m| m.to_ascii_lowercase()).as_deref() {
            None | Some("nftables") => ProxyMode::Nftables,
            Some("iptables") => ProxyMode::Iptables,
            Some(other) => {
                self.err(
                    &[Key::Field("cluster"), Key::Field("proxy_mode")],
                    format!("unknown proxy_mode \"{other}\""),
                    Some(
                        "kube-proxy's modes here: \"nftables\" (the default) or \"iptables\""
                            .into(),
                    ),
                );
                return;
            }
        };
        if k.proxy_mode != ProxyMode::Iptables {
            return;
        }
        for key in services {
            let Some(s) = k.services.iter().find(|s| &s.name == *key && !s.dns) else {
                continue;
            };
            for (field, asks) in NOT_IN_IPTABLES {
                if asks(s) {
                    let what = if field == "cluster_ip" {
                        "a dual-stack Service"
                    } else {
                        field
                    };
                    self.err(
                        &[Key::Field("service"), Key::Field(key), Key::Field(field)],
                        format!("proxy_mode = \"iptables\" does not render {what} yet"),
                        Some(
                            "leave proxy_mode at its default, \"nftables\", for this Service"
                                .into(),
                        ),
                    );
                }
            }
        }
    }
}
