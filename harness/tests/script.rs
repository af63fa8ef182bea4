//! `netfault script` builds, with ip/bridge/sysctl/nft by hand, exactly the lab `netfault up`
//! builds over netlink: the script runs into fresh namespaces, `netfault adopt` takes them, and
//! their captured state equals a netfault-built lab's.

mod common;
use common::fixture_path as fixture;

use std::process::Command;

use netfault::diagnose::{capture, diff};
use netfault::{load_fixture, Lab};

const BIN: &str = env!("CARGO_BIN_EXE_netfault");

/// Removes the lab however the test ends: through netfault if it adopted the lab, else the
/// pins the script made.
struct Cleanup {
    lab: String,
    hosts: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let down = Command::new(BIN).args(["down", &self.lab]).output();
        if !down.is_ok_and(|o| o.status.success()) {
            for h in &self.hosts {
                let _ = Command::new("ip")
                    .args(["netns", "del", &format!("{}-{h}", self.lab)])
                    .output();
            }
        }
    }
}

async fn same_state(name: &str, lab_name: &str) {
    let f = fixture(name);
    let topo = load_fixture(&f).unwrap();
    let built = common::up(&topo).await;
    let want = capture(&built).await.unwrap();
    drop(built);

    let out = Command::new(BIN).arg("script").arg(&f).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _cleanup = Cleanup {
        lab: lab_name.to_string(),
        hosts: topo.namespace_names(),
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("lab.sh");
    std::fs::write(&script, &out.stdout).unwrap();
    let ran = Command::new("sh")
        .arg(&script)
        .env("LAB", lab_name)
        .output()
        .unwrap();
    let adopted = Command::new(BIN)
        .args(["adopt", f.to_str().unwrap(), "--name", lab_name])
        .output()
        .unwrap();
    {
        assert!(
            ran.status.success(),
            "the script failed:\n{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert!(
            adopted.status.success(),
            "{}",
            String::from_utf8_lossy(&adopted.stderr)
        );
        let lab = Lab::attach(lab_name).await.unwrap();
        let got = capture(&lab).await.unwrap();
        let d = diff(&want, &got);
        assert!(
            d.is_empty(),
            "{name}: the script's lab differs:\n{}",
            d.join("\n")
        );
        // And it works: the fixture's healthy outcomes hold.
        let m = netfault::probe::matrix(&lab).await.unwrap();
        assert!(
            m.mismatches().is_empty(),
            "{}",
            m.render_mismatches().join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_builds_the_same_single_node_lab() {
    if netfault::privilege::skip_without_pins("the_script_builds_the_same_single_node_lab") {
        return;
    }
    same_state("single-node.toml", &format!("sc{}a", std::process::id())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_builds_the_same_vxlan_lab() {
    if netfault::privilege::skip_without_pins("the_script_builds_the_same_vxlan_lab") {
        return;
    }
    same_state("two-node-vxlan.toml", &format!("sc{}b", std::process::id())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_builds_the_same_routed_lab() {
    if netfault::privilege::skip_without_pins("the_script_builds_the_same_routed_lab") {
        return;
    }
    same_state(
        "two-node-routed.toml",
        &format!("sc{}c", std::process::id()),
    )
    .await;
}

/// A dual-stack lab: IPv6 addresses (nodad), routes, NDP entries, ip6 masquerade, the IPv6
/// sysctls; vxlan carrying both families.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_builds_the_same_dual_stack_lab() {
    if netfault::privilege::skip_without_pins("the_script_builds_the_same_dual_stack_lab") {
        return;
    }
    same_state(
        "dual-stack-vxlan.toml",
        &format!("sc{}e", std::process::id()),
    )
    .await;
}

/// The Kubernetes layer too: hairpin, kube-proxy's and the policies' tables, the service route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_builds_the_same_k8s_lab() {
    if netfault::privilege::skip_without_pins("the_script_builds_the_same_k8s_lab") {
        return;
    }
    same_state("k8s.toml", &format!("sc{}d", std::process::id())).await;
}

/// Dual-stack Kubernetes: kube-proxy's ip6 table, policies matching both families, the IPv6
/// service route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_builds_the_same_dual_stack_k8s_lab() {
    if netfault::privilege::skip_without_pins("the_script_builds_the_same_dual_stack_k8s_lab") {
        return;
    }
    same_state("k8s-dual-stack.toml", &format!("sc{}f", std::process::id())).await;
}

/// kube-proxy's iptables mode: the script loads the same KUBE-* chains with
/// iptables-nft-restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_builds_the_same_iptables_mode_k8s_lab() {
    if netfault::privilege::skip_without_pins("the_script_builds_the_same_iptables_mode_k8s_lab") {
        return;
    }
    same_state("k8s-iptables.toml", &format!("sc{}i", std::process::id())).await;
}

#[test]
fn a_cni_fixture_has_no_script() {
    let out = Command::new(BIN)
        .arg("script")
        .arg(fixture("cni-bridge.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("attached by CNI plugins"));
}
