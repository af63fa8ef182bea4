//! Cluster DNS: the server down, a pod told the wrong nameserver.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::ParamError;
use super::super::k8s::*;
use super::super::kind::{Breakage, Kind, POD};
use super::super::undo::Undo;
use crate::error::Error;
use crate::lab::Lab;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsServerDown {}

impl Breakage for DnsServerDown {
    const KIND: Kind = Kind {
        name: "dns-server-down",
        params: &[],
        description:
            "stop the cluster DNS server (its socket closes: queries get ICMP port unreachable)",
        component: "dns",
        example: "dns-server-down",
    };
    const KUBERNETES: bool = true;

    /// The server runs in the DNS Service's endpoint pods; the nodes carry its Service.
    fn blamed_at(&self, t: &crate::topology::Topology) -> Vec<String> {
        let pods = t.k8s.services.iter().filter(|s| s.dns);
        let pods = pods.flat_map(|s| s.endpoints.iter().map(|e| e.pod.clone()));
        pods.chain(t.nodes().map(|(n, _)| n.to_string())).collect()
    }

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        needs_dns(c.t)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        if !lab.stop_dns() {
            return Err(Error::NotApplicable(
                "the cluster DNS server does not run in this process (a pinned lab's is not netfault's to stop)".into(),
            ));
        }
        Ok(vec![Undo::StartDns])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongNameserver {
    pub pod: String,
    pub nameserver: Ipv4Addr,
}

impl Breakage for WrongNameserver {
    const KIND: Kind = Kind {
        name: "wrong-nameserver",
        params: &[POD, ("nameserver", "the wrong nameserver address")],
        description: "the pod's resolv.conf names another nameserver",
        component: "dns",
        example: "wrong-nameserver:pod=pod-a,nameserver=10.96.0.11",
    };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { pod, .. } = self;
        needs_dns(c.t)?;
        check_role(c.t, "pod", pod, "pod")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { pod, nameserver } = self;
        let before = lab
            .resolv_conf(pod)
            .ok_or_else(|| Error::NotApplicable(format!("{pod} has no resolv.conf")))?;
        let after: String = before
            .lines()
            .map(|l| {
                if l.starts_with("nameserver") {
                    format!("nameserver {nameserver}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        lab.set_resolv_conf(pod, &after)?;
        Ok(vec![Undo::Resolv {
            pod: pod.clone(),
            text: before,
        }])
    }
}
