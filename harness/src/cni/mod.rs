//! A CNI runtime per the spec (1.0.0; 0.4.0 configs too): ADD, CHECK, DEL and VERSION of real
//! plugin binaries, single configs and conflists.
//!
//! Plugins run inside the node namespace (a plugin treats the namespace it runs in as the host);
//! `CNI_NETNS` is an nsfs path of the pod namespace (`/proc/PID/fd/N`). Conflist semantics, as
//! libcni: ADD runs the plugins in order, each with the list's name and cniVersion, its
//! `runtimeConfig` limited to its `capabilities`, and `prevResult` the previous plugin's output;
//! CHECK runs in order with the cached final result; DEL runs in reverse order with it. IPAM and
//! tuning state go to a per-lab directory, never /var/lib/cni.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::{json, Value};

use crate::netns::Netns;
pub use crate::topology::conflist::{version_at_least, Attachment, CniError, ConfList};

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

fn plugin_type(p: &Value) -> String {
    p.get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string()
}

const PLUGIN_TIMEOUT: Duration = Duration::from_secs(20);

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
    fn plugin_conf(
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

    /// ADD: every plugin in order, each given the previous one's result. If a plugin fails,
    /// the ones before it are deleted again (in reverse), so a failed ADD leaves nothing.
    pub async fn add(
        &self,
        node: &Netns,
        list: &ConfList,
        container_id: &str,
        netns: &str,
        ifname: &str,
        runtime_config: &Value,
    ) -> Result<Attachment, CniError> {
        let mut att = Attachment {
            container_id: container_id.into(),
            ifname: ifname.into(),
            netns: netns.into(),
            result: Value::Null,
        };
        for (i, p) in list.plugins.iter().enumerate() {
            let ty = plugin_type(p);
            let prev = (!att.result.is_null()).then_some(&att.result);
            let conf = self.plugin_conf(list, p, prev, runtime_config);
            match self.exec(node, &ty, "ADD", &att, conf).await {
                Ok(out) => {
                    let v: Value =
                        serde_json::from_str(out.stdout.trim()).map_err(|e| CniError {
                            plugin: ty.clone(),
                            command: "ADD".into(),
                            exit: Some(0),
                            code: None,
                            msg: format!("printed no valid result: {e}"),
                            stderr: out.stderr.trim().to_string(),
                        })?;
                    att.result = v;
                }
                Err(e) => {
                    // Undo what the plugins before this one did.
                    let partial = ConfList {
                        plugins: list.plugins[..=i].to_vec(),
                        ..list.clone()
                    };
                    let _ = self.del(node, &partial, &att, runtime_config).await;
                    return Err(e);
                }
            }
        }
        Ok(att)
    }

    /// CHECK: every plugin in order, with the cached result. Ok(None) when the list's version
    /// predates CHECK.
    pub async fn check(
        &self,
        node: &Netns,
        list: &ConfList,
        att: &Attachment,
        runtime_config: &Value,
    ) -> Result<(), CniError> {
        for p in &list.plugins {
            let ty = plugin_type(p);
            let conf = self.plugin_conf(list, p, Some(&att.result), runtime_config);
            self.exec(node, &ty, "CHECK", att, conf).await?;
        }
        Ok(())
    }

    /// DEL: every plugin in reverse order, with the cached result. Keeps going past a failure
    /// and returns the first one.
    pub async fn del(
        &self,
        node: &Netns,
        list: &ConfList,
        att: &Attachment,
        runtime_config: &Value,
    ) -> Result<(), CniError> {
        let mut first = None;
        for p in list.plugins.iter().rev() {
            let ty = plugin_type(p);
            let prev = (!att.result.is_null()).then_some(&att.result);
            let conf = self.plugin_conf(list, p, prev, runtime_config);
            if let Err(e) = self.exec(node, &ty, "DEL", att, conf).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// STATUS (spec 1.1.0): asks each plugin of the list, in order, whether it can take an ADD.
    /// A plugin is asked only when the list and the plugin's VERSION both speak 1.1.0; the
    /// others are reported as skipped, with the reason.
    pub async fn status(&self, node: &Netns, list: &ConfList) -> Vec<PluginReply> {
        let mut out = Vec::new();
        for p in &list.plugins {
            let ty = plugin_type(p);
            let reply = match self.speaks_1_1(node, list, &ty).await {
                Err(e) => Reply::Failed(e),
                Ok(Some(why)) => Reply::Skipped(why),
                Ok(None) => {
                    let conf = self.plugin_conf(list, p, None, &Value::Null);
                    match self
                        .exec(node, &ty, "STATUS", &Attachment::none(), conf)
                        .await
                    {
                        Ok(_) => Reply::Ok,
                        Err(e) => Reply::Failed(e),
                    }
                }
            };
            out.push(PluginReply { plugin: ty, reply });
        }
        out
    }

    /// GC (spec 1.1.0): tells each plugin of the list which attachments are still valid, so it
    /// can release what any other holds (IPAM reservations, rules). Skipped, with the reason,
    /// for plugins or lists that predate 1.1.0.
    pub async fn gc(
        &self,
        node: &Netns,
        list: &ConfList,
        valid: &[Attachment],
    ) -> Vec<PluginReply> {
        let attachments: Vec<Value> = valid
            .iter()
            .map(|a| json!({ "containerID": a.container_id, "ifname": a.ifname }))
            .collect();
        let mut out = Vec::new();
        for p in &list.plugins {
            let ty = plugin_type(p);
            let reply = match self.speaks_1_1(node, list, &ty).await {
                Err(e) => Reply::Failed(e),
                Ok(Some(why)) => Reply::Skipped(why),
                Ok(None) => {
                    let mut conf = self.plugin_conf(list, p, None, &Value::Null);
                    conf["cni.dev/valid-attachments"] = json!(attachments);
                    match self.exec(node, &ty, "GC", &Attachment::none(), conf).await {
                        Ok(_) => Reply::Ok,
                        Err(e) => Reply::Failed(e),
                    }
                }
            };
            out.push(PluginReply { plugin: ty, reply });
        }
        out
    }

    /// None when the list and the plugin both speak 1.1.0; else why not.
    async fn speaks_1_1(
        &self,
        node: &Netns,
        list: &ConfList,
        plugin: &str,
    ) -> Result<Option<String>, CniError> {
        if !version_at_least(&list.cni_version, (1, 1, 0)) {
            return Ok(Some(format!(
                "the conflist's cniVersion is {}, STATUS and GC need 1.1.0",
                list.cni_version
            )));
        }
        let v = self.version(node, plugin, &list.cni_version).await?;
        let versions: Vec<&str> = v
            .get("supportedVersions")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        if versions.iter().any(|s| version_at_least(s, (1, 1, 0))) {
            Ok(None)
        } else {
            Ok(Some(format!(
                "{plugin} supports {} only",
                versions.join(" ")
            )))
        }
    }

    /// VERSION of one plugin: the spec versions it supports.
    pub async fn version(
        &self,
        node: &Netns,
        plugin: &str,
        cni_version: &str,
    ) -> Result<Value, CniError> {
        let out = self
            .exec(
                node,
                plugin,
                "VERSION",
                &Attachment::none(),
                json!({ "cniVersion": cni_version }),
            )
            .await?;
        serde_json::from_str(out.stdout.trim()).map_err(|e| CniError {
            plugin: plugin.into(),
            command: "VERSION".into(),
            exit: Some(0),
            code: None,
            msg: format!("printed no valid version: {e}"),
            stderr: out.stderr,
        })
    }

    /// IPAM reservations host-local holds for a network: (address, container id).
    pub fn ipam_reservations(&self, network: &str) -> Vec<(String, String)> {
        let dir = self.data_dir.join("ipam").join(network);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut v: Vec<(String, String)> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.parse::<Ipv4Addr>().ok()?;
                let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
                Some((name, owner.lines().next().unwrap_or("").trim().to_string()))
            })
            .collect();
        v.sort();
        v
    }
}

/// The first IPv4 address and gateway of a result, and its interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSummary {
    pub address: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// (name, mac, in the sandbox?)
    pub interfaces: Vec<(String, String, bool)>,
}

pub fn summarize(result: &Value) -> ResultSummary {
    let address = result.get("ips").and_then(|i| i.as_array()).and_then(|a| {
        a.iter()
            .find_map(|ip| ip.get("address")?.as_str()?.parse::<Ipv4Net>().ok())
    });
    let gateway = result.get("ips").and_then(|i| i.as_array()).and_then(|a| {
        a.iter()
            .find_map(|ip| ip.get("gateway")?.as_str()?.parse::<Ipv4Addr>().ok())
    });
    let interfaces = result
        .get("interfaces")
        .and_then(|i| i.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    Some((
                        i.get("name")?.as_str()?.to_string(),
                        i.get("mac")
                            .and_then(|m| m.as_str())
                            .unwrap_or("")
                            .to_string(),
                        i.get("sandbox")
                            .and_then(|s| s.as_str())
                            .is_some_and(|s| !s.is_empty()),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    ResultSummary {
        address,
        gateway,
        interfaces,
    }
}

/// A per-lab state directory for IPAM and tuning, under the run directory (so `gc` can find
/// one a killed process left): `<run>/cni/<pid>.<n>`.
pub fn state_dir() -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = crate::paths::run_dir().join("cni").join(format!(
        "{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removes state directories of processes that are gone, except those in `keep` (a named
/// lab's, which outlives the `netfault up` that made it); returns how many.
pub fn gc_state_dirs(keep: &[PathBuf]) -> usize {
    let root = crate::paths::run_dir().join("cni");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !keep.contains(&e.path())
            && !Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
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
