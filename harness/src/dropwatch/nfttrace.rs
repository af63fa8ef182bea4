//! nf_tables tracing in one namespace: a table of ours sets `meta nftrace` on the packets
//! there, and a netlink socket on the trace group reads what every chain did to them (what
//! `nft monitor trace` prints, without a process printing it). A probe run uses it live where
//! tracefs cannot be had (a rootless run: see [`super::Book::watch_nft`]); a diagnosis's
//! recording uses it for the rules that dropped its probes.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::nftmsg::{decode, NFNLGRP_NFTABLES, NFNLGRP_NFTRACE};
pub use super::nftmsg::{Flow, Packet, Trace};
use crate::netns::Netns;

/// A running trace and its table. Dropping it ends the reader and, unless
/// [`TraceMonitor::mute`] did, removes the table.
pub struct TraceMonitor {
    ns: Netns,
    table: &'static str,
    stop: Arc<AtomicBool>,
    muted: bool,
}

impl TraceMonitor {
    /// Subscribes to `ns`'s traces, then adds table `table` there; `on_trace` gets every trace
    /// message, in order, on a thread of its own, and [`Trace::TableDeleted`] once the table
    /// is deleted. Every packet sent after it returns is traced.
    pub async fn start(
        ns: &Netns,
        table: &'static str,
        on_trace: impl FnMut(Trace) + Send + 'static,
    ) -> std::io::Result<TraceMonitor> {
        let sock = ns.run_async(subscribe).await.and_then(|r| r)?;
        let stop = Arc::new(AtomicBool::new(false));
        let reading = stop.clone();
        crate::netns::spawn_home("netfault-trace", move || {
            read(&sock, &reading, on_trace);
            Ok(())
        })?;
        // Muted until the table is in: a failed start has none to delete.
        let mut monitor = TraceMonitor {
            ns: ns.clone(),
            table,
            stop,
            muted: true,
        };
        ns.run_async(move || add_table(table))
            .await
            .and_then(|r| r)?;
        monitor.muted = false;
        Ok(monitor)
    }

    /// Deletes the table: nothing more is traced, and the reader gets
    /// [`Trace::TableDeleted`] after every trace before it.
    pub async fn mute(&mut self) {
        let table = self.table;
        let _ = self.ns.run_async(move || delete_table(table)).await;
        self.muted = true;
    }
}

impl Drop for TraceMonitor {
    fn drop(&mut self) {
        // The reader sees the flag within its receive timeout and closes the socket.
        self.stop.store(true, Ordering::Relaxed);
        if !self.muted {
            let table = self.table;
            let _ = self.ns.run(move || delete_table(table));
        }
    }
}

/// A netlink socket in the current namespace on the trace and ruleset groups. Its buffer is
/// large: a round traces thousands of packets in bursts, and a reader that falls behind loses
/// messages rather than blocking the kernel (NETLINK_NO_ENOBUFS).
fn subscribe() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        if libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for group in [NFNLGRP_NFTRACE, NFNLGRP_NFTABLES] {
            setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, &group)?;
        }
        let size: libc::c_int = 8 << 20;
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
        }
        let on: libc::c_int = 1;
        setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, &on)?;
        let wait = libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        };
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &wait)?;
        Ok(sock)
    }
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, value: &T) -> std::io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live T of `len` bytes.
    let r = unsafe { libc::setsockopt(fd, level, name, value as *const T as *const _, len) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reads messages until `stop`, handing each decoded trace to `on_trace`.
fn read(sock: &OwnedFd, stop: &AtomicBool, mut on_trace: impl FnMut(Trace)) {
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            let e = std::io::Error::last_os_error();
            if n < 0
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS)
                )
            {
                continue;
            }
            return;
        }
        for t in decode(&buf[..n as usize]) {
            on_trace(t);
        }
    }
}

fn add_table(table: &str) -> std::io::Result<()> {
    // TCP only as far as its handshake (SYN, SYN-ACK): a filter drops or rejects a connection
    // there, and tracing a Kubernetes round's every segment through kube-proxy's chains is
    // thousands of messages.
    run_nft_stdin(&format!(
        "add table ip {table}\n\
         add chain ip {table} pre {{ type filter hook prerouting priority -350; }}\n\
         add chain ip {table} out {{ type filter hook output priority -350; }}\n\
         add rule ip {table} pre meta l4proto != tcp meta nftrace set 1\n\
         add rule ip {table} out meta l4proto != tcp meta nftrace set 1\n\
         add rule ip {table} pre tcp flags syn meta nftrace set 1\n\
         add rule ip {table} out tcp flags syn meta nftrace set 1\n"
    ))
}

fn delete_table(table: &str) -> std::io::Result<()> {
    run_nft_stdin(&format!("delete table ip {table}\n"))
}

fn run_nft_stdin(script: &str) -> std::io::Result<()> {
    crate::tools::run_tool("nft", &["-f", "-"], Some(script)).map(|_| ())
}

/// The text of each rule of a table, by handle, as `nft` prints it stateless (a rule's live
/// counters differ run to run) — the rule a trace names by handle. Empty where the table cannot
/// be listed.
pub fn rule_texts(ns: &Netns, family: &str, table: &str) -> HashMap<u64, String> {
    let (family, table) = (family.to_string(), table.to_string());
    let listed = ns.run(move || {
        crate::tools::run_tool("nft", &["-a", "-s", "list", "table", &family, &table], None)
    });
    match listed {
        Ok(Ok(text)) => parse_rule_texts(&text),
        _ => HashMap::new(),
    }
}

fn parse_rule_texts(listing: &str) -> HashMap<u64, String> {
    listing
        .lines()
        .filter_map(|l| {
            let (rule, handle) = l.trim().rsplit_once(" # handle ")?;
            let handle = handle.trim().parse().ok()?;
            let is_rule = !rule.ends_with('{') && !rule.starts_with("type ");
            is_rule.then(|| (handle, rule.to_string()))
        })
        .collect()
}

/// The rules a trace names by handle, listed once per (family, table) by `list`.
pub struct RuleNames<F> {
    list: F,
    known: HashMap<(String, String), HashMap<u64, String>>,
}

/// A traced drop as a diagnosis names it: the text, and whether the rule is a reject.
pub struct Named {
    pub text: String,
    pub rejected: bool,
}

impl<F: FnMut(&str, &str) -> HashMap<u64, String>> RuleNames<F> {
    pub fn new(list: F) -> Self {
        RuleNames {
            list,
            known: HashMap::new(),
        }
    }

    /// Names the drop of `saddr` → `daddr` by `chain` of `family` `table`: by its rule (its
    /// handle's text), or the chain's policy.
    pub fn name(
        &mut self,
        family: &str,
        table: &str,
        chain: &str,
        rule: Option<u64>,
        saddr: Ipv4Addr,
        daddr: Ipv4Addr,
    ) -> Named {
        let list = &mut self.list;
        let rule = rule.and_then(|h| {
            self.known
                .entry((family.to_string(), table.to_string()))
                .or_insert_with(|| list(family, table))
                .get(&h)
                .map(String::as_str)
        });
        let rejected = rule.is_some_and(|r| r.contains("reject"));
        let chain = format!("table {family} {table} chain {chain}");
        Named {
            text: stopped_text(&chain, rule, rejected, saddr, daddr),
            rejected,
        }
    }
}

/// How a diagnosis names what stopped a traced packet.
pub fn stopped_text(
    chain: &str,
    rule: Option<&str>,
    rejected: bool,
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
) -> String {
    match rule {
        Some(rule) => {
            let what = if rejected { "rejected" } else { "dropped" };
            format!("{chain} {what} {saddr} → {daddr} by rule: {rule}")
        }
        None => format!("{chain} dropped {saddr} → {daddr} by its policy"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_named_by_handle_as_nft_prints_them() {
        let listing = "table inet netfault-policy { # handle 4\n\tchain egress-pod-a { # handle 2\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tip saddr 10.244.1.2 drop comment \"pod-a egress isolated\" # handle 12\n\t}\n}\n";
        let t = parse_rule_texts(listing);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            t[&12],
            "ip saddr 10.244.1.2 drop comment \"pod-a egress isolated\""
        );
    }
}
