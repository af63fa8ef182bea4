//! The catalog for people: a fault as `name key=value ...`, and the catalog as a Markdown page.

use std::fmt;

use super::registry::{Fault, CATALOG};

impl Fault {
    /// The fault's parameters as `key=value` pairs, in catalog order.
    pub(super) fn params(&self) -> Vec<(&'static str, String)> {
        let v = serde_json::to_value(self).unwrap_or_default();
        let kind = CATALOG.iter().find(|k| k.name == self.name());
        kind.map(|k| k.params)
            .unwrap_or(&[])
            .iter()
            .filter_map(|(p, _)| {
                let x = v.get(*p)?;
                if x.is_null() {
                    return None;
                }
                Some((
                    *p,
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string()),
                ))
            })
            .collect()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        for (k, v) in self.params() {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// The catalog as the Markdown page `docs/faults.md` (generated; a test keeps it current).
pub fn catalog_markdown() -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "# The fault catalog\n\n\
         Generated from the code (`netfault::fault::catalog_markdown`); `netfault faults` prints the \
         same. Use a kind in a case as `[[fault]] type = \"NAME\"` with its parameters, or on the \
         command line as `NAME:key=value,...`.\n\n\
         | kind | parameters | what it does | blamed as | example |\n|---|---|---|---|---|\n",
    );
    for k in CATALOG {
        let params: Vec<String> = k
            .params
            .iter()
            .map(|(p, what)| format!("`{p}` ({what})"))
            .collect();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | `{}` | `{}` |",
            k.name,
            if params.is_empty() {
                "none".to_string()
            } else {
                params.join(", ")
            },
            k.description.replace('|', "\\|"),
            k.component,
            k.example
        );
    }
    s
}
