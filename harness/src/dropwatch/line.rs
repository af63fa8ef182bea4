//! One line of the instance's `trace_pipe`, parsed: a probe's window marker, a packet seen,
//! consumed or dropped (with its reason), or a route lookup that failed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a trace line says, with the thread it happened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// `nfw b RUN:PROBE` (open) or `nfw e RUN:PROBE` (close), written by a probe's thread.
    Window {
        tid: i32,
        open: bool,
        run: u64,
        probe: usize,
    },
    /// `kfree_skb`: a packet dropped, with the kernel's reason.
    Drop {
        tid: i32,
        skb: String,
        reason: String,
        location: String,
    },
    /// A packet queued to a device or received by one (`net_dev_queue`, `netif_rx`,
    /// `netif_receive_skb`).
    Seen { tid: i32, skb: String, dev: String },
    /// `consume_skb`: a packet freed as handled.
    Consumed { tid: i32, skb: String },
    /// `CPU:1 [LOST 52 EVENTS]`: the buffer overflowed; what windows open now saw is incomplete.
    Lost,
    /// A route lookup that found nothing in a table a lookup ends in (main or default).
    NoRoute {
        tid: i32,
        src: IpAddr,
        dst: IpAddr,
        err: i32,
    },
}

/// The marker text a window writes.
pub(crate) fn marker(open: bool, run: u64, probe: usize) -> String {
    format!("nfw {} {run}:{probe}\n", if open { 'b' } else { 'e' })
}

/// Drop reasons that end a packet's path whatever its timing: a filter, routing, forwarding,
/// source validation, a link that cannot carry it. Left out: reasons of sockets and TCP state
/// (other connections' housekeeping), `OTHERHOST` (a flooded frame that was not for this
/// host), and queue or rate limits (`QDISC_DROP` — a full qdisc such as tbf's under a transfer —,
/// `QDISC_OVERLIMIT`, `NEIGH_QUEUEFULL`: the next send may pass).
pub(crate) const PATH_ENDS: &[&str] = &[
    "NETFILTER_DROP",
    "IP_INHDR",
    "IP_RPFILTER",
    "IP_OUTNOROUTES",
    "IP_INADDRERRORS",
    "IP_INNOROUTES",
    "IP_LOCAL_SOURCE",
    "IP_INVALID_SOURCE",
    "IP_LOCALNET",
    "IP_INVALID_DEST",
    "NEIGH_CREATEFAIL",
    "NEIGH_FAILED",
    "NEIGH_DEAD",
    "TC_EGRESS",
    "TC_INGRESS",
    "VXLAN_INVALID_HDR",
    "VXLAN_VNI_NOT_FOUND",
    "MAC_INVALID_SOURCE",
    "NO_TX_TARGET",
    "TUNNEL_TXINFO",
    "LOCAL_MAC",
    "BRIDGE_INGRESS_STP_STATE",
    "DEV_READY",
];

pub(crate) fn parse(l: &str) -> Option<Line> {
    if l.starts_with("CPU:") && l.contains(" [LOST ") {
        return Some(Line::Lost);
    }
    let (head, body) = l.split_once(": ")?;
    let tid = thread_of(head)?;
    let (event, rest) = body.split_once(": ")?;
    match event.trim() {
        "tracing_mark_write" => window(tid, rest),
        "kfree_skb" => drop_of(tid, rest),
        "net_dev_queue" | "netif_rx" | "netif_receive_skb" => Some(Line::Seen {
            tid,
            skb: skb_of(rest)?,
            dev: rest
                .split("dev=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .to_string(),
        }),
        "consume_skb" => Some(Line::Consumed {
            tid,
            skb: skb_of(rest)?,
        }),
        "fib_table_lookup" => no_route(tid, rest),
        "fib6_table_lookup" => no_route6(tid, rest),
        _ => None,
    }
}

/// `   comm-1234   [001] b.s2. 11033.818237` → 1234 (a comm may hold spaces and dashes).
fn thread_of(head: &str) -> Option<i32> {
    let task = head.rsplit_once(" [")?.0.trim();
    task.rsplit_once('-')?.1.parse().ok()
}

fn window(tid: i32, rest: &str) -> Option<Line> {
    let mut w = rest.trim().split(' ');
    if w.next()? != "nfw" {
        return None;
    }
    let open = match w.next()? {
        "b" => true,
        "e" => false,
        _ => return None,
    };
    let (run, probe) = w.next()?.split_once(':')?;
    Some(Line::Window {
        tid,
        open,
        run: run.parse().ok()?,
        probe: probe.parse().ok()?,
    })
}

/// `skbaddr=00000000b28fdbd0` among an event's fields.
fn skb_of(rest: &str) -> Option<String> {
    let v = rest.split("skbaddr=").nth(1)?.split_whitespace().next()?;
    Some(v.to_string())
}

fn drop_of(tid: i32, rest: &str) -> Option<Line> {
    let reason = rest.split("reason: ").nth(1)?.trim();
    let location = rest
        .split("location=")
        .nth(1)
        .and_then(|x| x.split_whitespace().next())
        .map(|x| x.split('+').next().unwrap_or(x).to_string())
        .unwrap_or_default();
    Some(Line::Drop {
        tid,
        skb: skb_of(rest)?,
        reason: reason.to_string(),
        location,
    })
}

/// `table 254 oif 0 iif 1 proto 1 203.0.113.10/0 -> 10.244.1.2/0 tos 0 ... err -11`. A miss
/// in the local table (255) or a policy table is followed by the next rule's lookup: only a
/// miss in main (254) or default (253) ends one (-EAGAIN there becomes ENETUNREACH).
fn no_route(tid: i32, rest: &str) -> Option<Line> {
    let ends = |table: u32, err: i32| err != -libc::EAGAIN || table == 254 || table == 253;
    let addr = |s: &str| {
        s.split('/')
            .next()?
            .parse::<Ipv4Addr>()
            .ok()
            .map(IpAddr::from)
    };
    failed_lookup(tid, rest, ends, addr)
}

/// `table 254 oif 0 iif 1 proto 58 fd00::1/0 -> fd00::2/0 flowlabel 0 ... err -113`. IPv6
/// rules go on to the next table after any miss (a miss is the null entry, -EHOSTUNREACH):
/// only a miss in main (254) or default (253) ends a lookup.
fn no_route6(tid: i32, rest: &str) -> Option<Line> {
    let ends = |table: u32, _| table == 254 || table == 253;
    let addr = |s: &str| {
        s.rsplit_once('/')?
            .0
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::from)
    };
    failed_lookup(tid, rest, ends, addr)
}

/// A route lookup's trace line, when it failed in a way that `ends` says ends the lookup.
fn failed_lookup(
    tid: i32,
    rest: &str,
    ends: impl Fn(u32, i32) -> bool,
    addr: impl Fn(&str) -> Option<IpAddr>,
) -> Option<Line> {
    let w: Vec<&str> = rest.split_whitespace().collect();
    let after = |k: &str| w.iter().position(|x| *x == k).and_then(|i| w.get(i + 1));
    let table: u32 = after("table")?.parse().ok()?;
    let err: i32 = after("err")?.parse().ok()?;
    if err == 0 || !ends(table, err) {
        return None;
    }
    let arrow = w.iter().position(|x| *x == "->")?;
    Some(Line::NoRoute {
        tid,
        src: addr(w.get(arrow.checked_sub(1)?)?)?,
        dst: addr(w.get(arrow + 1)?)?,
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_drops_and_failed_lookups_are_read_with_their_thread() {
        assert_eq!(
            parse(" tokio-rt-worker-10902   [001] ..... 11032.2: tracing_mark_write: nfw b 3:17"),
            Some(Line::Window {
                tid: 10902,
                open: true,
                run: 3,
                probe: 17
            })
        );
        assert_eq!(marker(false, 3, 17), "nfw e 3:17\n");
        assert_eq!(
            parse("  my comm-x-77 [000] ..s2. 1.5: kfree_skb: skbaddr=0 rx_sk=0 protocol=2048 location=ip_forward+0x1c/0x40 reason: IP_INADDRERRORS"),
            Some(Line::Drop { tid: 77, skb: "0".into(), reason: "IP_INADDRERRORS".into(), location: "ip_forward".into() })
        );
        assert_eq!(
            parse(" w-5 [001] b..1. 2.0: net_dev_queue: dev=eth0 skbaddr=00000000663a7f2d len=58"),
            Some(Line::Seen {
                tid: 5,
                skb: "00000000663a7f2d".into(),
                dev: "eth0".into()
            })
        );
        assert_eq!(parse("CPU:1 [LOST 52 EVENTS]"), Some(Line::Lost));
        assert_eq!(
            parse(" w-5 [001] b.s2. 2.0: fib6_table_lookup: table 254 oif 0 iif 1 proto 58 2001:db8::10/0 -> fd00:10:244:1::2/0 flowlabel 0 tos 0 scope 0 flags 0 ==> dev lo gw :: err -113"),
            Some(Line::NoRoute { tid: 5, src: "2001:db8::10".parse().unwrap(), dst: "fd00:10:244:1::2".parse().unwrap(), err: -113 })
        );
        // A miss in the local table: main is asked next.
        assert_eq!(parse(" w-5 [001] b.s2. 2.0: fib6_table_lookup: table 255 oif 0 iif 1 proto 58 ::/0 -> fd00::2/0 flowlabel 0 tos 0 scope 0 flags 0 ==> dev lo gw :: err -113"), None);
        assert_eq!(
            parse(" w-5 [001] ..s1. 2.0: consume_skb: skbaddr=00000000e6840913 location=arp_process+0x341/0x9f0"),
            Some(Line::Consumed { tid: 5, skb: "00000000e6840913".into() })
        );
        assert_eq!(
            parse(" w-5 [001] b.s2. 2.0: fib_table_lookup: table 254 oif 0 iif 1 proto 1 203.0.113.10/0 -> 10.244.1.2/0 tos 0 scope 0 flags 0 ==> dev - gw 0.0.0.0/:: err -11"),
            Some(Line::NoRoute { tid: 5, src: "203.0.113.10".parse().unwrap(), dst: "10.244.1.2".parse().unwrap(), err: -11 })
        );
    }

    #[test]
    fn what_does_not_end_a_path_alone_is_not_a_path_end() {
        // A socket queue purged on close, a frame flooded to a host it was not for (it ends a
        // path only once no copy survived: see `fate`), a miss in the local table (the main
        // table is asked next).
        for r in ["QUEUE_PURGE", "OTHERHOST", "QDISC_DROP", "NOT_SPECIFIED"] {
            assert!(!PATH_ENDS.contains(&r), "{r}");
        }
        assert!(PATH_ENDS.contains(&"NETFILTER_DROP"));
        assert_eq!(parse(" w-5 [001] b.s2. 2.0: fib_table_lookup: table 255 oif 0 iif 1 proto 1 1.1.1.1/0 -> 2.2.2.2/0 tos 0 scope 0 flags 0 ==> dev - gw 0.0.0.0/:: err -11"), None);
        assert_eq!(
            parse(" w-5 [001] ..... 2.0: tracing_mark_write: someone else's marker"),
            None
        );
    }
}
