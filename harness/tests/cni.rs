//! The CNI runtime's STATUS and GC (spec 1.1.0): skipped for plugins and lists that predate
//! it (Debian's plugins speak up to 1.0.0), and spoken correctly to a plugin that declares it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use netfault::cni::{Attachment, ConfList, PluginPath, Reply, Runtime};
use netfault::netns::Netns;
use netfault::topology::Source;

/// A plugin that declares 1.1.0: it records each command's environment and stdin under
/// `dir`, and fails STATUS with code 50 while `dir/not-ready` exists.
fn scripted_plugin(dir: &Path) -> PathBuf {
    let bin = dir.join("netfault-test-plugin");
    let d = dir.display();
    std::fs::write(
        &bin,
        format!(
            r#"#!/bin/sh
input=$(cat)
echo "$CNI_COMMAND ${{CNI_CONTAINERID-unset}} ${{CNI_NETNS-unset}} ${{CNI_IFNAME-unset}}" >> {d}/calls
printf '%s' "$input" > {d}/$CNI_COMMAND.json
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}' ;;
STATUS) if [ -e {d}/not-ready ]; then
          echo '{{"cniVersion":"1.1.0","code":50,"msg":"the daemon is not running"}}'; exit 1
        fi ;;
GC) ;;
*) echo '{{"cniVersion":"1.1.0","code":4,"msg":"unexpected"}}'; exit 1 ;;
esac
"#
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn list(text: &str) -> ConfList {
    ConfList::parse(&Source::new("test.conflist", text)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_gc_speak_1_1_0_to_a_plugin_that_declares_it() {
    let dir = tempfile::tempdir().unwrap();
    scripted_plugin(dir.path());
    let rt = Runtime {
        path: PluginPath(vec![dir.path().to_path_buf()]),
        data_dir: dir.path().join("state"),
        exec_path: None,
    };
    let ns = Netns::create().unwrap();
    let l = list(
        r#"{"cniVersion":"1.1.0","name":"t","plugins":[{"type":"netfault-test-plugin","x":1}]}"#,
    );

    let r = rt.status(&ns, &l).await;
    assert!(matches!(r[0].reply, Reply::Ok), "{}", r[0]);
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("STATUS.json")).unwrap())
            .unwrap();
    assert_eq!(conf["name"], "t");
    assert_eq!(conf["cniVersion"], "1.1.0");
    assert_eq!(conf["x"], 1);

    std::fs::write(dir.path().join("not-ready"), "").unwrap();
    let r = rt.status(&ns, &l).await;
    match &r[0].reply {
        Reply::Failed(e) => {
            assert_eq!(e.code, Some(50));
            assert_eq!(e.msg, "the daemon is not running");
        }
        other => panic!("STATUS of a plugin that is not ready: {other:?}"),
    }

    let valid = Attachment {
        container_id: "c1".into(),
        ifname: "eth0".into(),
        netns: "/proc/1/ns/net".into(),
        result: serde_json::Value::Null,
    };
    let r = rt.gc(&ns, &l, &[valid]).await;
    assert!(matches!(r[0].reply, Reply::Ok), "{}", r[0]);
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("GC.json")).unwrap())
            .unwrap();
    assert_eq!(
        conf["cni.dev/valid-attachments"],
        serde_json::json!([{"containerID": "c1", "ifname": "eth0"}])
    );
    // STATUS and GC concern no attachment: no container, namespace or interface is passed.
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    for c in ["STATUS", "GC"] {
        assert!(
            calls.lines().any(|l| l == format!("{c} unset unset unset")),
            "{calls}"
        );
    }

    // A list that predates 1.1.0 is not sent either command.
    let old =
        list(r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"netfault-test-plugin"}]}"#);
    let before = calls.lines().count();
    let r = rt.status(&ns, &old).await;
    assert!(
        matches!(&r[0].reply, Reply::Skipped(w) if w.contains("1.0.0")),
        "{}",
        r[0]
    );
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    assert_eq!(calls.lines().count(), before, "{calls}");
}

/// Installed plugins under a 1.1.0 list: each is asked VERSION, and STATUS and GC go exactly to
/// those that declare 1.1.0 (whatever the installed package speaks); the others are skipped
/// with the versions they declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_plugins_get_status_and_gc_exactly_when_they_declare_1_1_0() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime {
        path: PluginPath::resolve(&[]),
        data_dir: dir.path().join("state"),
        exec_path: None,
    };
    let ns = Netns::create().unwrap();
    let plugins = ["bridge", "portmap", "firewall", "tuning"];
    let l = list(&format!(
        r#"{{"cniVersion":"1.1.0","name":"t","plugins":[{}]}}"#,
        plugins
            .iter()
            .map(|p| format!(r#"{{"type":"{p}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let st = rt.status(&ns, &l).await;
    let gc = rt.gc(&ns, &l, &[]).await;
    for replies in [&st, &gc] {
        assert_eq!(replies.len(), plugins.len());
        for (r, p) in replies.iter().zip(plugins) {
            assert_eq!(r.plugin, p);
            let declared = common::versions_of(&rt.path.find(p).unwrap());
            if declared
                .iter()
                .any(|v| netfault::cni::version_at_least(v, (1, 1, 0)))
            {
                assert!(!matches!(r.reply, Reply::Skipped(_)), "{r}");
            } else {
                assert!(
                    matches!(&r.reply, Reply::Skipped(w) if *w == format!("{p} supports {} only", declared.join(" "))),
                    "{r} (declared {declared:?})"
                );
            }
        }
    }
}

#[test]
fn cni_versions_picks_the_highest_the_runtime_speaks() {
    let l = list(
        r#"{"cniVersion":"0.4.0","cniVersions":["0.4.0","1.0.0","1.1.0","2.0.0"],"name":"t","plugins":[{"type":"bridge"}]}"#,
    );
    assert_eq!(l.cni_version, "1.1.0");
    let l = list(r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"bridge"}]}"#);
    assert_eq!(l.cni_version, "1.0.0");
}
