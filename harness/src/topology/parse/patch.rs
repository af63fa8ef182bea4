//! A case step's change to the cluster, as the API would take it: a fixture fragment applied
//! over the fixture (each field given replaces the one there; an object not there is created)
//! and objects deleted. Only what the API changes in a running cluster may change: pods'
//! labels and addresses (a pod deleted and re-created), namespaces' labels, NetworkPolicies and
//! Services. Nodes, the network and the probes stay as built.

use toml::{Table, Value};

/// Why a change cannot be applied: the key path inside the step's `apply`/`delete`, the
/// message and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    pub at: Vec<String>,
    pub message: String,
    pub help: String,
}

fn err(at: &[&str], message: impl Into<String>, help: impl Into<String>) -> PatchError {
    PatchError {
        at: at.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
        help: help.into(),
    }
}

/// The kinds of object a step may apply, and for pods and namespaces the fields it may change.
const KINDS: [(&str, Option<&[&str]>); 4] = [
    ("pod", Some(&["labels", "ip"])),
    ("namespace", Some(&["labels"])),
    ("policy", None),
    ("service", None),
];

/// The kinds a step may delete (a pod or namespace deleted for good is not a change a
/// fixture's matrix can follow).
const DELETABLE: [&str; 2] = ["policy", "service"];

/// `fixture` (a fixture's TOML) with `delete` removed and then `apply` merged in.
pub fn patch(fixture: &Table, apply: &Table, delete: &[String]) -> Result<Table, PatchError> {
    let mut out = fixture.clone();
    for (i, d) in delete.iter().enumerate() {
        let at = i.to_string();
        let at = ["delete", at.as_str()];
        let Some((kind, name)) = d.split_once('.') else {
            return Err(err(
                &at,
                format!("\"{d}\" is not KIND.NAME"),
                "for example \"policy.allow-web\" or \"service.web\"",
            ));
        };
        let name = name.trim_matches('"');
        if !DELETABLE.contains(&kind) {
            return Err(err(
                &at,
                format!("a step cannot delete a {kind}"),
                "steps delete policies and Services; a pod is moved by giving it a new ip",
            ));
        }
        let gone = out
            .get_mut(kind)
            .and_then(Value::as_table_mut)
            .and_then(|t| t.remove(name));
        if gone.is_none() {
            return Err(err(
                &at,
                format!("the cluster has no {kind} \"{name}\" at this step"),
                names_of(&out, kind),
            ));
        }
    }
    for (kind, objects) in apply {
        let Some((_, fields)) = KINDS.iter().find(|(k, _)| k == kind) else {
            return Err(err(
                &["apply", kind],
                format!("a step cannot change [{kind}]"),
                "steps change what the API changes in a running cluster: pod labels and \
                 addresses, namespace labels, policies and Services",
            ));
        };
        let Some(objects) = objects.as_table() else {
            return Err(err(
                &["apply", kind],
                "expected a table of objects by name",
                format!("for example [step.apply.{kind}.NAME]"),
            ));
        };
        for (name, obj) in objects {
            merge_object(&mut out, kind, name, obj, *fields)?;
        }
    }
    Ok(out)
}

fn merge_object(
    out: &mut Table,
    kind: &str,
    name: &str,
    obj: &Value,
    fields: Option<&[&str]>,
) -> Result<(), PatchError> {
    let Some(obj) = obj.as_table() else {
        return Err(err(
            &["apply", kind, name],
            "expected a table of fields",
            format!("for example [step.apply.{kind}.{name}]"),
        ));
    };
    let exists = out
        .get(kind)
        .and_then(Value::as_table)
        .is_some_and(|t| t.contains_key(name));
    if let Some(allowed) = fields {
        if kind == "pod" && !exists {
            return Err(err(
                &["apply", kind, name],
                format!("the fixture has no pod \"{name}\""),
                names_of(out, kind),
            ));
        }
        if let Some(f) = obj.keys().find(|f| !allowed.contains(&f.as_str())) {
            return Err(err(
                &["apply", kind, name, f],
                format!("a step cannot change a {kind}'s {f}"),
                format!("a step changes a {kind}'s {}", allowed.join(" and ")),
            ));
        }
    }
    let objects = out
        .entry(kind.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    let Some(objects) = objects.as_table_mut() else {
        return Err(err(
            &["apply", kind],
            "the fixture's table is not a table",
            "",
        ));
    };
    let target = objects
        .entry(name.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    if let Some(t) = target.as_table_mut() {
        for (f, v) in obj {
            t.insert(f.clone(), v.clone());
        }
    }
    Ok(())
}

fn names_of(t: &Table, kind: &str) -> String {
    let names: Vec<&str> = t
        .get(kind)
        .and_then(Value::as_table)
        .map(|t| t.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        format!("there is no {kind} to name")
    } else {
        format!("{kind}s: {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> Table {
        toml::from_str(s).unwrap()
    }

    const FIXTURE: &str = "[pod.a]\nnode = \"n\"\nip = \"10.0.0.2\"\nlabels = { app = \"x\" }\n\
                           [policy.p]\npod_selector = { app = \"x\" }\ningress = []\n";

    #[test]
    fn fields_given_replace_those_of_the_fixture_and_new_objects_are_created() {
        let out = patch(
            &table(FIXTURE),
            &table("[pod.a]\nlabels = { app = \"y\" }\n[policy.q]\npod_selector = {}\n"),
            &[],
        )
        .unwrap();
        assert_eq!(out["pod"]["a"]["labels"]["app"].as_str(), Some("y"));
        assert_eq!(out["pod"]["a"]["node"].as_str(), Some("n"));
        assert!(out["policy"].get("q").is_some() && out["policy"].get("p").is_some());
    }

    #[test]
    fn deletes_come_before_applies() {
        let out = patch(
            &table(FIXTURE),
            &table("[policy.p]\npod_selector = {}\n"),
            &["policy.p".into()],
        )
        .unwrap();
        assert!(out["policy"]["p"].get("ingress").is_none());
    }

    #[test]
    fn what_the_api_does_not_change_is_refused_with_its_place() {
        let cases = [
            (
                "[node.n]\npod_cidr = \"10.0.0.0/24\"\n",
                vec![],
                vec!["apply", "node"],
            ),
            (
                "[pod.a]\nnode = \"m\"\n",
                vec![],
                vec!["apply", "pod", "a", "node"],
            ),
            ("[pod.z]\nlabels = {}\n", vec![], vec!["apply", "pod", "z"]),
            ("", vec!["pod.a".to_string()], vec!["delete", "0"]),
            ("", vec!["policy.none".to_string()], vec!["delete", "0"]),
            ("", vec!["web".to_string()], vec!["delete", "0"]),
        ];
        for (apply, delete, at) in cases {
            let e = patch(&table(FIXTURE), &table(apply), &delete).unwrap_err();
            assert_eq!(e.at, at, "{apply} {delete:?}: {}", e.message);
            assert!(!e.help.is_empty());
        }
    }
}
