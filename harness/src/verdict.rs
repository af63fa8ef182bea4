//! What a case (or one of its steps) asserts besides outcomes: the culprits the diagnosis must
//! name, as "HOST COMPONENT", read with located errors and compared with those diagnosed.

use crate::diagnose::{Component, Culprit};
use crate::topology::source::{ConfigError, Key, Source};
use crate::topology::Topology;

/// Reads the culprits listed at `at` (each "HOST COMPONENT"), pushing an error for each that
/// names no host of `topology` or no component.
pub fn parse_culprits(
    src: &Source,
    raw: &[String],
    at: &[Key],
    topology: &Topology,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let mut culprits = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let mut here = at.to_vec();
        here.push(Key::Index(i));
        match check_culprit(c, topology) {
            Ok(c) => culprits.push(c),
            Err((message, help)) => errors.push(src.error_at_path(&here, message, Some(help))),
        }
    }
    culprits
}

fn check_culprit(c: &str, topology: &Topology) -> Result<String, (String, String)> {
    let mut parts = c.split_whitespace();
    let (Some(host), Some(component), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err((
            format!("\"{c}\" is not \"HOST COMPONENT\""),
            "for example \"node1 masquerade\"".into(),
        ));
    };
    if topology.host(host).is_none() && host != crate::topology::SWITCH_HOST {
        return Err((
            format!("unknown host \"{host}\""),
            format!(
                "hosts in {}: {}",
                topology.name,
                topology.host_names().join(", ")
            ),
        ));
    }
    if !Component::ALL.iter().any(|x| x.as_str() == component) {
        let names: Vec<&str> = Component::ALL.iter().map(|x| x.as_str()).collect();
        return Err((
            format!("unknown component \"{component}\""),
            format!("components: {}", names.join(", ")),
        ));
    }
    Ok(format!("{host} {component}"))
}

/// The expected culprits against those diagnosed: the mismatch, if any.
pub fn culprits_mismatch(want: Option<&Vec<String>>, culprits: &[Culprit]) -> Option<String> {
    let want = want?;
    let mut got: Vec<String> = culprits
        .iter()
        .map(|c| format!("{} {}", c.host, c.component))
        .collect();
    got.sort();
    got.dedup();
    let mut want = want.clone();
    want.sort();
    want.dedup();
    (got != want).then(|| {
        format!(
            "culprits: expected [{}], diagnosed [{}]",
            want.join(", "),
            got.join(", ")
        )
    })
}
