//! Running one plugin binary: its environment and config (the list's name and version,
//! `runtimeConfig` limited to its capabilities, `prevResult`), inside the node namespace.

use super::path::PluginPath;
use crate::netns::Netns;
use crate::topology::conflist::{Attachment, CniError, ConfList};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a plugin run printed.
pub struct Exec {
    pub stdout: String,
    pub stderr: String,
    pub exit: i32,
}

/// Runs plugins for one lab: its plugin path, its state directory, its PATH for the helpers
/// plugins run (iptables).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub path: PluginPath,
    /// IPAM and tuning state (per lab).
    pub data_dir: PathBuf,
    /// The PATH plugins see (they run iptables); None: netfault's own.
    pub exec_path: Option<String>,
}

/// What one plugin answered to STATUS or GC.
#[derive(Debug, Clone, Serialize)]
pub struct PluginReply {
    pub plugin: String,
    pub reply: Reply,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase", tag = "status", content = "detail")]
pub enum Reply {
    Ok,
    /// The plugin or the list predates the command.
    Skipped(String),
    Failed(CniError),
}

impl fmt::Display for PluginReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reply {
            Reply::Ok => write!(f, "{}: ok", self.plugin),
            Reply::Skipped(why) => write!(f, "{}: skipped ({why})", self.plugin),
            Reply::Failed(e) => write!(f, "{}: {e}", self.plugin),
        }
    }
}

pub(super) fn plugin_type(p: &Value) -> String {
    p.get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string()
}

pub(super) const PLUGIN_TIMEOUT: Duration = Duration::from_secs(20);

impl Runtime {
    /// Runs one plugin with a command, in `node`'s namespace, for the attachment `att`
    /// (container, namespace, interface; its result is not used here).
    pub async fn exec(
        &self,
        node: &Netns,
        plugin: &str,
        command: &str,
        att: &Attachment,
        stdin: Value,
    ) -> Result<Exec, CniError> {
        let fail = |msg: String| CniError {
            plugin: plugin.to_string(),
            command: command.to_string(),
            exit: None,
            code: None,
            msg,
            stderr: String::new(),
        };
        let Some(bin) = self.path.find(plugin) else {
            return Err(fail(format!(
                "no plugin binary \"{plugin}\" in {}",
                self.path.env_value()
            )));
        };
        // VERSION, STATUS and GC concern no attachment: their variables are left unset.
        let env: Vec<(String, String)> = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", att.container_id.clone()),
            ("CNI_NETNS", att.netns.clone()),
            ("CNI_IFNAME", att.ifname.clone()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .chain([
            ("CNI_PATH".into(), self.path.env_value()),
            (
                "PATH".into(),
                self.exec_path
                    .clone()
                    .or_else(|| std::env::var("PATH").ok())
                    .unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ),
        ])
        .collect();
        let input = serde_json::to_vec(&stdin).expect("json");
        let run = node.run_async(move || -> std::io::Result<Exec> {
            use std::io::Write;
            let mut child = Command::new(&bin)
                .env_clear()
                .envs(env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            // A plugin may answer without reading its config (VERSION does): the pipe then
            // breaks, and its exit status and output decide, not the write.
            match child.stdin.take().expect("piped").write_all(&input) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
            crate::testhook::pause("cni:exec");
            let out = child.wait_with_output()?;
            crate::testhook::pause("cni:done");
            Ok(Exec {
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                exit: out.status.code().unwrap_or(-1),
            })
        });
        let out = match tokio::time::timeout(PLUGIN_TIMEOUT, run).await {
            Err(_) => {
                return Err(fail(format!(
                    "did not finish within {} s",
                    PLUGIN_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(e)) | Ok(Ok(Err(e))) => return Err(fail(format!("cannot run it: {e}"))),
            Ok(Ok(Ok(x))) => x,
        };
        if out.exit != 0 {
            let v: Option<Value> = serde_json::from_str(out.stdout.trim()).ok();
            let code = v
                .as_ref()
                .and_then(|v| v.get("code"))
                .and_then(|c| c.as_u64());
            let mut msg = v
                .as_ref()
                .and_then(|v| v.get("msg"))
                .and_then(|m| m.as_str())
                .map(String::from)
                .unwrap_or_else(|| out.stdout.trim().to_string());
            if let Some(d) = v
                .as_ref()
                .and_then(|v| v.get("details"))
                .and_then(|d| d.as_str())
            {
                if !d.is_empty() {
                    msg.push_str(&format!(": {d}"));
                }
            }
            if msg.is_empty() {
                msg = "no message".into();
            }
            return Err(CniError {
                plugin: plugin.to_string(),
                command: command.to_string(),
                exit: Some(out.exit),
                code,
                msg,
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(out)
    }

    /// The config one plugin of a list gets: the list's name and version, its runtimeConfig
    /// limited to its capabilities, the previous result, state directories under the lab's.
    pub(super) fn plugin_conf(
        &self,
        list: &ConfList,
        plugin: &Value,
        prev: Option<&Value>,
        runtime_config: &Value,
    ) -> Value {
        let mut c = plugin.clone();
        let obj = c.as_object_mut().expect("plugin object");
        obj.insert("name".into(), json!(list.name));
        obj.insert("cniVersion".into(), json!(list.cni_version));
        let caps: Vec<String> = plugin
            .get("capabilities")
            .and_then(|c| c.as_object())
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let rc: serde_json::Map<String, Value> = runtime_config
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| caps.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if !rc.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(rc));
        }
        if let Some(p) = prev {
            obj.insert("prevResult".into(), p.clone());
        }
        if let Some(ipam) = obj.get_mut("ipam").and_then(|i| i.as_object_mut()) {
            if ipam.get("type").and_then(|t| t.as_str()) == Some("host-local")
                && !ipam.contains_key("dataDir")
            {
                ipam.insert("dataDir".into(), json!(self.data_dir.join("ipam")));
            }
        }
        if plugin.get("type").and_then(|t| t.as_str()) == Some("tuning")
            && !obj.contains_key("dataDir")
        {
            obj.insert("dataDir".into(), json!(self.data_dir.join("tuning")));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_config_is_limited_to_capabilities() {
        let rt = Runtime {
            path: PluginPath(vec![]),
            data_dir: "/run/x".into(),
            exec_path: None,
        };
        let l = ConfList {
            cni_version: "1.0.0".into(),
            name: "net".into(),
            plugins: vec![
                json!({"type":"bridge","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}),
                json!({"type":"portmap","capabilities":{"portMappings":true}}),
            ],
        };
        let rc = json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"bandwidth":{}});
        let c0 = rt.plugin_conf(&l, &l.plugins[0], None, &rc);
        assert!(c0.get("runtimeConfig").is_none());
        assert_eq!(c0["name"], "net");
        assert_eq!(c0["ipam"]["dataDir"], "/run/x/ipam");
        let prev = json!({"cniVersion":"1.0.0"});
        let c1 = rt.plugin_conf(&l, &l.plugins[1], Some(&prev), &rc);
        assert!(c1["runtimeConfig"].get("portMappings").is_some());
        assert!(c1["runtimeConfig"].get("bandwidth").is_none());
        assert_eq!(c1["prevResult"], prev);
    }
}
