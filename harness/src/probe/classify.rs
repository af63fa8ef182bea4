//! From what the kernel said to an outcome: errnos and queued ICMP errors (DESIGN.md's table).

use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;

use super::spec::Observation;
use crate::topology::Outcome;

/// An errno from a probe socket (connect, send, recv) as an outcome.
pub fn classify_errno(e: &std::io::Error, step: &str) -> Observation {
    let Some(code) = e.raw_os_error() else {
        return Observation::new(Outcome::Unreachable, format!("{step}: {e}"));
    };
    let (outcome, what) = match code {
        libc::ECONNREFUSED => (
            Outcome::Refused,
            "refused (TCP reset or ICMP port unreachable)",
        ),
        libc::ECONNRESET => (Outcome::Refused, "connection reset"),
        libc::ENETUNREACH => (Outcome::Unreachable, "network unreachable (no route)"),
        libc::EHOSTUNREACH => (Outcome::Unreachable, "host unreachable"),
        libc::EACCES => (Outcome::Unreachable, "prohibited by a route"),
        libc::EPERM => (
            Outcome::Unreachable,
            "the source's own firewall refused to send",
        ),
        libc::EINVAL => (
            Outcome::Unreachable,
            "the source kernel refused the destination (blackhole route?)",
        ),
        libc::EMSGSIZE => (Outcome::Unreachable, "message too long for the path MTU"),
        libc::ETIMEDOUT => (Outcome::Timeout, "timed out"),
        // A device dropped it on transmit (a veth whose peer cannot take the frame, a full
        // neighbour table); IP_RECVERR reports what a sender is normally not told: dropped.
        libc::ENOBUFS => (Outcome::Timeout, "dropped on transmit"),
        _ => (Outcome::Unreachable, ""),
    };
    let errno = nix::errno::Errno::from_raw(code);
    let detail = if what.is_empty() {
        format!("{step}: {errno} ({})", errno.desc())
    } else {
        format!("{what}: {errno} at {step}")
    };
    Observation::new(outcome, detail)
}

/// ICMP errors a UDP socket takes as soft (`icmp_err_convert` in net/ipv4/icmp.c and
/// `icmpv6_err_convert` in net/ipv6/icmp.c: not fatal): a connected socket without
/// IP_RECVERR, as ordinary clients use, never hears of them and times out. The prober asks for
/// them, so its verdict names them.
const SOFT_FOR_UDP: [&str; 9] = [
    "ICMP net unreachable",
    "ICMP host unreachable",
    "ICMP fragmentation needed",
    "ICMP time exceeded",
    "ICMPv6 no route to destination",
    "ICMPv6 beyond scope",
    "ICMPv6 address unreachable",
    "ICMPv6 packet too big",
    "ICMPv6 time exceeded",
];

/// Says, on a UDP probe's `unreachable`, when ordinary UDP clients would not see its cause.
pub fn note_hidden_from_udp_clients(o: &mut Observation) {
    if o.outcome != Outcome::Unreachable {
        return;
    }
    if let Some(d) = o.detail.as_mut() {
        if SOFT_FOR_UDP.iter().any(|s| d.starts_with(s)) {
            d.push_str(
                " (ordinary UDP clients never see this ICMP error: they time out; netfault asks \
                 the kernel for it with IP_RECVERR)",
            );
        }
    }
}

/// A queued socket error (IP_RECVERR) as an outcome, naming the ICMP type and who sent it.
pub fn classify_ee(ee: &libc::sock_extended_err, offender: Option<IpAddr>) -> Observation {
    let from = offender.map(|a| format!(" from {a}")).unwrap_or_default();
    if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6 {
        return classify_icmp6(ee, offender, &from);
    }
    if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP {
        let (outcome, what) = match (ee.ee_type, ee.ee_code) {
            (3, 0) => (Outcome::Unreachable, "ICMP net unreachable".to_string()),
            (3, 1) => (Outcome::Unreachable, "ICMP host unreachable".to_string()),
            (3, 2) => (Outcome::Refused, "ICMP protocol unreachable".to_string()),
            (3, 3) => (Outcome::Refused, "ICMP port unreachable".to_string()),
            (3, 4) => (
                Outcome::Unreachable,
                format!("ICMP fragmentation needed (mtu {})", ee.ee_info),
            ),
            (3, 9) | (3, 10) | (3, 13) => (
                Outcome::Unreachable,
                "ICMP administratively prohibited".to_string(),
            ),
            (3, c) => (
                Outcome::Unreachable,
                format!("ICMP destination unreachable code {c}"),
            ),
            (11, _) => (
                Outcome::Unreachable,
                "ICMP time exceeded (a routing loop?)".to_string(),
            ),
            (t, c) => (Outcome::Unreachable, format!("ICMP type {t} code {c}")),
        };
        let mut o = Observation::new(outcome, format!("{what}{from}"));
        // Net and host unreachable are what a router's routing sends (rate-limited per source).
        if ee.ee_type == 3 && matches!(ee.ee_code, 0 | 1) {
            o.routing_error_from = offender;
        }
        if (ee.ee_type, ee.ee_code) == (3, 4) && ee.ee_info > 0 {
            o.next_hop_mtu = Some(ee.ee_info as usize);
        }
        return o;
    }
    let e = std::io::Error::from_raw_os_error(ee.ee_errno as i32);
    let mut o = classify_errno(&e, "send");
    if let Some(d) = o.detail.as_mut() {
        d.push_str(&from);
    }
    o
}

/// An ICMPv6 error (RFC 4443) as its IPv4 twin would be: port unreachable refuses, every other
/// destination unreachable code, packet too big and time exceeded are unreachable.
fn classify_icmp6(
    ee: &libc::sock_extended_err,
    offender: Option<IpAddr>,
    from: &str,
) -> Observation {
    let (outcome, what) = match (ee.ee_type, ee.ee_code) {
        (1, 0) => (
            Outcome::Unreachable,
            "ICMPv6 no route to destination".to_string(),
        ),
        (1, 1) => (
            Outcome::Unreachable,
            "ICMPv6 administratively prohibited".to_string(),
        ),
        (1, 2) => (Outcome::Unreachable, "ICMPv6 beyond scope".to_string()),
        (1, 3) => (
            Outcome::Unreachable,
            "ICMPv6 address unreachable".to_string(),
        ),
        (1, 4) => (Outcome::Refused, "ICMPv6 port unreachable".to_string()),
        (1, 5) => (
            Outcome::Unreachable,
            "ICMPv6 source address failed policy".to_string(),
        ),
        (1, 6) => (Outcome::Unreachable, "ICMPv6 reject route".to_string()),
        (1, c) => (
            Outcome::Unreachable,
            format!("ICMPv6 destination unreachable code {c}"),
        ),
        (2, _) => (
            Outcome::Unreachable,
            format!("ICMPv6 packet too big (mtu {})", ee.ee_info),
        ),
        (3, _) => (
            Outcome::Unreachable,
            "ICMPv6 time exceeded (a routing loop?)".to_string(),
        ),
        (t, c) => (Outcome::Unreachable, format!("ICMPv6 type {t} code {c}")),
    };
    let mut o = Observation::new(outcome, format!("{what}{from}"));
    // No route and address unreachable are what routing and neighbour discovery send
    // (rate-limited per source, as IPv4's net and host unreachable).
    if ee.ee_type == 1 && matches!(ee.ee_code, 0 | 3) {
        o.routing_error_from = offender;
    }
    if ee.ee_type == 2 && ee.ee_info > 0 {
        o.next_hop_mtu = Some(ee.ee_info as usize);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ee(t: u8, c: u8) -> libc::sock_extended_err {
        libc::sock_extended_err {
            ee_errno: libc::EHOSTUNREACH as u32,
            ee_origin: libc::SO_EE_ORIGIN_ICMP,
            ee_type: t,
            ee_code: c,
            ee_pad: 0,
            ee_info: 0,
            ee_data: 0,
        }
    }

    #[test]
    fn a_udp_unreachable_says_when_ordinary_clients_would_not_see_it() {
        let via = Some(IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1)));
        let mut o = classify_ee(&ee(3, 1), via);
        note_hidden_from_udp_clients(&mut o);
        assert!(o.detail.unwrap().contains("ordinary UDP clients never see"));
        // Administratively prohibited is a hard error: a connected socket gets EHOSTUNREACH.
        let mut o = classify_ee(&ee(3, 13), via);
        note_hidden_from_udp_clients(&mut o);
        assert!(!o.detail.unwrap().contains("ordinary UDP clients"));
        let mut o = classify_ee(&ee(3, 3), via);
        note_hidden_from_udp_clients(&mut o);
        assert!(!o.detail.unwrap().contains("ordinary UDP clients"));
    }

    #[test]
    fn icmp_errors_map_to_the_contract() {
        let via = Some(IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!(classify_ee(&ee(3, 3), via).outcome, Outcome::Refused);
        let o = classify_ee(&ee(3, 1), via);
        assert_eq!(o.outcome, Outcome::Unreachable);
        assert_eq!(
            o.detail.as_deref(),
            Some("ICMP host unreachable from 10.244.1.1")
        );
        assert_eq!(classify_ee(&ee(3, 13), None).outcome, Outcome::Unreachable);
        assert_eq!(classify_ee(&ee(3, 0), None).outcome, Outcome::Unreachable);
    }

    #[test]
    fn icmp6_errors_map_like_their_ipv4_twins() {
        let six = |t, c| libc::sock_extended_err {
            ee_origin: libc::SO_EE_ORIGIN_ICMP6,
            ..ee(t, c)
        };
        let via: Option<IpAddr> = Some("fd00:10:244:1::1".parse().unwrap());
        assert_eq!(classify_ee(&six(1, 4), via).outcome, Outcome::Refused);
        let o = classify_ee(&six(1, 3), via);
        assert_eq!(o.outcome, Outcome::Unreachable);
        assert_eq!(o.routing_error_from, via);
        assert_eq!(
            o.detail.as_deref(),
            Some("ICMPv6 address unreachable from fd00:10:244:1::1")
        );
        assert_eq!(classify_ee(&six(1, 1), via).outcome, Outcome::Unreachable);
        let mut o = classify_ee(&six(1, 0), via);
        note_hidden_from_udp_clients(&mut o);
        assert!(o.detail.unwrap().contains("ordinary UDP clients"));
        let mut o = classify_ee(&six(1, 1), via);
        note_hidden_from_udp_clients(&mut o);
        assert!(!o.detail.unwrap().contains("ordinary UDP clients"));
    }

    #[test]
    fn errnos_map_to_the_contract() {
        let o = |c| classify_errno(&std::io::Error::from_raw_os_error(c), "connect").outcome;
        assert_eq!(o(libc::ECONNREFUSED), Outcome::Refused);
        assert_eq!(o(libc::ENETUNREACH), Outcome::Unreachable);
        assert_eq!(o(libc::EHOSTUNREACH), Outcome::Unreachable);
        assert_eq!(o(libc::ETIMEDOUT), Outcome::Timeout);
    }
}
