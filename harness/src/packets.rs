//! Packet captures: while a case runs (or a drill is checked), a ring of the last packets that
//! crossed each lab interface, from AF_PACKET sockets opened inside the lab's namespaces (no
//! tcpdump). When something failed, the rings are written as one pcap file per interface
//! (`HOST-IFNAME.pcap`, readable by Wireshark and tcpdump), and each broken pair is matched to
//! the file that saw its last packet: where the packet was last seen is where to look.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::matrix::Matrix;

/// `SIOCGSTAMP`: the receive time of the last packet read from a socket.
const SIOCGSTAMP: libc::c_ulong = 0x8906;

/// Packets kept per interface.
pub const RING: usize = 256;
/// Bytes kept per packet (headers and then some).
pub const SNAPLEN: usize = 256;

#[derive(Debug, Clone)]
pub struct Frame {
    /// Kernel receive time.
    pub ts: Duration,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

type Rings = BTreeMap<(String, String), VecDeque<Frame>>;

/// A running capture on every host of a lab.
pub struct Capture {
    addresses: BTreeMap<String, Ipv4Addr>,
    rings: Arc<Mutex<Rings>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// What a stopped capture holds.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// Each host's own address (where a pair's packets come from).
    pub addresses: BTreeMap<String, Ipv4Addr>,
    pub rings: Rings,
}

/// A pcap file written for a failure.
#[derive(Debug, Clone, Serialize)]
pub struct PcapFile {
    pub path: PathBuf,
    pub host: String,
    pub ifname: String,
    pub packets: usize,
    /// Broken pairs (`from → to proto`) whose last packet this interface saw.
    pub last_packets_of: Vec<String>,
}

impl PcapFile {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} ({} packets on {} {})",
            self.path.display(),
            self.packets,
            self.host,
            self.ifname
        );
        if !self.last_packets_of.is_empty() {
            s.push_str(&format!(
                ": the last packets of {}",
                self.last_packets_of.join(", ")
            ));
        }
        s
    }
}

impl Capture {
    /// Opens a packet socket in every host of the lab; capturing starts at once.
    pub fn start(lab: &Lab) -> Result<Capture> {
        let rings: Arc<Mutex<Rings>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut ready = Vec::new();
        for h in lab.hosts() {
            let (rings, stop, host) = (rings.clone(), stop.clone(), h.name.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            let t =
                h.ns.spawn_inside("netfault-capture", move || {
                    let fd = match open_socket() {
                        Ok(fd) => {
                            let _ = tx.send(Ok(()));
                            fd
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return Ok(());
                        }
                    };
                    capture_loop(fd, &host, &rings, &stop);
                    Ok(())
                })
                .map_err(|e| Error::io("starting a capture thread", e))?;
            threads.push(t);
            ready.push((h.name.clone(), rx));
        }
        let cap = Capture {
            addresses: lab
                .topology()
                .hosts
                .iter()
                .map(|h| (h.name.clone(), h.address()))
                .collect(),
            rings,
            stop,
            threads,
        };
        for (host, rx) in ready {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::other(format!("{host}: packet socket: {e}"))),
                Err(_) => return Err(Error::other(format!("{host}: capture thread died"))),
            }
        }
        Ok(cap)
    }

    /// Stops every thread (they hold the lab's namespaces) and returns the rings.
    pub fn stop(mut self) -> Captured {
        self.halt();
        let rings = std::mem::take(&mut *self.rings.lock().expect("rings"));
        Captured {
            addresses: std::mem::take(&mut self.addresses),
            rings,
        }
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}

fn open_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let sock = socket2::SockRef::from(&fd);
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let _ = sock.set_recv_buffer_size(1 << 20);
    Ok(fd)
}

fn capture_loop(fd: std::os::fd::OwnedFd, host: &str, rings: &Mutex<Rings>, stop: &AtomicBool) {
    use std::os::fd::AsRawFd;
    let mut names: BTreeMap<i32, String> = BTreeMap::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: recvfrom into our buffer with a sockaddr_ll of the right size.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&mut addr as *mut libc::sockaddr_ll).cast(),
                &mut alen,
            )
        };
        if n < 0 {
            continue; // the read timeout: look at the stop flag
        }
        let orig_len = n as usize;
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: SIOCGSTAMP writes the last packet's receive time into tv.
        let ts = if unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSTAMP, &mut tv) } == 0 {
            Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000)
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        };
        let ifname = names
            .entry(addr.sll_ifindex)
            .or_insert_with(|| ifname_of(addr.sll_ifindex))
            .clone();
        if ifname == "lo" {
            continue;
        }
        let keep = orig_len.min(SNAPLEN).min(buf.len());
        let frame = Frame {
            ts,
            orig_len: orig_len as u32,
            data: buf[..keep].to_vec(),
        };
        let mut r = rings.lock().expect("rings");
        let ring = r.entry((host.to_string(), ifname)).or_default();
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(frame);
    }
}

fn ifname_of(index: i32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into buf.
    let p = unsafe { libc::if_indextoname(index as u32, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{index}");
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// One probe's packets: its requests from `src` to `dst` (at `port`), and the answers to them.
/// The reverse pair's probes between the same two addresses are not this pair's.
struct Flow {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: crate::topology::Proto,
    port: Option<u16>,
}

impl Flow {
    fn holds(&self, frame: &[u8]) -> bool {
        use crate::topology::Proto;
        let Some((s, d)) = ipv4_addrs(frame) else {
            return false;
        };
        let ip = &frame[14..];
        let Some(l4) = ip.get(usize::from(ip[0] & 0x0f) * 4..) else {
            return false;
        };
        let (want, request) = match (s, d) {
            (s, d) if (s, d) == (self.src, self.dst) => (true, true),
            (s, d) if (s, d) == (self.dst, self.src) => (true, false),
            _ => (false, false),
        };
        if !want || l4.len() < 4 {
            return false;
        }
        let ports = (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        );
        let at_port = |p: u16| self.port.is_none_or(|want| want == p);
        match (self.proto, ip[9]) {
            // Echo request out, echo reply back.
            (Proto::Icmp, 1) => l4[0] == if request { 8 } else { 0 },
            (Proto::Tcp, 6) | (Proto::Udp | Proto::Dns, 17) | (Proto::Dns, 6) => {
                at_port(if request { ports.1 } else { ports.0 })
            }
            _ => false,
        }
    }
}

/// IPv4 source and destination of an Ethernet frame.
fn ipv4_addrs(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    Some((src, dst))
}

impl Captured {
    pub fn is_empty(&self) -> bool {
        self.rings.values().all(|r| r.is_empty())
    }

    /// Writes one pcap per interface that saw packets into `dir`, and names for each pair not
    /// as expected in `m` the interface that saw its last packet (either direction).
    pub fn write_for(&self, dir: &Path, m: &Matrix) -> Result<Vec<PcapFile>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut last: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for c in m.mismatches() {
            let Some(&src) = self.addresses.get(&c.from) else {
                continue;
            };
            let mut target = c.target.split(':');
            let Ok(dst) = target.next().unwrap_or_default().parse::<Ipv4Addr>() else {
                continue;
            };
            let port = target.next().and_then(|p| p.parse::<u16>().ok());
            let flow = Flow {
                src,
                dst,
                proto: c.proto,
                port,
            };
            let latest = self
                .rings
                .iter()
                .flat_map(|(k, ring)| ring.iter().map(move |f| (k, f)))
                .filter(|(_, f)| flow.holds(&f.data))
                .max_by_key(|(_, f)| f.ts);
            if let Some((k, _)) = latest {
                last.entry(k.clone())
                    .or_default()
                    .push(crate::drill::cell_key(c));
            }
        }
        let mut out = Vec::new();
        for ((host, ifname), ring) in &self.rings {
            if ring.is_empty() {
                continue;
            }
            let path = dir.join(format!("{host}-{ifname}.pcap"));
            write_pcap(&path, ring)?;
            out.push(PcapFile {
                path,
                host: host.clone(),
                ifname: ifname.clone(),
                packets: ring.len(),
                last_packets_of: last
                    .get(&(host.clone(), ifname.clone()))
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        // The files that explain something first.
        out.sort_by_key(|f| (f.last_packets_of.is_empty(), f.path.clone()));
        Ok(out)
    }
}

fn write_pcap(path: &Path, ring: &VecDeque<Frame>) -> Result<()> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::DataLink;
    let file = std::fs::File::create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    // Frames are cut at SNAPLEN, but the header's snaplen must also cover each frame's
    // original length: some readers (the pcap-file crate) refuse a longer one, and full-size
    // pings are longer than SNAPLEN.
    let longest = ring.iter().map(|f| f.orig_len).max().unwrap_or(0);
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: longest.max(SNAPLEN as u32),
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(std::io::BufWriter::new(file), header)
        .map_err(|e| Error::other(format!("{}: {e}", path.display())))?;
    for f in ring {
        w.write_packet(&PcapPacket::new(f.ts, f.orig_len, &f.data))
            .map_err(|e| Error::other(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_found_by_their_ipv4_addresses() {
        let mut f = vec![0u8; 34];
        f[12] = 0x08;
        f[14 + 12..14 + 16].copy_from_slice(&[10, 244, 1, 2]);
        f[14 + 16..14 + 20].copy_from_slice(&[203, 0, 113, 10]);
        assert_eq!(
            ipv4_addrs(&f),
            Some((Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(203, 0, 113, 10)))
        );
        f[13] = 0x06; // ARP
        assert_eq!(ipv4_addrs(&f), None);
    }

    /// An Ethernet frame with an IPv4 header (no options) and the first bytes of its payload.
    fn frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        f.extend(ip);
        f.extend(l4);
        f
    }

    #[test]
    fn a_pairs_packets_are_its_requests_and_their_answers_not_the_reverse_pairs() {
        use crate::topology::Proto;
        let (a, b) = ([10, 244, 1, 2], [203, 0, 113, 10]);
        let tcp = Flow {
            src: Ipv4Addr::from(a),
            dst: Ipv4Addr::from(b),
            proto: Proto::Tcp,
            port: Some(80),
        };
        let p = |sport: u16, dport: u16| {
            let s = sport.to_be_bytes();
            let d = dport.to_be_bytes();
            [s[0], s[1], d[0], d[1]]
        };
        assert!(tcp.holds(&frame(a, b, 6, p(40000, 80))), "the SYN");
        assert!(tcp.holds(&frame(b, a, 6, p(80, 40000))), "its answer");
        assert!(
            !tcp.holds(&frame(b, a, 6, p(40001, 80))),
            "the reverse pair's probe"
        );
        assert!(
            !tcp.holds(&frame(a, b, 17, p(40000, 80))),
            "another protocol"
        );
        let icmp = Flow {
            proto: Proto::Icmp,
            port: None,
            ..tcp
        };
        assert!(icmp.holds(&frame(a, b, 1, [8, 0, 0, 0])));
        assert!(icmp.holds(&frame(b, a, 1, [0, 0, 0, 0])));
        assert!(
            !icmp.holds(&frame(b, a, 1, [8, 0, 0, 0])),
            "the reverse pair's ping"
        );
    }
}
