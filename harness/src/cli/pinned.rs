//! Breaking and mending a pinned lab from the command line: `fault`, `heal` and `reset`.

use crate::error::Error;
use crate::fault::pinned::{self, Which};
use crate::fault::Fault;
use crate::lab::Lab;

use super::out::*;

/// `netfault fault LAB SPEC...`: injects each fault in order (all checked first); with no
/// fault, lists the ones the lab holds.
pub(super) async fn fault(name: &str, specs: &[String], out: Out) -> Result<(), Error> {
    let lab = Lab::attach(name).await?;
    if specs.is_empty() {
        return list(name, out);
    }
    let faults = specs
        .iter()
        .map(|s| Fault::parse_spec(s))
        .collect::<Result<Vec<_>, String>>()
        .map_err(Error::BadInput)?;
    for f in &faults {
        f.check(lab.topology()).map_err(|e| Error::InvalidFault {
            fault: f.spec(),
            source: e,
        })?;
    }
    let mut injected = Vec::new();
    for f in &faults {
        let id = pinned::inject(&lab, name, f).await?;
        if out.chatty() {
            println!("#{id} {} injected into lab {name}", f.spec());
        }
        injected.push(serde_json::json!({ "id": id, "fault": f.spec() }));
    }
    if out.json {
        emit_json(&serde_json::json!({ "lab": name, "injected": injected }));
    } else if out.chatty() {
        println!(
            "netfault status {name} shows what broke; netfault heal {name} [N|--all] puts it back"
        );
    }
    Ok(())
}

fn list(name: &str, out: Out) -> Result<(), Error> {
    let active = pinned::active(name)?;
    if out.json {
        let v: Vec<_> = active
            .iter()
            .map(|a| serde_json::json!({ "id": a.id, "fault": a.fault().spec() }))
            .collect();
        emit_json(&serde_json::json!({ "lab": name, "faults": v }));
    } else if active.is_empty() {
        println!("lab {name} holds no fault netfault injected");
    } else {
        for a in &active {
            println!("#{} {}", a.id, a.fault().spec());
        }
    }
    Ok(())
}

/// `netfault heal LAB [FAULT] [--all]`: exactly what each fault changed goes back.
pub(super) async fn heal(
    name: &str,
    which: Option<&str>,
    all: bool,
    out: Out,
) -> Result<(), Error> {
    let lab = Lab::attach(name).await?;
    let which = match (which, all) {
        (Some(w), _) => Which::One(w),
        (None, true) => Which::All,
        (None, false) => Which::Sole,
    };
    let healed = pinned::heal(&lab, name, which).await?;
    let specs: Vec<String> = healed.iter().map(Fault::spec).collect();
    if out.json {
        emit_json(&serde_json::json!({ "lab": name, "healed": specs }));
    } else if out.chatty() {
        if specs.is_empty() {
            println!("lab {name} holds no fault netfault injected: nothing to heal");
        }
        for s in specs {
            println!("healed {s}");
        }
    }
    Ok(())
}

/// `netfault reset LAB`: the fixture's state again, from whatever was done; prints what changed.
pub(super) async fn reset(name: &str, out: Out) -> Result<(), Error> {
    let lab = Lab::attach(name).await?;
    let before = crate::diagnose::capture(&lab).await?;
    let t0 = std::time::Instant::now();
    let r = lab.reset().await?;
    pinned::forget_all(name)?;
    let after = crate::diagnose::capture(&lab).await?;
    let mut changed = crate::diagnose::diff(&before, &after);
    // The state diff shows the sysctls diagnosis reads; the rest as the reset wrote them.
    let extra: Vec<String> = r
        .sysctls
        .iter()
        .filter(|(host, key, _, _)| !sysctl_listed(&changed, host, key))
        .map(|(host, key, was, now)| format!("{host}: sysctl {key} {was} → {now}"))
        .collect();
    changed.extend(extra);
    let ms = t0.elapsed().as_millis();
    if out.json {
        emit_json(&serde_json::json!({
            "lab": name, "changed_back": changed, "notes": r.notes, "ms": ms,
        }));
    } else if out.chatty() {
        if changed.is_empty() {
            println!("lab {name} was as its fixture builds it: nothing changed back ({ms} ms)");
        } else {
            println!("lab {name} reset to its fixture in {ms} ms; changed back:");
            for l in &changed {
                println!("  {l}");
            }
        }
        for n in &r.notes {
            println!("  note: {n}");
        }
    }
    Ok(())
}

/// Whether the state diff has a line for `key` on `host` (`node1: sysctl net.ipv4.conf.{all,
/// eth0}.forwarding 0 → 1` lists several keys at once).
fn sysctl_listed(diff: &[String], host: &str, key: &str) -> bool {
    let prefix = format!("{host}: sysctl ");
    diff.iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| l.split(' ').next())
        .any(|pattern| expand(pattern).iter().any(|k| k == key))
}

/// `a.{x,y}.b` → `a.x.b`, `a.y.b`.
fn expand(pattern: &str) -> Vec<String> {
    match (pattern.find('{'), pattern.find('}')) {
        (Some(a), Some(b)) if a < b => pattern[a + 1..b]
            .split(',')
            .map(|alt| format!("{}{alt}{}", &pattern[..a], &pattern[b + 1..]))
            .collect(),
        _ => vec![pattern.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sysctl_the_diff_lists_is_not_listed_twice() {
        let diff = vec![
            "node1: sysctl net.ipv4.ip_forward 0 → 1".to_string(),
            "node1: sysctl net.ipv4.conf.{all,default}.forwarding 0 → 1".to_string(),
        ];
        assert!(sysctl_listed(&diff, "node1", "net.ipv4.ip_forward"));
        assert!(sysctl_listed(
            &diff,
            "node1",
            "net.ipv4.conf.default.forwarding"
        ));
        assert!(!sysctl_listed(
            &diff,
            "node1",
            "net.ipv4.conf.all.accept_redirects"
        ));
        assert!(!sysctl_listed(&diff, "node2", "net.ipv4.ip_forward"));
    }
}
