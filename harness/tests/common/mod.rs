//! What the integration tests share: where the repository and its fixtures are, and labs whose
//! drop is checked (no thread of the test process may stay in a namespace it released).
#![allow(dead_code)] // each test crate uses its own part of it

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

use netfault::{Lab, Topology};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `fixtures/NAME` as a path.
pub fn fixture_path(name: &str) -> PathBuf {
    repo().join("fixtures").join(name)
}

/// `fixtures/NAME`, parsed and validated.
pub fn fixture(name: &str) -> Topology {
    netfault::load_fixture(&fixture_path(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// How long threads that ran inside a lab may take to finish once it dropped.
const THREADS_PATIENCE: Duration = Duration::from_secs(10);

/// Fails when a thread of this process sits in a namespace the process released: it would keep
/// that lab's namespace, and every interface in it, alive. Fails closed: an unreadable /proc fails.
pub fn assert_no_thread_in_released_namespaces() {
    let left = netfault::leakcheck::threads_in_released(THREADS_PATIENCE)
        .unwrap_or_else(|e| panic!("cannot read this process's threads: {e}"));
    assert!(
        left.is_empty(),
        "threads of the test process hold released lab namespaces: {left:?}"
    );
}

/// A lab whose drop is checked for threads left inside it.
pub struct Checked(Option<Lab>);

/// Brings a fixture's lab up (panics with the error otherwise).
pub async fn up(topo: &Topology) -> Checked {
    Checked(Some(Lab::up(topo).await.unwrap_or_else(|e| panic!("{e}"))))
}

impl Deref for Checked {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.0.as_ref().expect("lab")
    }
}

impl DerefMut for Checked {
    fn deref_mut(&mut self) -> &mut Lab {
        self.0.as_mut().expect("lab")
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        drop(self.0.take());
        if !std::thread::panicking() {
            assert_no_thread_in_released_namespaces();
        }
    }
}

/// What a CNI plugin binary says it speaks when asked VERSION directly (no runtime of ours).
pub fn versions_of(bin: &Path) -> Vec<String> {
    use std::io::Write;
    let mut child = std::process::Command::new(bin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It may answer without reading its config: a broken pipe is no failure.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0"}"#);
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["supportedVersions"]
        .as_array()
        .unwrap_or_else(|| panic!("{} VERSION: {v}", bin.display()))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Whether this kernel has `feature`, asked with iproute2 in a scratch network namespace (not
/// through netfault, whose answer it checks).
pub fn kernel_has(feature: &str) -> bool {
    let args: &[&str] = match feature {
        "netem qdisc" => &[
            "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ],
        "ipip link" => &["-n", "ip", "link", "add", "nf-ipip0", "type", "ipip"],
        other => panic!("no way to ask the kernel for {other}: add one here"),
    };
    std::process::Command::new("unshare")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("unshare: {e}"))
        .success()
}

/// A child process a test started, killed and reaped when the test is done with it however the
/// test ends (a panicking test must not leave a paused netfault behind).
pub struct Reaper(pub std::process::Child);

impl Deref for Reaper {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl DerefMut for Reaper {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The diagnoses of a lab broken since `base` (its healthy round), as the case loop makes them:
/// one recorded round, its broken pairs explained; each printed for the test's output.
pub async fn diagnoses(
    lab: &Lab,
    base: &netfault::matrix::Matrix,
) -> Vec<netfault::diagnose::Diagnosis> {
    let reached =
        |f: &str, t: &str, p| base.observed(f, t, p) == Some(netfault::Outcome::Reachable);
    let (m, rec) = netfault::diagnose::evidence::recorded_matrix(lab, reached, &Default::default())
        .await
        .unwrap();
    let ds = netfault::diagnose::explain_changes(lab, &m, base, rec)
        .await
        .unwrap();
    for d in &ds {
        println!("{d}");
    }
    ds
}

/// The distinct (host, component) culprits of a pair's diagnoses (one per protocol group).
pub fn blamed(
    ds: &[netfault::diagnose::Diagnosis],
    from: &str,
    to: &str,
) -> Vec<(String, netfault::diagnose::Component)> {
    let mut out = Vec::new();
    for d in ds.iter().filter(|d| d.from == from && d.to == to) {
        let c = (d.culprit.host.clone(), d.culprit.component);
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The lab's matrix, which must be as its fixture expects (the healthy round a test breaks).
pub async fn healthy(lab: &Lab) -> netfault::matrix::Matrix {
    let m = netfault::probe::matrix(lab).await.unwrap();
    assert!(m.mismatches().is_empty(), "{:?}", m.render_mismatches());
    m
}

/// Adds `rule` by hand to a base chain on `hook` of `host` (table `ip byhand`, chain `guard`).
pub fn nft_rule(lab: &Lab, host: &str, hook: &str, rule: &str) {
    sh(
        lab,
        host,
        format!(
            "nft add table ip byhand && \
             nft 'add chain ip byhand guard {{ type filter hook {hook} priority 0; }}' && \
             nft add rule ip byhand guard {rule}"
        ),
    );
}

/// Runs `cmd` with `sh -c` inside `host`'s namespace (a lab broken by hand); it must succeed.
pub fn sh(lab: &Lab, host: &str, cmd: impl Into<String>) {
    let cmd = cmd.into();
    lab.host(host)
        .unwrap()
        .ns
        .run(move || {
            let st = std::process::Command::new("sh")
                .args(["-c", &cmd])
                .status()
                .unwrap();
            assert!(st.success(), "{cmd}");
        })
        .unwrap()
}

/// Runs a command (the netfault binary: `CARGO_BIN_EXE_netfault` is the caller's), asserts it
/// exits with `code` (stderr shown if not) and returns what it printed on stdout as JSON.
#[allow(dead_code)]
pub fn json_of(cmd: &mut std::process::Command, code: i32) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
