//! The Kubernetes layer of a lab: kube-proxy's nftables rules for Services (ClusterIP,
//! NodePort, hairpin masquerade, rejects for Services without endpoints), the node's policy
//! table (rendered in `policy`), hairpin on pod bridge ports, per-pod resolv.conf and the cluster DNS server.
//!
//! Rendering is pure (text for `nft -f`), so faults can render a changed spec and heal can render
//! the fixture's again — as kube-proxy re-syncs its whole table on every change.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::topology::k8s::{DnsRecords, K8s, Service};
use crate::topology::{Family, Proto, Role, Topology};

pub const KUBE_PROXY_TABLE: &str = "kube-proxy";
/// kube-proxy's set of the ClusterIPs it serves (nftables mode).
pub const CLUSTER_IPS_SET: &str = "cluster-ips";
/// kube-proxy's masquerade mark.
pub const MASQ_MARK: u32 = 0x4000;

/// A chain-name-safe form of `ns/name`.
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

pub fn service_chain(s: &Service) -> String {
    format!("service-{}-{}", ident(&s.namespace), ident(&s.name))
}

/// kube-proxy's tables for one node: `table ip kube-proxy`, and `table ip6 kube-proxy` where
/// a Service of the lab is dual-stack (kube-proxy keeps one table per family), each replacing
/// any table of that name.
pub fn kube_proxy_script(t: &Topology, k: &K8s, node: &str) -> String {
    let mut s = kube_proxy_table(t, k, Family::V4, node);
    let dual = |k: &K8s| k.services.iter().any(|s| s.cluster_ip6.is_some());
    if dual(k) || dual(&t.k8s) {
        s.push_str(&kube_proxy_table(t, k, Family::V6, node));
    }
    s
}

/// The address a node accepts NodePort traffic at, in one family: kube-proxy's
/// `--nodeport-addresses` default, the node's primary address (its uplink here), not every
/// local address (a pod reaching its node's bridge address at a NodePort gets no Service).
fn nodeport_address(t: &Topology, node: &str, family: Family) -> Option<IpAddr> {
    let h = t.host(node)?;
    h.as_node()?;
    h.address_of(family)
}

/// An endpoint as kube-proxy DNATs to it: (pod, address, port).
type ServiceEndpoint = (String, IpAddr, u16);

/// What a Service is in one family: its ClusterIP there, and its endpoints' addresses (pods
/// without an address of the family, and stale IPv4 endpoints in IPv6, drop out).
fn service_in(
    t: &Topology,
    svc: &Service,
    family: Family,
) -> Option<(IpAddr, Vec<ServiceEndpoint>)> {
    let vip = match family {
        Family::V4 => IpAddr::V4(svc.cluster_ip),
        Family::V6 => IpAddr::V6(svc.cluster_ip6?),
    };
    let mut eps: Vec<ServiceEndpoint> = svc
        .endpoints
        .iter()
        .filter_map(|e| {
            let h = t.host(&e.pod)?;
            h.as_pod()?;
            Some((e.pod.clone(), h.address_of(family)?, e.port))
        })
        .collect();
    if family == Family::V4 {
        eps.extend(
            svc.stale
                .iter()
                .map(|(ip, port)| ("stale".to_string(), IpAddr::V4(*ip), *port)),
        );
    }
    Some((vip, eps))
}

/// kube-proxy's external chain of an `externalTrafficPolicy: Local` Service: the cluster's
/// pods and the node itself get every endpoint (the node's own traffic masqueraded), anyone
/// else the node's own endpoints, unmasqueraded (nothing, where it has none).
fn external_local_chain(c: &str, fam: &str, cluster_cidr: Option<&str>, has_local: bool) -> String {
    let mut s = String::new();
    if let Some(cidr) = cluster_cidr {
        let _ = writeln!(s, "    {fam} saddr {cidr} goto {c}");
    }
    let _ = writeln!(s, "    fib saddr type local jump mark-for-masquerade");
    let _ = writeln!(s, "    fib saddr type local goto {c}");
    if has_local {
        let _ = writeln!(s, "    goto {c}-external-local");
    }
    s
}

/// The node a pod runs on.
fn node_of<'a>(t: &'a Topology, pod: &str) -> Option<&'a str> {
    t.host(pod)?.as_pod().map(|p| p.node.as_str())
}

/// An address as nft's `dnat to` takes it with a port (`[addr]:port` in IPv6).
fn dnat_target(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// kube-proxy's table of one family, on `node`.
fn kube_proxy_table(t: &Topology, k: &K8s, family: Family, node: &str) -> String {
    // No address of the family on the node: no NodePort rules in this table.
    let node_ip = nodeport_address(t, node, family);
    let fam = family.nft();
    let cluster_cidr = match family {
        Family::V4 => Some(t.cluster.cidr.to_string()),
        Family::V6 => t.cluster.cidr6.map(|c| c.to_string()),
    };
    let mut s = String::new();
    let _ = writeln!(s, "table {fam} {KUBE_PROXY_TABLE}");
    let _ = writeln!(s, "delete table {fam} {KUBE_PROXY_TABLE}");
    let _ = writeln!(s, "table {fam} {KUBE_PROXY_TABLE} {{");
    let _ = writeln!(
        s,
        "  chain mark-for-masquerade {{\n    meta mark set meta mark | {MASQ_MARK:#x}\n  }}"
    );
    let _ = writeln!(s, "  chain masquerading {{\n    meta mark & {MASQ_MARK:#x} == 0 return\n    meta mark set meta mark ^ {MASQ_MARK:#x}\n    masquerade\n  }}");
    let _ = writeln!(s, "  chain nat-prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }}");
    let _ = writeln!(s, "  chain nat-output {{\n    type nat hook output priority -100; policy accept;\n    jump services\n  }}");
    let _ = writeln!(s, "  chain nat-postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    jump masquerading\n  }}");
    // Services without endpoints: rejected before anything else sees them.
    let mut rejects = String::new();
    let mut nodeport_rejects = String::new();
    let mut services = String::new();
    let mut chains = String::new();
    for svc in &k.services {
        let Some((vip, eps)) = service_in(t, svc, family) else {
            continue;
        };
        let p = svc.protocol.l4_name();
        // kube-dns serves 53 over TCP as well (its Service has a dns-tcp port): resolvers retry
        // a truncated answer over TCP, and `dig +tcp` asks so.
        let also_tcp = svc.dns && svc.protocol == Proto::Udp;
        let c = service_chain(svc);
        let comment = format!("{}/{}", svc.namespace, svc.name);
        if eps.is_empty() {
            let how = if svc.protocol == Proto::Tcp {
                "reject with tcp reset"
            } else {
                "reject"
            };
            let _ = writeln!(
                rejects,
                "    {fam} daddr {vip} {p} dport {} {how} comment \"{comment} has no endpoints\"",
                svc.port
            );
            if let (Some(np), Some(node_ip)) = (svc.node_port, node_ip) {
                let _ = writeln!(
                    nodeport_rejects,
                    "    {fam} daddr {node_ip} {p} dport {np} {how} comment \"{comment} has no endpoints\""
                );
            }
            continue;
        }
        // internalTrafficPolicy Local: the ClusterIP goes to this node's endpoints only, and is
        // dropped where there are none (kube-proxy: "has no local endpoints").
        let local: Vec<usize> = (0..eps.len())
            .filter(|&i| node_of(t, &eps[i].0) == Some(node))
            .collect();
        let internal = match (svc.internal_local, local.is_empty()) {
            (false, _) => c.clone(),
            (true, true) => {
                let _ = writeln!(
                    rejects,
                    "    {fam} daddr {vip} {p} dport {} drop comment \"{comment} has no local endpoints\"",
                    svc.port
                );
                String::new()
            }
            (true, false) => format!("{c}-local"),
        };
        if !internal.is_empty() {
            let _ = writeln!(
                services,
                "    {fam} daddr {vip} {p} dport {} goto {internal} comment \"{comment}\"",
                svc.port
            );
        }
        if also_tcp {
            let _ = writeln!(
                services,
                "    {fam} daddr {vip} tcp dport {} goto {c} comment \"{comment} dns-tcp\"",
                svc.port
            );
        }
        if let (Some(np), Some(node_ip)) = (svc.node_port, node_ip) {
            let _ = writeln!(
                services,
                "    {fam} daddr {node_ip} {p} dport {np} goto external-{c} comment \"{comment} nodeport\""
            );
            let external = if svc.external_local {
                external_local_chain(&c, fam, cluster_cidr.as_deref(), !local.is_empty())
            } else {
                "    jump mark-for-masquerade\n    goto {c}\n".replace("{c}", &c)
            };
            let _ = writeln!(chains, "  chain external-{c} {{\n{external}  }}");
            if svc.external_local && local.is_empty() {
                // Nothing DNATs it: it reaches the node's input, where kube-proxy drops it.
                let _ = writeln!(
                    nodeport_rejects,
                    "    {fam} daddr {node_ip} {p} dport {np} drop comment \"{comment} has no local endpoints\""
                );
            }
        }
        let mut vmap = Vec::new();
        for (i, (pod, ip, port)) in eps.iter().enumerate() {
            let ec = format!(
                "endpoint-{}-{}-{i}",
                ident(&svc.namespace),
                ident(&svc.name)
            );
            vmap.push(format!("{i} : goto {ec}"));
            let to = dnat_target(*ip, *port);
            let tcp_too = match also_tcp {
                true => format!("\n    meta l4proto tcp dnat to {to}"),
                false => String::new(),
            };
            let _ = writeln!(
                chains,
                "  chain {ec} {{\n    {fam} saddr {ip} jump mark-for-masquerade comment \"hairpin {pod}\"\n    meta l4proto {p} dnat to {to}{tcp_too}\n  }}"
            );
        }
        // Traffic from outside the cluster's pods is masqueraded (kube-proxy's --cluster-cidr).
        let mark = match &cluster_cidr {
            Some(c) => format!("{fam} saddr != {c} jump mark-for-masquerade"),
            None => "jump mark-for-masquerade".to_string(),
        };
        let _ = writeln!(
            chains,
            "  chain {c} {{\n    {mark}\n    numgen random mod {} vmap {{ {} }}\n  }}",
            eps.len(),
            vmap.join(", ")
        );
        let lvmap: Vec<String> = local
            .iter()
            .enumerate()
            .map(|(j, &i)| vmap[i].replacen(&format!("{i} :"), &format!("{j} :"), 1))
            .collect();
        let lb = |marks: &str| {
            format!(
                "{marks}    numgen random mod {} vmap {{ {} }}\n",
                local.len(),
                lvmap.join(", ")
            )
        };
        if svc.internal_local && !local.is_empty() {
            let _ = writeln!(
                chains,
                "  chain {c}-local {{\n{}  }}",
                lb(&format!("    {mark}\n"))
            );
        }
        // The client's address is kept: no masquerade mark.
        if svc.external_local && !local.is_empty() && svc.node_port.is_some() {
            let _ = writeln!(chains, "  chain {c}-external-local {{\n{}  }}", lb(""));
        }
    }
    let _ = writeln!(s, "  chain services {{\n{services}  }}");
    s.push_str(&chains);
    let _ = writeln!(s, "  chain filter-forward {{\n    type filter hook forward priority -110; policy accept;\n{rejects}  }}");
    let _ = writeln!(s, "  chain filter-output {{\n    type filter hook output priority -110; policy accept;\n{rejects}  }}");
    let _ = writeln!(s, "  chain filter-input {{\n    type filter hook input priority -110; policy accept;\n{nodeport_rejects}  }}");
    s.push_str(&cluster_ips_check(t, k, family));
    s.push_str("}\n");
    s
}

/// kube-proxy's `cluster-ips-check` (nftables mode), run on new flows after DNAT: a packet still
/// addressed to a ClusterIP found no Service port of that IP and protocol, and is rejected;
/// one to an unallocated address of the service CIDR is dropped.
fn cluster_ips_check(t: &Topology, k: &K8s, family: Family) -> String {
    let fam = family.nft();
    let cidr = match family {
        Family::V4 => Some(k.service_cidr.to_string()),
        Family::V6 => k.service_cidr6.map(|c| c.to_string()),
    };
    let ips: Vec<String> = k
        .services
        .iter()
        .filter_map(|svc| service_in(t, svc, family).map(|(vip, _)| vip.to_string()))
        .collect();
    // A named set, as kube-proxy keeps it: it adds a Service's ClusterIP when it programs the
    // Service, and a fault that makes it lose one removes the element.
    let kind = match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    };
    let elements = match ips.is_empty() {
        true => String::new(),
        false => format!(" elements = {{ {} }};", ips.join(", ")),
    };
    let mut out = format!("  set {CLUSTER_IPS_SET} {{ type {kind};{elements} }}\n");
    let mut body = format!("    {fam} daddr @{CLUSTER_IPS_SET} reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n");
    if let Some(c) = cidr {
        let _ = writeln!(
            body,
            "    {fam} daddr {c} drop comment \"Drop traffic to unallocated ClusterIPs\""
        );
    }
    // After the nat hooks (dstnat -100, output -100), as kube-proxy's filter chains run.
    let _ = writeln!(out, "  chain cluster-ips-check {{\n{body}  }}");
    for hook in ["forward", "output"] {
        let _ = writeln!(out, "  chain filter-{hook}-post-dnat {{\n    type filter hook {hook} priority 0; policy accept;\n    ct state new jump cluster-ips-check\n  }}");
    }
    out
}

/// Everything of the Kubernetes layer one node's nft holds, rendered from `spec`: kube-proxy's
/// table and the policies' (one `nft -f` transaction replaces both).
pub fn node_script(t: &Topology, spec: &K8s, node: &str) -> String {
    format!(
        "{}{}",
        kube_proxy_script(t, spec, node),
        super::policy::policy_script(t, spec, node)
    )
}

/// The cluster DNS server: one thread answering from the topology's records on a UDP socket
/// opened in the DNS pod's namespace.
pub struct DnsServer {
    stop: Arc<AtomicBool>,
    /// The UDP and the TCP server (`dig +tcp`, and resolvers retrying a truncated answer).
    threads: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
    pub addr: SocketAddr,
}

impl DnsServer {
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        records: DnsRecords,
        domain: String,
    ) -> Result<DnsServer> {
        let (sock, listener) = ns
            .run(move || {
                let s = UdpSocket::bind(addr)?;
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Ok::<_, std::io::Error>((s, l))
            })
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("opening the DNS server's sockets on {addr}"), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, tcp_flag) = (stop.clone(), stop.clone());
        let (tcp_records, tcp_domain) = (records.clone(), domain.clone());
        // Its sockets are the lab's; the threads themselves stay at home.
        let udp = crate::netns::spawn_home("netfault-dns", move || {
            serve(sock, &records, &domain, &flag);
            Ok(())
        })
        .map_err(|e| Error::io("starting the DNS server thread", e))?;
        let mut server = DnsServer {
            stop,
            threads: vec![udp],
            addr,
        };
        let tcp = crate::netns::spawn_home("netfault-dns-tcp", move || {
            serve_tcp(listener, &tcp_records, &tcp_domain, &tcp_flag);
            Ok(())
        })
        .map_err(|e| Error::io("starting the DNS server's TCP thread", e))?;
        server.threads.push(tcp);
        Ok(server)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(sock: UdpSocket, records: &DnsRecords, domain: &str, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = answer(&buf[..n], records, domain) {
            let _ = sock.send_to(&reply, peer);
        }
    }
}

/// DNS over TCP (RFC 7766): each message after its two-byte length, answered the same way; one
/// client at a time (lab resolvers ask little), each bounded by a read timeout.
fn serve_tcp(l: std::net::TcpListener, records: &DnsRecords, domain: &str, stop: &AtomicBool) {
    use std::io::{Read, Write};
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut c, _)) = l.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = c.set_nonblocking(false);
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let mut len = [0u8; 2];
        while !stop.load(Ordering::Relaxed) && c.read_exact(&mut len).is_ok() {
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if c.read_exact(&mut q).is_err() {
                break;
            }
            let Some(reply) = answer(&q, records, domain) else {
                break;
            };
            let mut msg = (reply.len() as u16).to_be_bytes().to_vec();
            msg.extend_from_slice(&reply);
            if c.write_all(&msg).is_err() {
                break;
            }
        }
    }
}

/// The answer to one query: A records from `records`; NXDOMAIN inside the cluster domain;
/// SERVFAIL outside it (nothing is forwarded out of the lab).
pub fn answer(q: &[u8], records: &DnsRecords, domain: &str) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{rdata::A, rdata::AAAA, RData, Record, RecordType};
    let m = Message::from_vec(q).ok()?;
    if m.message_type() != MessageType::Query {
        return None;
    }
    let mut r = Message::new();
    r.set_id(m.id())
        .set_message_type(MessageType::Response)
        .set_op_code(m.op_code())
        .set_recursion_desired(m.recursion_desired())
        .set_recursion_available(false)
        .set_authoritative(true);
    let Some(query) = m.queries().first() else {
        r.set_response_code(ResponseCode::FormErr);
        return r.to_vec().ok();
    };
    r.add_query(query.clone());
    let name = query.name().to_ascii().to_ascii_lowercase();
    let suffix = format!("{}.", domain.trim_end_matches('.'));
    // A name with no record of the asked type is NOERROR with no answer (NODATA), as CoreDNS
    // answers AAAA for an IPv4-only Service.
    let rdata = |(v4, v6): &(Ipv4Addr, Option<Ipv6Addr>)| match query.query_type() {
        RecordType::A => Some(RData::A(A(*v4))),
        RecordType::AAAA => v6.map(|a| RData::AAAA(AAAA(a))),
        _ => None,
    };
    match records.get(&name) {
        Some(rec) => {
            if let Some(data) = rdata(rec) {
                r.add_answer(Record::from_rdata(query.name().clone(), 5, data));
            }
        }
        None if name.ends_with(&format!(".{suffix}")) || name == suffix => {
            r.set_response_code(ResponseCode::NXDomain);
        }
        None => {
            r.set_response_code(ResponseCode::ServFail);
        }
    }
    r.to_vec().ok()
}

/// The Kubernetes side of a live lab.
#[derive(Default)]
pub struct K8sRuntime {
    /// Each pod's resolv.conf, for a lab in memory only.
    pub resolv: Mutex<BTreeMap<String, String>>,
    /// A named lab's name: its resolv.conf files live on disk, where `netfault exec` and
    /// `ip netns exec` mount them.
    pub pinned: Option<String>,
    pub dns: Mutex<Option<DnsServer>>,
}

impl K8sRuntime {
    pub fn resolv_conf(&self, pod: &str) -> Option<String> {
        match &self.pinned {
            Some(lab) => std::fs::read_to_string(crate::paths::resolv_dir(lab).join(pod)).ok(),
            None => self.resolv.lock().ok()?.get(pod).cloned(),
        }
    }

    pub fn set_resolv_conf(&self, pod: &str, text: &str) -> Result<()> {
        match &self.pinned {
            Some(lab) => write_pinned_resolv(lab, pod, text),
            None => {
                self.resolv
                    .lock()
                    .map_err(|_| Error::other("resolv.conf lock poisoned"))?
                    .insert(pod.to_string(), text.to_string());
                Ok(())
            }
        }
    }
}

/// Writes every pod's resolv.conf of the pinned lab `lab`.
pub fn write_resolv_confs(t: &Topology, lab: &str) -> Result<()> {
    for (pod, _) in t.pods() {
        if let Some(text) = t.resolv_conf(pod) {
            write_pinned_resolv(lab, pod, &text)?;
        }
    }
    Ok(())
}

/// A pinned pod's resolv.conf, twice: in the lab's directory (which `netfault exec` mounts) and
/// as `/etc/netns/LAB-POD/resolv.conf`, which `ip netns exec LAB-POD` bind-mounts over
/// /etc/resolv.conf.
fn write_pinned_resolv(lab: &str, pod: &str, text: &str) -> Result<()> {
    let ours = crate::paths::resolv_dir(lab).join(pod);
    let theirs = crate::paths::etc_netns(lab, pod).join("resolv.conf");
    for file in [ours, theirs] {
        if let Some(d) = file.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        std::fs::write(&file, text)
            .map_err(|e| Error::io(format!("writing {pod}'s resolv.conf {}", file.display()), e))?;
    }
    Ok(())
}

/// The DNS server's address and records, if the fixture declares cluster DNS.
pub fn dns_endpoint(t: &Topology) -> Option<(String, SocketAddr)> {
    let d = t.k8s.dns.as_ref()?;
    let p = t.host(&d.pod)?.as_pod()?;
    Some((d.pod.clone(), SocketAddr::from((p.ip, d.port))))
}

/// Nodes with a bridge port per pod: (node, host veth of each pod).
pub fn hairpin_ports(t: &Topology) -> Vec<(String, String)> {
    if !t.has_bridge() {
        return Vec::new();
    }
    t.hosts
        .iter()
        .filter_map(|h| match &h.role {
            Role::Pod(p) if !p.host_veth.is_empty() => Some((p.node.clone(), p.host_veth.clone())),
            _ => None,
        })
        .collect()
}
