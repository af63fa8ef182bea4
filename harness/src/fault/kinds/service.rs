//! Kubernetes Services as kube-proxy renders them: rules, endpoints, hairpin, conntrack.

use serde::{Deserialize, Serialize};

use super::super::check::Checker;
use super::super::check::{perr, ParamError};
use super::super::k8s::*;
use super::super::kind::{Breakage, Kind, NODE, POD, SERVICE};
use super::super::undo::{NftUndo, Undo};
use crate::diagnose::Component;
use crate::error::{nl_error, Error};
use crate::lab::kube_proxy::{kube_proxy_script, CLUSTER_IPS_SET, KUBE_PROXY_TABLE};
use crate::lab::Lab;
use crate::nft;
use crate::nl::{self as netlink};
use crate::topology::Proto;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteServiceRule {
    pub node: String,
    pub service: String,
}

impl Breakage for DeleteServiceRule {
    const KIND: Kind = Kind {
        name: "delete-service-rule",
        params: &[NODE, SERVICE],
        description:
            "delete kube-proxy's rule sending the Service's ClusterIP to its chain on the node",
        component: "service",
        example: "delete-service-rule:node=node1,service=web",
    };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node, service } = self;
        check_role(c.t, "node", node, "node")?;
        check_service(c.t, service)?;
        needs_nftables_mode(c.t, "delete-service-rule")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { node, service } = self;
        let s = t.k8s.service(service).expect("checked");
        let h = lab.host(node)?;
        let set = nft::list(&h.ns, node).await?;
        let needle = format!("\"{}\"", s.cluster_ip);
        let mut index = 0usize;
        let mut native = Vec::new();
        for r in nft::rules(&set) {
            if r.table != KUBE_PROXY_TABLE || r.chain != "services" {
                continue;
            }
            let text = serde_json::to_string(&r.expr).unwrap_or_default();
            if text.contains(&needle) {
                native.push((r.clone(), index));
            }
            index += 1;
        }
        if native.is_empty() {
            return Err(Error::NotApplicable(format!(
                "{node}: kube-proxy has no rule for {} ({}:{})",
                service, s.cluster_ip, s.port
            )));
        }
        let doomed: Vec<_> = native.iter().map(|(r, _)| r.clone()).collect();
        nft::apply(&h.ns, node, nft::delete_batch(&doomed)).await?;
        // Undone backwards: the rules first, then the flows sent while they were gone.
        let mut undo = vec![
            Undo::ForgetStaleUdp { host: node.clone() },
            Undo::NftRules(NftUndo {
                host: node.clone(),
                native,
                iptables: Vec::new(),
                ip6tables: Vec::new(),
            }),
        ];
        // kube-proxy forgets the ClusterIP with its rule: out of its cluster-ips set, packets
        // to it are dropped as unallocated, not rejected as an unserved port.
        let element = format!(
            "ip {KUBE_PROXY_TABLE} {CLUSTER_IPS_SET} {{ {} }}",
            s.cluster_ip
        );
        lab.nft_script(node, format!("delete element {element}\n"))
            .await?;
        undo.push(Undo::NftScript {
            host: node.clone(),
            script: format!("add element {element}\n"),
        });
        Ok(undo)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveEndpoint {
    pub service: String,
    pub pod: String,
}

impl Breakage for RemoveEndpoint {
    const KIND: Kind = Kind {
        name: "remove-endpoint",
        params: &[SERVICE, ("pod", "an endpoint pod of the Service")],
        description:
            "the pod is no longer an endpoint of the Service (kube-proxy re-syncs every node)",
        component: "service",
        example: "remove-endpoint:service=web,pod=pod-b",
    };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { service, pod } = self;
        check_endpoint(c.t, service, pod)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let mut spec = t.k8s.clone();
        let Self { service, pod } = self;
        let i = service_index(&spec, service);
        spec.services[i].endpoints.retain(|e| &e.pod != pod);
        rerender(lab, t, &spec).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongEndpointPort {
    pub service: String,
    pub port: u16,
}

impl Breakage for WrongEndpointPort {
    const KIND: Kind = Kind {
        name: "wrong-endpoint-port",
        params: &[SERVICE, ("port", "the wrong target port")],
        description: "the Service's endpoints point at a port nothing listens on (targetPort typo)",
        component: "service",
        example: "wrong-endpoint-port:service=web,port=9090",
    };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { service, port } = self;
        check_service(c.t, service)?;
        let s = c.t.k8s.service(service).expect("checked");
        if s.endpoints.is_empty() {
            return Err(perr(
                "service",
                format!("Service {service} has no endpoints"),
                service_names(c.t),
            ));
        }
        if *port == 0 || s.endpoints.iter().all(|e| e.port == *port) {
            return Err(perr(
                "port",
                format!("port {port} is not a wrong port for {service}"),
                format!("its endpoints listen on {}", s.endpoints[0].port),
            ));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let mut spec = t.k8s.clone();
        let Self { service, port } = self;
        let i = service_index(&spec, service);
        for e in &mut spec.services[i].endpoints {
            e.port = *port;
        }
        rerender(lab, t, &spec).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaleEndpointIp {
    pub service: String,
    pub pod: String,
}

impl Breakage for StaleEndpointIp {
    const KIND: Kind = Kind { name: "stale-endpoint-ip", params: &[SERVICE, ("pod", "an endpoint pod of the Service")], description: "the pod's endpoint is replaced by a deleted pod's address (a vacant one in its pod CIDR)", component: "service", example: "stale-endpoint-ip:service=web,pod=pod-b" };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { service, pod } = self;
        check_endpoint(c.t, service, pod)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let mut spec = t.k8s.clone();
        let Self { service, pod } = self;
        let i = service_index(&spec, service);
        let ip = vacant_ip(t, pod).ok_or_else(|| {
            Error::NotApplicable(format!("{pod}'s pod CIDR has no vacant address"))
        })?;
        let s = &mut spec.services[i];
        let port = s
            .endpoints
            .iter()
            .find(|e| &e.pod == pod)
            .map(|e| e.port)
            .expect("checked");
        s.endpoints.retain(|e| &e.pod != pod);
        s.stale.push((ip, port));
        rerender(lab, t, &spec).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoEndpoints {
    pub service: String,
}

impl Breakage for NoEndpoints {
    const KIND: Kind = Kind {
        name: "no-endpoints",
        params: &[SERVICE],
        description: "every endpoint of the Service goes: kube-proxy rejects its ClusterIP",
        component: "service",
        example: "no-endpoints:service=web",
    };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { service } = self;
        check_service(c.t, service)
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let mut spec = t.k8s.clone();
        let Self { service } = self;
        let i = service_index(&spec, service);
        if spec.services[i].endpoints.is_empty() {
            return Err(Error::NotApplicable(format!(
                "Service {service} has no endpoints already"
            )));
        }
        spec.services[i].endpoints.clear();
        rerender(lab, t, &spec).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HairpinOff {
    pub pod: String,
}

impl Breakage for HairpinOff {
    const KIND: Kind = Kind { name: "hairpin-off", params: &[POD], description: "hairpin mode off on the pod's bridge port: the pod cannot reach itself through its own Service", component: "bridge", example: "hairpin-off:pod=pod-b" };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { pod } = self;
        check_role(c.t, "pod", pod, "pod")?;
        if !c.t.has_bridge() {
            return Err(perr(
                "pod",
                "hairpin is a bridge port's setting",
                "use a fixture whose pods sit on a bridge",
            ));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { pod } = self;
        let p = t.host(pod).and_then(|h| h.as_pod()).expect("checked");
        let h = lab.host(&p.node)?;
        let l = super::super::ops::live_link(h, &p.host_veth).await?;
        // Outside Kubernetes labs ports have hairpin off: nothing to break, nothing to restore.
        if !l.details.iter().any(|d| d == "hairpin on") {
            return Err(Error::NotApplicable(format!(
                "{} {} has hairpin off already",
                p.node, p.host_veth
            )));
        }
        let ix = l.index;
        netlink::set_hairpin(h.handle(), ix, false)
            .await
            .map_err(|e| nl_error(&p.node, format!("hairpin off on {}", p.host_veth), e))?;
        Ok(vec![Undo::Hairpin {
            host: p.node.clone(),
            ifname: p.host_veth.clone(),
            on: true,
        }])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeNfOff {
    pub node: String,
}

impl Breakage for BridgeNfOff {
    const KIND: Kind = Kind { name: "bridge-nf-off", params: &[NODE], description: "net.bridge.bridge-nf-call-iptables = 0: bridged replies from same-node endpoints skip conntrack's un-DNAT", component: "service", example: "bridge-nf-off:node=node1" };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        check_role(c.t, "node", node, "node")?;
        if !c.t.has_bridge() {
            return Err(perr(
                "node",
                format!("{node} has no bridge"),
                "use a fixture whose pods sit on a bridge",
            ));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let Self { node } = self;
        super::super::ops::set_sysctls(
            lab,
            node,
            vec![("net/bridge/bridge-nf-call-iptables".into(), "0".into())],
        )
        .await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushKubeProxy {
    pub node: String,
}

impl Breakage for FlushKubeProxy {
    const KIND: Kind = Kind {
        name: "flush-kube-proxy",
        params: &[NODE],
        description: "flush kube-proxy's nft table on the node (chains stay, rules go)",
        component: "service",
        example: "flush-kube-proxy:node=node1",
    };
    const KUBERNETES: bool = true;

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { node } = self;
        needs_k8s(c.t, "flush-kube-proxy")?;
        check_role(c.t, "node", node, "node")?;
        needs_nftables_mode(c.t, "flush-kube-proxy")
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { node } = self;
        lab.nft_script(node, format!("flush table ip {KUBE_PROXY_TABLE}\n"))
            .await?;
        // Undone backwards: the rules first, then the flows sent while they were gone.
        Ok(vec![
            Undo::ForgetStaleUdp { host: node.clone() },
            Undo::NftScript {
                host: node.clone(),
                script: kube_proxy_script(t, &t.k8s, node),
            },
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaleConntrack {
    pub service: String,
    pub pod: String,
}

impl Breakage for StaleConntrack {
    const KIND: Kind = Kind { name: "stale-conntrack", params: &[SERVICE, ("pod", "the UDP Service's endpoint pod")], description: "the endpoint pod comes back with a new address and kube-proxy follows, but does not flush UDP conntrack: clients' running flows stay DNATed to the old address", component: "service", example: "stale-conntrack:service=echo,pod=pod-b" };
    const KUBERNETES: bool = true;
    /// The pod really comes back at a new address: pairs aimed at the one the cluster gave it
    /// are rightly blamed on the pod's address.
    const ALSO_BLAMED_AS: &'static [Component] = &[Component::Address];

    fn check(&self, c: &Checker) -> Result<(), ParamError> {
        let Self { service, pod } = self;
        check_endpoint(c.t, service, pod)?;
        if c.t
            .k8s
            .service(service)
            .is_some_and(|s| s.protocol != Proto::Udp || s.dns)
        {
            return Err(perr(
                "service",
                format!("Service {service} does not speak UDP"),
                "stale conntrack entries outlive endpoints for UDP Services (kube-proxy flushes them); pick a UDP Service",
            ));
        }
        Ok(())
    }

    async fn inject(&self, lab: &Lab) -> crate::error::Result<Vec<Undo>> {
        let t = lab.topology();
        let Self { service, pod } = self;
        // Clients' flows exist before the change (as long-lived UDP clients' would).
        let target = crate::topology::k8s::Target::Service(service.clone()).name();
        let specs: Vec<_> = crate::probe::target_probes(t)
            .into_iter()
            .filter(|s| s.to == target)
            .collect();
        crate::probe::run(
            lab,
            &specs,
            std::time::Duration::from_millis(t.probe.timeout_ms),
        )
        .await?;
        // The pod comes back with a new address; kube-proxy follows it everywhere.
        let old = t
            .host(pod)
            .and_then(|h| h.as_pod())
            .cloned()
            .expect("checked");
        let new = vacant_ip(t, pod).ok_or_else(|| {
            Error::NotApplicable(format!("{pod}'s pod CIDR has no vacant address"))
        })?;
        let prefix = t
            .host(&old.node)
            .and_then(|h| h.as_node())
            .map(|n| n.pod_cidr.prefix_len())
            .expect("a pod's node");
        let old_net = ipnet::Ipv4Net::new(old.ip, prefix).expect("prefix");
        let new_net = ipnet::Ipv4Net::new(new, prefix).expect("prefix");
        // The new address keeps the pod's routes when the old one goes.
        let mut undo = super::super::ops::set_sysctls(
            lab,
            pod,
            vec![(
                format!("net/ipv4/conf/{}/promote_secondaries", old.ifname),
                "1".into(),
            )],
        )
        .await?;
        let h = lab.host(pod)?;
        let ix = h.index(&old.ifname).await?;
        netlink::add_address(h.handle(), ix, new_net)
            .await
            .map_err(|e| nl_error(pod, format!("adding {new_net}"), e))?;
        undo.push(Undo::RemoveAddress {
            host: pod.clone(),
            ifname: old.ifname.clone(),
            net: new_net,
        });
        netlink::del_address(h.handle(), ix, old_net)
            .await
            .map_err(|e| nl_error(pod, format!("removing {old_net}"), e))?;
        undo.push(Undo::Address {
            host: pod.clone(),
            ifname: old.ifname.clone(),
            net: old_net,
        });
        let mut moved = t.clone();
        for hst in &mut moved.hosts {
            if let crate::topology::Role::Pod(p) = &mut hst.role {
                if hst.name == *pod {
                    p.ip = new;
                }
            }
        }
        undo.extend(rerender(lab, &moved, &moved.k8s).await?);
        // No conntrack flush: that is the fault.
        Ok(undo)
    }
}
