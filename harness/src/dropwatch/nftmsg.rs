//! nf_tables' trace messages (`NFT_MSG_TRACE` on the `NFNLGRP_NFTRACE` netlink group, what
//! `nft monitor trace` prints) decoded into what a watch needs: each chain's view of a traced
//! packet, the drops, and the deletion of the trace's own table (`NFNLGRP_NFTABLES`), which
//! comes after every trace of a packet handled before it.

use std::net::Ipv4Addr;

use crate::topology::Proto;

pub(super) const NFNLGRP_NFTABLES: u32 = 7;
pub(super) const NFNLGRP_NFTRACE: u32 = 9;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_TRACE: u16 = 17;

// enum nft_trace_attributes
const TRACE_TABLE: u16 = 1;
const TRACE_CHAIN: u16 = 2;
const TRACE_RULE_HANDLE: u16 = 3;
const TRACE_TYPE: u16 = 4;
const TRACE_VERDICT: u16 = 5;
const TRACE_ID: u16 = 6;
const TRACE_NETWORK_HEADER: u16 = 8;
const TRACE_TRANSPORT_HEADER: u16 = 9;
const TRACE_POLICY: u16 = 16;
const TYPE_POLICY: u32 = 1;
const TYPE_RULE: u32 = 3;
const VERDICT_CODE: u16 = 1;
const NF_DROP: u32 = 0;
const TABLE_NAME: u16 = 1;

/// What one message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Trace {
    /// A chain's view of the packet of trace `id` (its first event in that chain).
    Packet {
        id: u32,
        table: String,
        packet: Packet,
    },
    /// A chain dropped the packet of trace `id`: a rule's verdict (its handle) or the policy.
    Dropped {
        id: u32,
        family: &'static str,
        table: String,
        chain: String,
        rule: Option<u64>,
    },
    /// Table `table` of family ip was deleted.
    TableDeleted { table: String },
}

/// A traced packet's addresses, and where its headers show them its protocol's ports (an ICMP
/// echo's identifier stands for both).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub flow: Option<Flow>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flow {
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
    /// For an ICMP echo, whether it is the reply (None: TCP and UDP, either direction).
    pub reply: Option<bool>,
}

/// Every message in one netlink datagram, decoded where it is one of ours.
pub fn decode(buf: &[u8]) -> Vec<Trace> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        message(kind, &rest[16..len], &mut out);
        rest = &rest[align(len).min(rest.len())..];
    }
    out
}

fn message(kind: u16, body: &[u8], out: &mut Vec<Trace>) {
    if kind >> 8 != NFNL_SUBSYS_NFTABLES || body.len() < 4 {
        return;
    }
    let family = body[0];
    let attrs = attributes(&body[4..]);
    let get = |t: u16| attrs.iter().find(|(k, _)| *k == t).map(|(_, v)| *v);
    match kind & 0xff {
        NFT_MSG_DELTABLE if family == libc::NFPROTO_IPV4 as u8 => {
            if let Some(table) = get(TABLE_NAME).map(string) {
                out.push(Trace::TableDeleted { table });
            }
        }
        NFT_MSG_TRACE => {
            let (Some(id), Some(table)) = (get(TRACE_ID).and_then(be32), get(TRACE_TABLE)) else {
                return;
            };
            let table = string(table);
            if let Some(packet) =
                get(TRACE_NETWORK_HEADER).and_then(|n| packet(n, get(TRACE_TRANSPORT_HEADER)))
            {
                out.push(Trace::Packet {
                    id,
                    table: table.clone(),
                    packet,
                });
            }
            let dropped = match get(TRACE_TYPE).and_then(be32) {
                Some(TYPE_RULE) => {
                    get(TRACE_VERDICT).map(attributes).and_then(|v| {
                        v.iter()
                            .find(|(k, _)| *k == VERDICT_CODE)
                            .and_then(|(_, c)| be32(c))
                    }) == Some(NF_DROP)
                }
                Some(TYPE_POLICY) => get(TRACE_POLICY).and_then(be32) == Some(NF_DROP),
                _ => false,
            };
            if dropped {
                out.push(Trace::Dropped {
                    id,
                    family: family_name(family),
                    table,
                    chain: get(TRACE_CHAIN).map(string).unwrap_or_default(),
                    rule: get(TRACE_RULE_HANDLE).and_then(be64),
                });
            }
        }
        _ => {}
    }
}

fn family_name(f: u8) -> &'static str {
    match f as i32 {
        libc::NFPROTO_INET => "inet",
        libc::NFPROTO_IPV4 => "ip",
        libc::NFPROTO_ARP => "arp",
        libc::NFPROTO_NETDEV => "netdev",
        libc::NFPROTO_BRIDGE => "bridge",
        libc::NFPROTO_IPV6 => "ip6",
        _ => "unknown",
    }
}

/// An IPv4 header and the start of its transport header.
fn packet(net: &[u8], transport: Option<&[u8]>) -> Option<Packet> {
    if net.len() < 20 || net[0] >> 4 != 4 {
        return None;
    }
    let addr = |i: usize| Ipv4Addr::new(net[i], net[i + 1], net[i + 2], net[i + 3]);
    let th = transport.unwrap_or_default();
    let port = |i: usize| th.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let flow = match net[9] as i32 {
        libc::IPPROTO_UDP => port(0).zip(port(2)).map(|(s, d)| (Proto::Udp, s, d, None)),
        libc::IPPROTO_TCP => port(0).zip(port(2)).map(|(s, d)| (Proto::Tcp, s, d, None)),
        libc::IPPROTO_ICMP => {
            let reply = match th.first() {
                Some(8) => Some(false),
                Some(0) => Some(true),
                _ => None,
            };
            port(4)
                .zip(reply)
                .map(|(id, r)| (Proto::Icmp, id, id, Some(r)))
        }
        _ => None,
    };
    Some(Packet {
        saddr: addr(12),
        daddr: addr(16),
        flow: flow.map(|(proto, sport, dport, reply)| Flow {
            proto,
            sport,
            dport,
            reply,
        }),
    })
}

/// (type, payload) of each attribute; the nested and byte-order flags cleared from the type.
fn attributes(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        b = &b[align(len).min(b.len())..];
    }
    out
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

fn string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((payload.len() + 4) as u16).to_ne_bytes().to_vec();
        a.extend(kind.to_ne_bytes());
        a.extend(payload);
        a.resize(align(a.len()), 0);
        a
    }

    fn msg(kind: u16, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = attrs.concat();
        let len = 16 + 4 + body.len();
        let mut m = (len as u32).to_ne_bytes().to_vec();
        m.extend(((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend([family, 0, 0, 0]);
        m.extend(body);
        m
    }

    fn ipv4(proto: u8, s: [u8; 4], d: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, proto, 0, 0];
        h.extend(s);
        h.extend(d);
        h
    }

    #[test]
    fn a_trace_gives_the_packet_and_its_drop() {
        let udp_ports = [0x9c, 0x41, 0, 7, 0, 11, 0, 0];
        let verdict = attr(VERDICT_CODE | 0x8000, &NF_DROP.to_be_bytes());
        let m = msg(
            NFT_MSG_TRACE,
            libc::NFPROTO_INET as u8,
            &[
                attr(TRACE_TABLE, b"netfault-policy\0"),
                attr(TRACE_CHAIN, b"egress-pod-a\0"),
                attr(TRACE_RULE_HANDLE, &12u64.to_be_bytes()),
                attr(TRACE_TYPE, &TYPE_RULE.to_be_bytes()),
                attr(TRACE_VERDICT | 0x8000, &verdict),
                attr(TRACE_ID, &0x0b78e423u32.to_be_bytes()),
                attr(
                    TRACE_NETWORK_HEADER,
                    &ipv4(17, [10, 244, 1, 2], [203, 0, 113, 10]),
                ),
                attr(TRACE_TRANSPORT_HEADER, &udp_ports),
            ],
        );
        let deleted = msg(
            NFT_MSG_DELTABLE,
            2,
            &[attr(TABLE_NAME, b"netfault_watch\0")],
        );
        let got = decode(&[m, deleted].concat());
        assert_eq!(
            got,
            vec![
                Trace::Packet {
                    id: 0x0b78e423,
                    table: "netfault-policy".into(),
                    packet: Packet {
                        saddr: "10.244.1.2".parse().unwrap(),
                        daddr: "203.0.113.10".parse().unwrap(),
                        flow: Some(Flow {
                            proto: Proto::Udp,
                            sport: 40001,
                            dport: 7,
                            reply: None
                        }),
                    },
                },
                Trace::Dropped {
                    id: 0x0b78e423,
                    family: "inet",
                    table: "netfault-policy".into(),
                    chain: "egress-pod-a".into(),
                    rule: Some(12),
                },
                Trace::TableDeleted {
                    table: "netfault_watch".into()
                },
            ]
        );
    }

    #[test]
    fn a_policy_drop_and_an_icmp_echo_reply() {
        let echo_reply = [0u8, 0, 0, 0, 0x10, 0x92, 0, 1];
        let m = msg(
            NFT_MSG_TRACE,
            2,
            &[
                attr(TRACE_TABLE, b"filter\0"),
                attr(TRACE_CHAIN, b"FORWARD\0"),
                attr(TRACE_TYPE, &TYPE_POLICY.to_be_bytes()),
                attr(TRACE_POLICY, &NF_DROP.to_be_bytes()),
                attr(TRACE_ID, &7u32.to_be_bytes()),
                attr(
                    TRACE_NETWORK_HEADER,
                    &ipv4(1, [203, 0, 113, 10], [10, 244, 1, 2]),
                ),
                attr(TRACE_TRANSPORT_HEADER, &echo_reply),
            ],
        );
        let got = decode(&m);
        let Trace::Packet { packet, .. } = &got[0] else {
            panic!("{got:?}");
        };
        let f = packet.flow.unwrap();
        assert_eq!((f.proto, f.sport, f.reply), (Proto::Icmp, 4242, Some(true)));
        assert!(matches!(
            &got[1],
            Trace::Dropped {
                rule: None,
                family: "ip",
                ..
            }
        ));
        // An accepting policy is no drop; an ICMP error has no flow of its own.
        let accept = msg(
            NFT_MSG_TRACE,
            2,
            &[
                attr(TRACE_TABLE, b"filter\0"),
                attr(TRACE_TYPE, &TYPE_POLICY.to_be_bytes()),
                attr(TRACE_POLICY, &1u32.to_be_bytes()),
                attr(TRACE_ID, &8u32.to_be_bytes()),
                attr(TRACE_NETWORK_HEADER, &ipv4(1, [10, 0, 0, 1], [10, 0, 0, 2])),
                attr(TRACE_TRANSPORT_HEADER, &[3, 1, 0, 0, 0, 0, 0, 0]),
            ],
        );
        let got = decode(&accept);
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Trace::Packet { packet, .. } if packet.flow.is_none()));
    }
}
