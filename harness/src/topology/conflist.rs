//! CNI configuration as data: network configuration lists, a plugin's error, and an attachment
//! (container, interface, namespace, cached result), as the CNI spec defines them. No plugin runs
//! here: the runtime (`crate::cni`) does that.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::source::{ConfigError, Source};

/// A network configuration list (a single config is a list of one).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ConfList {
    pub cni_version: String,
    pub name: String,
    pub plugins: Vec<Value>,
}

impl ConfList {
    /// Parses a conflist or a single config, with errors located in `src`.
    pub fn parse(src: &Source) -> Result<ConfList, ConfigError> {
        let v: Value = serde_json::from_str(&src.text).map_err(|e| {
            let offset = line_col_offset(&src.text, e.line(), e.column());
            src.error_at(
                offset..offset,
                format!("not valid JSON: {e}"),
                Some("a CNI config is a JSON object".into()),
            )
        })?;
        let at = |k: &str| {
            let i = src.text.find(&format!("\"{k}\"")).unwrap_or(0);
            i..i
        };
        let Some(obj) = v.as_object() else {
            return Err(src.error_at(0..0, "a CNI config must be a JSON object", None));
        };
        let mut version = obj
            .get("cniVersion")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        // Spec 1.1.0: `cniVersions` lists every version the config is valid for; the runtime
        // takes the highest it speaks.
        if let Some(list) = obj.get("cniVersions").and_then(|x| x.as_array()) {
            if let Some(best) = list
                .iter()
                .filter_map(|x| x.as_str())
                .filter(|v| !version_at_least(v, (1, 1, 1)))
                .chain((!version.is_empty()).then_some(version.as_str()))
                .max_by_key(|v| version_triple(v))
            {
                version = best.to_string();
            }
        }
        if version.is_empty() {
            return Err(src.error_at(
                0..0,
                "cniVersion is missing",
                Some("add \"cniVersion\": \"1.0.0\"".into()),
            ));
        }
        let Some(name) = obj.get("name").and_then(|x| x.as_str()).map(String::from) else {
            return Err(src.error_at(
                0..0,
                "name is missing",
                Some("add \"name\": \"netfault\"".into()),
            ));
        };
        let plugins: Vec<Value> = match obj.get("plugins") {
            Some(Value::Array(list)) => list.clone(),
            Some(_) => return Err(src.error_at(at("plugins"), "plugins must be a list", None)),
            None if obj.contains_key("type") => vec![v.clone()],
            None => {
                return Err(src.error_at(
                    0..0,
                    "neither a conflist (plugins) nor a config (type)",
                    Some("see the CNI spec's network configuration format".into()),
                ))
            }
        };
        if plugins.is_empty() {
            return Err(src.error_at(at("plugins"), "plugins is empty", None));
        }
        for p in &plugins {
            if p.get("type")
                .and_then(|t| t.as_str())
                .is_none_or(|t| t.is_empty() || t.contains('/'))
            {
                return Err(src.error_at(
                    at("plugins"),
                    "every plugin needs a \"type\" (a plugin binary's name)",
                    None,
                ));
            }
        }
        Ok(ConfList {
            cni_version: version,
            name,
            plugins,
        })
    }

    pub fn plugin_types(&self) -> Vec<String> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(|t| t.as_str()).map(String::from))
            .collect()
    }

    /// CHECK needs 0.4.0 or later.
    pub fn supports_check(&self) -> bool {
        version_at_least(&self.cni_version, (0, 4, 0))
    }
}

fn line_col_offset(text: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return off + col.saturating_sub(1).min(l.len());
        }
        off += l.len();
    }
    off
}

pub fn version_at_least(v: &str, want: (u32, u32, u32)) -> bool {
    version_triple(v) >= want
}

fn version_triple(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// A plugin's failure: which plugin, which command, its exit code and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    pub plugin: String,
    pub command: String,
    /// The exit code; None when the plugin could not be run at all.
    pub exit: Option<i32>,
    /// The CNI error code the plugin reported.
    pub code: Option<u64>,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.exit {
            Some(x) => {
                write!(
                    f,
                    "CNI plugin {} failed {} (exit {x}",
                    self.plugin, self.command
                )?;
                if let Some(c) = self.code {
                    write!(f, ", code {c}")?;
                }
                write!(f, "): {}", self.msg)?;
            }
            None => write!(
                f,
                "CNI plugin {} could not run {}: {}",
                self.plugin, self.command, self.msg
            )?,
        }
        if !self.stderr.is_empty() {
            write!(f, " [stderr: {}]", self.stderr.lines().next().unwrap_or(""))?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// One attachment: container, interface, the pod namespace and the cached result.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub result: Value,
}

impl Attachment {
    /// For the commands that concern no attachment (VERSION, STATUS, GC).
    pub fn none() -> Attachment {
        Attachment {
            container_id: String::new(),
            ifname: String::new(),
            netns: String::new(),
            result: Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflists_and_single_configs_parse() {
        let l = ConfList::parse(&Source::new("a.conflist", r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#)).unwrap();
        assert_eq!(l.plugin_types(), ["bridge", "portmap"]);
        assert!(l.supports_check());
        let c = ConfList::parse(&Source::new(
            "a.conf",
            r#"{"cniVersion":"0.3.1","name":"n","type":"ptp"}"#,
        ))
        .unwrap();
        assert_eq!(c.plugin_types(), ["ptp"]);
        assert!(!c.supports_check());
        let e = ConfList::parse(&Source::new(
            "bad.conflist",
            "{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \n}",
        ))
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.starts_with("not valid JSON"), "{e}");
        let e = ConfList::parse(&Source::new(
            "x",
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"bridge":"cni0"}]}"#,
        ))
        .unwrap_err();
        assert!(e.message.contains("needs a \"type\""), "{e}");
    }
}
