//! From what the kernel said to an outcome: errnos and queued ICMP errors (DESIGN.md's table).

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

/// A queued socket error (IP_RECVERR) as an outcome, naming the ICMP type and who sent it.
pub fn classify_ee(ee: &libc::sock_extended_err, offender: Option<Ipv4Addr>) -> Observation {
    let from = offender.map(|a| format!(" from {a}")).unwrap_or_default();
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
        return o;
    }
    let e = std::io::Error::from_raw_os_error(ee.ee_errno as i32);
    let mut o = classify_errno(&e, "send");
    if let Some(d) = o.detail.as_mut() {
        d.push_str(&from);
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
    fn icmp_errors_map_to_the_contract() {
        let via = Some(Ipv4Addr::new(10, 244, 1, 1));
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
    fn errnos_map_to_the_contract() {
        let o = |c| classify_errno(&std::io::Error::from_raw_os_error(c), "connect").outcome;
        assert_eq!(o(libc::ECONNREFUSED), Outcome::Refused);
        assert_eq!(o(libc::ENETUNREACH), Outcome::Unreachable);
        assert_eq!(o(libc::EHOSTUNREACH), Outcome::Unreachable);
        assert_eq!(o(libc::ETIMEDOUT), Outcome::Timeout);
    }
}
