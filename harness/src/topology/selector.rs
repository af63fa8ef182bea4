//! A label selector as Kubernetes defines it (`metav1.LabelSelector`): `matchLabels` and
//! `matchExpressions`, ANDed. Pure data and its meaning; the fixture parser builds it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A pod's or namespace's labels.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    pub match_labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry: `key operator values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Operator {
    pub const ALL: [Operator; 4] = [
        Operator::In,
        Operator::NotIn,
        Operator::Exists,
        Operator::DoesNotExist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        }
    }

    /// Whether the operator takes values: In and NotIn need at least one, Exists and
    /// DoesNotExist none (`ValidateLabelSelectorRequirement`).
    pub fn takes_values(self) -> bool {
        matches!(self, Operator::In | Operator::NotIn)
    }
}

impl Requirement {
    /// As `labels.Requirement.Matches`: NotIn also matches a pod without the key.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl Selector {
    /// A selector of `matchLabels` only.
    pub fn labels(match_labels: Labels) -> Selector {
        Selector {
            match_labels,
            match_expressions: Vec::new(),
        }
    }

    /// Every label and every expression holds; the empty selector selects everything.
    pub fn selects(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// `app=web,tier in (a,b),!debug`, as kubectl prints a selector.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn expressions_match_as_the_label_package_does() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let bare = labels(&[]);
        let r = req("tier", Operator::In, &["front", "back"]);
        assert!(r.matches(&web) && !r.matches(&bare));
        let r = req("tier", Operator::NotIn, &["front"]);
        assert!(
            !r.matches(&web) && r.matches(&bare),
            "NotIn holds without the key"
        );
        let r = req("app", Operator::Exists, &[]);
        assert!(r.matches(&web) && !r.matches(&bare));
        let r = req("app", Operator::DoesNotExist, &[]);
        assert!(!r.matches(&web) && r.matches(&bare));
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = Selector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![req("tier", Operator::NotIn, &["back"])],
        };
        assert!(s.selects(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.selects(&labels(&[("app", "web"), ("tier", "back")])));
        assert!(!s.selects(&labels(&[("tier", "front")])));
        assert!(Selector::default().selects(&labels(&[])));
        assert_eq!(s.describe(), "app=web,tier notin (back)");
    }
}
