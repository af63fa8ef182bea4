//! Where CNI plugins are found.

use serde::Serialize;
use std::path::PathBuf;

/// Where plugins are looked for: `NETFAULT_CNI_PATH` (colon-separated) if set, else the
/// fixture's `[cni] path`, else /usr/lib/cni then /opt/cni/bin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PluginPath(pub Vec<PathBuf>);

impl PluginPath {
    pub fn resolve(fixture: &[PathBuf]) -> PluginPath {
        if let Some(env) = std::env::var_os("NETFAULT_CNI_PATH").filter(|v| !v.is_empty()) {
            return PluginPath(std::env::split_paths(&env).collect());
        }
        if !fixture.is_empty() {
            return PluginPath(fixture.to_vec());
        }
        PluginPath(vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()])
    }

    pub fn find(&self, plugin: &str) -> Option<PathBuf> {
        if plugin.contains('/') {
            return None;
        }
        self.0.iter().map(|d| d.join(plugin)).find(|p| p.is_file())
    }

    pub fn env_value(&self) -> String {
        self.0
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}
