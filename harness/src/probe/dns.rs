//! The `dns` probe: a name looked up from a pod the way its stub resolver would (its
//! resolv.conf's first nameserver, search list and ndots), over UDP from a socket in the pod.

use std::net::{Ipv4Addr, SocketAddrV4};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use socket2::{SockAddr, Socket};
use tokio::io::Interest;
use tokio::time::Instant;

use super::classify::classify_errno;
use super::resend::Resender;
use super::sock::{errqueue, recv, register};
use super::spec::Observation;
use super::watch::changed;
use crate::dropwatch::Watched;
use crate::topology::k8s::Resolver;
use crate::topology::Outcome;

/// An A query for `name`.
pub fn query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    m.to_vec().ok()
}

enum Answer {
    Address(Ipv4Addr),
    /// NXDOMAIN, or NOERROR without an A record: the next search candidate.
    NoName,
    Servfail,
    Other(ResponseCode),
}

fn answer(b: &[u8], id: u16) -> Option<Answer> {
    let m = Message::from_vec(b).ok()?;
    if m.id() != id || m.message_type() != MessageType::Response {
        return None;
    }
    Some(match m.response_code() {
        ResponseCode::NoError => m
            .answers()
            .iter()
            .find_map(|r| match r.data() {
                Some(RData::A(a)) => Some(Answer::Address(a.0)),
                _ => None,
            })
            .unwrap_or(Answer::NoName),
        ResponseCode::NXDomain => Answer::NoName,
        ResponseCode::ServFail => Answer::Servfail,
        other => Answer::Other(other),
    })
}

/// Looks `name` up with the resolver settings `resolv` (a resolv.conf's text); `want` is the
/// address the name should have.
pub async fn lookup(
    sock: Socket,
    resolv: Option<&str>,
    name: &str,
    want: Ipv4Addr,
    deadline: Instant,
    watch: Option<Watched>,
) -> Observation {
    let Some(resolv) = resolv else {
        return Observation::new(
            Outcome::Unsupported,
            "the pod has no resolv.conf (the fixture declares no [dns])".to_string(),
        );
    };
    let r = Resolver::parse(resolv);
    let Some(server) = r.nameservers.first() else {
        return Observation::new(
            Outcome::Timeout,
            "resolv.conf names no nameserver".to_string(),
        );
    };
    if let Err(e) = sock.connect(&SockAddr::from(SocketAddrV4::new(*server, 53))) {
        return classify_errno(&e, "connect");
    }
    if let Some(w) = &watch {
        w.flow(&sock, 53);
    }
    let afd = match register(sock) {
        Ok(a) => a,
        Err(e) => {
            return Observation::new(
                Outcome::Unsupported,
                format!("cannot poll a probe socket: {e}"),
            )
        }
    };
    let mut buf = vec![0u8; 4096];
    let candidates = r.candidates(name);
    for (i, cand) in candidates.iter().enumerate() {
        let id = 0x4e00 | i as u16;
        let Some(q) = query(id, cand) else {
            return Observation::new(Outcome::Nxdomain, format!("\"{cand}\" is not a DNS name"));
        };
        let mut sends = Resender::new(&watch);
        let got = loop {
            if let Some(o) = sends.send_if_due(afd.get_ref(), &q) {
                return o;
            }
            tokio::select! {
                r = afd.ready(Interest::READABLE | Interest::ERROR) => {
                    let mut guard = match r {
                        Ok(g) => g,
                        Err(e) => return classify_errno(&e, "poll"),
                    };
                    if let Some(o) = errqueue(afd.get_ref()) {
                        return with_server(o, *server);
                    }
                    match recv(afd.get_ref(), &mut buf) {
                        Ok(n) => {
                            if let Some(a) = answer(&buf[..n], id) {
                                break a;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                        Err(e) => {
                            let o = errqueue(afd.get_ref()).unwrap_or_else(|| classify_errno(&e, "recv"));
                            return with_server(o, *server);
                        }
                    }
                }
                _ = changed(&watch) => {
                    if let Some(o) = sends.on_drops(afd.get_ref()) {
                        return o;
                    }
                }
                _ = tokio::time::sleep_until(sends.next().min(deadline)) => {
                    if Instant::now() >= deadline {
                        return sends.timed_out(Observation::new(
                            Outcome::Timeout,
                            format!("no answer from {server} for {cand}"),
                        ));
                    }
                }
            }
        };
        match got {
            Answer::Address(ip) => {
                let mut o = Observation::new(Outcome::Reachable, format!("{cand} → {ip}"));
                if ip != want {
                    o = Observation::new(
                        Outcome::Refused,
                        format!("{cand} resolved to {ip}, not {want}"),
                    );
                }
                return o;
            }
            Answer::NoName => continue,
            Answer::Servfail => {
                return Observation::new(
                    Outcome::Servfail,
                    format!("{server} answered SERVFAIL for {cand}"),
                )
            }
            Answer::Other(rc) => {
                return Observation::new(
                    Outcome::Servfail,
                    format!("{server} answered {rc} for {cand}"),
                )
            }
        }
    }
    Observation::new(
        Outcome::Nxdomain,
        format!("{server}: no such name ({})", candidates.join(", ")),
    )
}

fn with_server(mut o: Observation, server: Ipv4Addr) -> Observation {
    o.detail = Some(format!(
        "nameserver {server}: {}",
        o.detail.unwrap_or_default()
    ));
    o
}
