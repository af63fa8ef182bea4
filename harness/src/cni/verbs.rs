//! The CNI verbs over a conflist: ADD and CHECK in order, DEL in reverse, STATUS, GC, VERSION.

use super::runtime::{plugin_type, PluginReply, Reply, Runtime};
use crate::netns::Netns;
use crate::topology::conflist::{version_at_least, Attachment, CniError, ConfList};
use serde_json::{json, Value};

impl Runtime {
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
        self.each_1_1(node, list, "STATUS", |_| {}).await
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
        self.each_1_1(node, list, "GC", |conf| {
            conf["cni.dev/valid-attachments"] = json!(attachments);
        })
        .await
    }

    /// A 1.1.0 verb asked of each plugin of the list in order, with its config as `decorate`
    /// leaves it; a plugin or list that predates 1.1.0 is skipped, with the reason.
    async fn each_1_1(
        &self,
        node: &Netns,
        list: &ConfList,
        verb: &str,
        decorate: impl Fn(&mut Value),
    ) -> Vec<PluginReply> {
        let mut out = Vec::new();
        for p in &list.plugins {
            let ty = plugin_type(p);
            let reply = match self.speaks_1_1(node, list, &ty).await {
                Err(e) => Reply::Failed(e),
                Ok(Some(why)) => Reply::Skipped(why),
                Ok(None) => {
                    let mut conf = self.plugin_conf(list, p, None, &Value::Null);
                    decorate(&mut conf);
                    match self.exec(node, &ty, verb, &Attachment::none(), conf).await {
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
    pub(super) async fn speaks_1_1(
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
}
