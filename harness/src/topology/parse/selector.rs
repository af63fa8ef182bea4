//! A selector in a fixture: `{ app = "web" }` (labels, as `matchLabels`), or the API's full
//! form `{ match_labels = { ... }, match_expressions = [{ key, operator, values }] }`. Told
//! apart by type: a label's value is a string, the full form's fields are not.

use toml::Value;

use super::super::k8s::{Labels, Operator, Requirement, Selector};
use super::super::source::Key;
use super::validator::Validator;

impl Validator<'_> {
    pub(super) fn selector(&mut self, at: &[Key], raw: &toml::Table) -> Selector {
        let full = raw.values().any(|v| !v.is_str());
        if !full {
            return Selector::labels(string_map(raw));
        }
        let mut sel = Selector::default();
        for (k, v) in raw {
            match (k.as_str(), v) {
                ("match_labels", Value::Table(t)) if t.values().all(Value::is_str) => {
                    sel.match_labels = string_map(t);
                }
                ("match_expressions", Value::Array(a)) => {
                    for (i, e) in a.iter().enumerate() {
                        let at_e: Vec<Key> = at
                            .iter()
                            .cloned()
                            .chain([Key::Field("match_expressions"), Key::Index(i)])
                            .collect();
                        if let Some(r) = self.requirement(&at_e, e) {
                            sel.match_expressions.push(r);
                        }
                    }
                }
                _ => self.err(
                    at,
                    format!("\"{k}\" in a selector that is not labels"),
                    Some("a selector is labels ({ app = \"web\" }) or { match_labels = { app = \"web\" }, match_expressions = [{ key = \"tier\", operator = \"In\", values = [\"a\"] }] }".into()),
                ),
            }
        }
        sel
    }

    /// One `matchExpressions` entry, as `ValidateLabelSelectorRequirement`: In and NotIn need
    /// values, Exists and DoesNotExist take none.
    fn requirement(&mut self, at: &[Key], v: &Value) -> Option<Requirement> {
        let help = "write { key = \"tier\", operator = \"In\", values = [\"front\"] }";
        let Some(t) = v.as_table() else {
            self.err(at, "a match expression is not a table", Some(help.into()));
            return None;
        };
        if let Some(k) = t
            .keys()
            .find(|k| !["key", "operator", "values"].contains(&k.as_str()))
        {
            self.err(
                at,
                format!("unknown field \"{k}\" in a match expression"),
                Some(help.into()),
            );
            return None;
        }
        let key = t.get("key").and_then(Value::as_str);
        let op = t.get("operator").and_then(Value::as_str);
        let (Some(key), Some(op)) = (key, op) else {
            self.err(
                at,
                "a match expression needs a key and an operator",
                Some(help.into()),
            );
            return None;
        };
        let Some(operator) = Operator::ALL.into_iter().find(|o| o.as_str() == op) else {
            let ops: Vec<&str> = Operator::ALL.iter().map(|o| o.as_str()).collect();
            self.err(
                at,
                format!("operator \"{op}\" is not {}", ops.join(", ")),
                crate::topology::did_you_mean(op, ops.iter().copied())
                    .map(|s| format!("did you mean \"{s}\"?")),
            );
            return None;
        };
        let values: Vec<String> = match t.get("values") {
            None => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_str) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            Some(_) => {
                self.err(at, "values is not a list of strings", Some(help.into()));
                return None;
            }
        };
        if operator.takes_values() == values.is_empty() {
            let why = if operator.takes_values() {
                "must be non-empty"
            } else {
                "must be empty"
            };
            self.err(
                at,
                format!("{op}: values {why}"),
                Some("In and NotIn name at least one value; Exists and DoesNotExist none".into()),
            );
            return None;
        }
        Some(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }
}

fn string_map(t: &toml::Table) -> Labels {
    t.iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}
