//! Route messages in a saved undo log (a pinned lab's faults outlive the process that injected
//! them): each route as the netlink bytes the kernel sent, parsed back the same way.

use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::route::RouteMessage;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn to_bytes(r: &RouteMessage) -> Vec<u8> {
    let mut buf = vec![0u8; r.buffer_len()];
    r.emit(&mut buf);
    buf
}

fn from_bytes<E: serde::de::Error>(b: &[u8]) -> Result<RouteMessage, E> {
    RouteMessage::parse(b).map_err(|e| E::custom(format!("a saved route does not parse: {e}")))
}

/// `Vec<RouteMessage>`.
pub mod list {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[RouteMessage], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(to_bytes).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RouteMessage>, D::Error> {
        let raw: Vec<Vec<u8>> = Vec::deserialize(d)?;
        raw.iter().map(|b| from_bytes(b)).collect()
    }
}

/// `Vec<(RouteMessage, String)>`: each route with its output interface's name.
pub mod named {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[(RouteMessage, String)], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|(r, n)| (to_bytes(r), n))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(RouteMessage, String)>, D::Error> {
        let raw: Vec<(Vec<u8>, String)> = Vec::deserialize(d)?;
        raw.into_iter()
            .map(|(b, n)| Ok((from_bytes::<D::Error>(&b)?, n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_survives_the_round_trip() {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute};
        let mut r = RouteMessage::default();
        r.header.address_family = netlink_packet_route::AddressFamily::Inet;
        r.header.destination_prefix_length = 24;
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                "10.244.1.0".parse().unwrap(),
            )));
        r.attributes.push(RouteAttribute::Oif(7));
        let back: RouteMessage = from_bytes::<serde_json::Error>(&to_bytes(&r)).unwrap();
        assert_eq!(back, r);
        let bad = from_bytes::<serde_json::Error>(&[1, 2]);
        assert!(bad.is_err());
    }
}
