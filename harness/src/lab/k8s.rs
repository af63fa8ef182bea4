//! The Kubernetes layer of a lab: one node's nft script (kube-proxy's table, rendered in
//! `kube_proxy`, and the policies', in `policy`), hairpin on pod bridge ports, per-pod
//! resolv.conf and the cluster DNS server.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::topology::k8s::{DnsRecords, K8s};
use crate::topology::{Role, Topology};

/// Everything of the Kubernetes layer one node's nft holds, rendered from `spec`: kube-proxy's
/// table and the policies' (one `nft -f` transaction replaces both).
pub fn node_script(t: &Topology, spec: &K8s, node: &str) -> String {
    // In iptables mode kube-proxy's rules are iptables chains (`kube_proxy_iptables`).
    let kube_proxy = match spec.proxy_mode {
        crate::topology::k8s::ProxyMode::Nftables => {
            super::kube_proxy::kube_proxy_script(t, spec, node)
        }
        crate::topology::k8s::ProxyMode::Iptables => String::new(),
    };
    format!(
        "{}{}",
        kube_proxy,
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
