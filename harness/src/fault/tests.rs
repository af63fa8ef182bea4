//! The fault face's unit tests: parsing, the catalog against the enum, checks.

use super::*;
use crate::topology::{parse_fixture, Source};

#[test]
fn faults_parse_and_reject_unknown_fields() {
    let f: Fault = toml::from_str("type = \"delete-veth\"\npod = \"pod-a\"\n").unwrap();
    assert_eq!(
        f,
        Fault::DeleteVeth(kinds::DeleteVeth {
            pod: "pod-a".into()
        })
    );
    assert!(
        toml::from_str::<Fault>("type = \"delete-veth\"\npod = \"pod-a\"\nnode = \"x\"\n").is_err()
    );
    assert!(toml::from_str::<Fault>("type = \"melt-cpu\"\n").is_err());
    assert_eq!(f.to_string(), "delete-veth pod=pod-a");
    let f: Fault = toml::from_str(
        "type = \"nft-reject\"\nnode = \"node1\"\nfrom = \"pod-a\"\nproto = \"tcp\"\nport = 80\n",
    )
    .unwrap();
    assert_eq!(
        f.to_string(),
        "nft-reject node=node1 from=pod-a proto=tcp port=80"
    );
}

#[test]
fn every_variant_is_in_the_catalog() {
    let names: Vec<&str> = CATALOG.iter().map(|k| k.name).collect();
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len(), "a kind is listed twice");
    // serde names every variant of the enum when it meets an unknown one: that list, not a
    // count, is what the catalog must equal.
    let err = toml::from_str::<Fault>("type = \"no-such-fault\"\n")
        .unwrap_err()
        .to_string();
    let listed = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("serde's error names no variants: {err}"));
    let mut variants: Vec<&str> = listed
        .split(',')
        .map(|v| {
            v.trim()
                .trim_matches(|c: char| c == '`' || c.is_whitespace())
        })
        .filter(|v| !v.is_empty())
        .collect();
    variants.sort();
    assert_eq!(dedup, variants, "CATALOG and the Fault enum differ");
}

#[test]
fn parameters_are_checked_against_the_fixture() {
    let t = parse_fixture(&Source::new(
        "single-node.toml",
        include_str!("../../../fixtures/single-node.toml"),
    ))
    .unwrap();
    let e = Fault::LinkDown(kinds::LinkDown {
        host: "node1".into(),
        interface: "eth9".into(),
    })
    .check(&t)
    .unwrap_err();
    assert_eq!(e.field, "interface");
    assert_eq!(
        e.help,
        "interfaces of node1: cni0, veth-pod-a, veth-pod-b, eth0"
    );
    let e = Fault::DeleteVxlanFdb(kinds::DeleteVxlanFdb {
        node: "node1".into(),
        peer: "node1".into(),
    })
    .check(&t)
    .unwrap_err();
    assert_eq!(e.message, "the peer is the node itself");
    let e = Fault::BlockVxlanPort(kinds::BlockVxlanPort {
        node: "node1".into(),
    })
    .check(&t)
    .unwrap_err();
    assert!(e.message.contains("needs a vxlan fixture"), "{}", e.message);
    let e = Fault::PacketLoss(kinds::PacketLoss {
        host: "node1".into(),
        interface: "eth0".into(),
        percent: 0,
    })
    .check(&t)
    .unwrap_err();
    assert_eq!(e.field, "percent");
    let e = Fault::NftReject(kinds::NftReject {
        node: "node1".into(),
        from: "pod-a".into(),
        proto: None,
        port: Some(80),
    })
    .check(&t)
    .unwrap_err();
    assert_eq!(e.field, "port");
    assert!(parse_rate("1mbit").unwrap() == 1_000_000 && parse_rate("fast").is_err());
}

/// Every kind's example parses as its kind, prints back the same, renders as TOML a case file
/// reads back, and applies to one of the repository's fixtures.
#[test]
fn every_example_is_a_valid_fault_on_a_fixture() {
    let fixtures: Vec<crate::topology::Topology> = [
        (
            "single-node.toml",
            include_str!("../../../fixtures/single-node.toml"),
        ),
        (
            "two-node-vxlan.toml",
            include_str!("../../../fixtures/two-node-vxlan.toml"),
        ),
        ("k8s.toml", include_str!("../../../fixtures/k8s.toml")),
        (
            "two-node-routed.toml",
            include_str!("../../../fixtures/two-node-routed.toml"),
        ),
        (
            "dual-stack.toml",
            include_str!("../../../fixtures/dual-stack.toml"),
        ),
        (
            "dual-stack-vxlan.toml",
            include_str!("../../../fixtures/dual-stack-vxlan.toml"),
        ),
    ]
    .iter()
    .map(|(name, text)| parse_fixture(&Source::new(*name, *text)).unwrap())
    .collect();
    for k in CATALOG {
        let f = Fault::parse_spec(k.example).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        assert_eq!(f.name(), k.name, "{}", k.example);
        assert_eq!(
            f.spec(),
            k.example,
            "the example is written as spec() prints it"
        );
        let toml_text = super::spec::case_toml(&f);
        let table: toml::Table = toml::from_str(&toml_text).unwrap();
        let back: Fault = table["fault"].as_array().unwrap()[0]
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(back, f, "{toml_text}");
        assert!(
            fixtures.iter().any(|t| f.check(t).is_ok()),
            "{} fits none of the fixtures",
            k.example
        );
    }
}
