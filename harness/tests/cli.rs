//! The netfault binary: exit codes, named labs, crashes, gc.

mod common;
use common::repo;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netfault::leakcheck::{namespace_fds as netns_fds, processes_in, Witness};

const BIN: &str = env!("CARGO_BIN_EXE_netfault");

fn netfault(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    c
}

/// Waits for `netfault: paused at POINT` on the child's stderr.
fn wait_paused(child: &mut Child, point: &str) {
    let err = child.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines();
    for l in lines.by_ref() {
        let l = l.unwrap();
        if l.contains(&format!("paused at {point}")) {
            return;
        }
    }
    panic!("the child never paused at {point}");
}

/// Writes a case file using the single-node fixture; `body` follows the `fixture =` line.
fn write_case(dir: &Path, name: &str, body: &str) -> PathBuf {
    let case = dir.join(name);
    let fixture = repo().join("fixtures/single-node.toml");
    std::fs::write(
        &case,
        format!(
            "description = \"x\"\nfixture = \"{}\"\n{body}",
            fixture.display()
        ),
    )
    .unwrap();
    case
}

#[test]
fn run_rejects_a_case_naming_an_unknown_host_with_file_line_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let case = write_case(
        dir.path(),
        "bad.toml",
        "\n[[fault]]\ntype = \"delete-veth\"\npod = \"pod-z\"\n",
    );
    let out = netfault(&["run", case.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:6:7: fault 1: unknown host \"pod-z\"",
            case.display()
        )),
        "{err}"
    );
    assert!(err.contains("pods in single-node: pod-a, pod-b"), "{err}");
    assert!(err.contains("nothing was run"), "{err}");
}

#[test]
fn run_reports_json_and_exit_0_when_cases_pass() {
    let case = repo().join("cases/delete-masquerade.toml");
    let v = common::json_of(&mut netfault(&["run", "--json", case.to_str().unwrap()]), 0);
    assert_eq!(v["cases"][0]["status"], "pass");
    assert_eq!(v["cases"][0]["culprits"][0]["host"], "node1");
    assert_eq!(v["cases"][0]["culprits"][0]["component"], "masquerade");
}

#[test]
fn run_exits_1_when_a_case_fails() {
    let dir = tempfile::tempdir().unwrap();
    let case = write_case(
        dir.path(),
        "wrong.toml",
        "[[fault]]\ntype = \"delete-masquerade\"\nnode = \"node1\"\n[expect]\n\"pod-* -> ext\" = \"reachable\"\n",
    );
    let out = netfault(&["run", case.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL"), "{text}");
    assert!(
        text.contains("pod-a → ext tcp: expected reachable, observed timeout"),
        "{text}"
    );
}

/// `--junit FILE` writes JUnit XML a CI system can read: one testcase per case, a failing case's
/// mismatches as its failure, the diagnosis as system-out; parsed here by an XML parser.
#[test]
fn run_writes_junit_xml_with_one_testcase_per_case() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = write_case(
        dir.path(),
        "wrong.toml",
        "[[fault]]\ntype = \"delete-masquerade\"\nnode = \"node1\"\n[expect]\n\"pod-* -> ext\" = \"reachable\"\n",
    );
    let good = repo().join("cases/delete-masquerade.toml");
    let xml_path = dir.path().join("out.xml");
    let out = netfault(&[
        "run",
        "--junit",
        xml_path.to_str().unwrap(),
        good.to_str().unwrap(),
        wrong.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&xml_path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("2"));
    assert_eq!(root.attribute("failures"), Some("1"));
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2);
    let by_name = |n: &str| {
        *cases
            .iter()
            .find(|c| c.attribute("name") == Some(n))
            .unwrap_or_else(|| panic!("no testcase {n} in {text}"))
    };
    let pass = by_name("delete-masquerade");
    assert!(
        !pass.children().any(|c| c.has_tag_name("failure")),
        "{text}"
    );
    let out_text = pass
        .children()
        .find(|c| c.has_tag_name("system-out"))
        .and_then(|c| c.text())
        .unwrap_or_default();
    assert!(out_text.contains("culprit: node1 masquerade"), "{text}");
    let fail = by_name("wrong");
    let failure = fail
        .children()
        .find(|c| c.has_tag_name("failure"))
        .unwrap_or_else(|| panic!("no failure in {text}"));
    assert!(
        failure
            .attribute("message")
            .unwrap_or_default()
            .contains("pod-a → ext tcp: expected reachable, observed timeout"),
        "{text}"
    );
    assert!(fail.attribute("time").unwrap().parse::<f64>().unwrap() > 0.0);
}

/// Building, breaking and probing start no process but nft: with only nft on PATH, a case runs.
#[test]
fn a_case_needs_no_program_but_nft() {
    let dir = tempfile::tempdir().unwrap();
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    std::os::unix::fs::symlink(nft, dir.path().join("nft")).unwrap();
    let out = netfault(&[
        "run",
        repo().join("cases/delete-veth.toml").to_str().unwrap(),
    ])
    .env("PATH", dir.path())
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_lab_works_with_ip_netns_and_goes_away_on_down() {
    if netfault::privilege::skip_without_pins("named_lab_works_with_ip_netns_and_goes_away_on_down")
    {
        return;
    }
    let name = format!("t{}", std::process::id());
    let fixture = repo().join("fixtures/single-node.toml");
    let out = netfault(&["up", fixture.to_str().unwrap(), "--name", &name])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut witness = Witness::new().await.unwrap();
    for h in ["node1", "pod-a", "pod-b", "ext"] {
        witness
            .watch_path(&PathBuf::from(format!("/run/netns/{name}-{h}")))
            .await
            .unwrap();
    }
    // The pins are usable by the usual tools.
    let ip = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{name}-pod-a"),
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ip.stdout).contains("10.244.1.2/24"),
        "{ip:?}"
    );
    // A second `up` of the same name is refused.
    let again = netfault(&["up", fixture.to_str().unwrap(), "--name", &name])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    // status probes the lab from this other process.
    let st = netfault(&["status", &name]).output().unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("healthy: every pair is as the fixture expects"),
        "{text}"
    );
    // Break it by hand; status explains.
    let sh = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{name}-node1"),
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=0",
        ])
        .status()
        .unwrap();
    assert!(sh.success());
    let st = netfault(&["status", &name]).output().unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("pod-a → ext tcp: expected reachable, observed timeout"),
        "{text}"
    );
    let dg = netfault(&["diagnose", &name]).output().unwrap();
    assert_eq!(dg.status.code(), Some(1));
    let text = String::from_utf8_lossy(&dg.stdout);
    assert!(text.contains("culprit: node1 forwarding"), "{text}");
    let dg = netfault(&["diagnose", "--json", &name]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&dg.stdout).unwrap();
    assert_eq!(v["lab"], name.as_str());
    assert_eq!(v["healthy"], false);
    let broken: Vec<&serde_json::Value> = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["culprit"].is_null())
        .collect();
    assert_eq!(
        broken.len(),
        6,
        "pod-a and pod-b to ext, three protocols each: {broken:#?}"
    );
    for p in &broken {
        assert_eq!(p["to"], "ext");
        assert_eq!(p["culprit"]["host"], "node1");
        assert_eq!(p["culprit"]["component"], "forwarding");
        assert!(!p["hops"].as_array().unwrap().is_empty());
        assert!(
            p["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["text"] == "IpInAddrErrors increased"),
            "{p:#}"
        );
    }
    let healthy_pair = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["from"] == "pod-a" && p["to"] == "pod-b")
        .unwrap();
    assert!(healthy_pair["culprit"].is_null());
    let list = netfault(&["status"]).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&name));

    let down = netfault(&["down", &name]).output().unwrap();
    assert_eq!(
        down.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!Path::new(&format!("/run/netns/{name}-node1")).exists());
    assert_eq!(witness.wait_gone(Duration::from_secs(10)).await.unwrap(), 0);
    // Down again: idempotent, with a note.
    let gone = netfault(&["down", &name]).output().unwrap();
    assert_eq!(gone.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&gone.stdout).contains("is not up: nothing to remove"));
}

/// `ci/run demo` runs `target/debug/netfault demo` from the repository's root: the same here.
/// It must exit 0 and say its lab's namespaces are all gone (a thread of the process left in
/// one of them kept it alive on a fresh machine), and leave no record or process behind.
#[test]
fn the_demo_as_ci_runs_it_exits_0_and_leaves_nothing() {
    let labs = || -> Vec<String> {
        std::fs::read_dir("/run/netfault/labs")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = labs();
    let out = Command::new(BIN)
        .arg("demo")
        .current_dir(repo())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    let torn = text
        .lines()
        .find(|l| l.starts_with("lab torn down: "))
        .unwrap_or_else(|| panic!("no teardown line:\n{text}"));
    assert!(
        torn.starts_with("lab torn down: 0 of 4 namespaces left"),
        "{torn}"
    );
    assert_eq!(text.matches("— as the case expects").count(), 3, "{text}");
    assert_eq!(labs(), before, "the demo left a named lab");
}

/// SIGKILL in the middle of a case (faults injected, lab live): nothing of the lab remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_lab_leaves_nothing() {
    let mut child = netfault(&[
        "run",
        repo().join("cases/delete-veth.toml").to_str().unwrap(),
    ])
    .env("NETFAULT_PAUSE_AT", "case:injected")
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .map(common::Reaper)
    .unwrap();
    wait_paused(&mut child, "case:injected");
    let fds = netns_fds(child.id()).unwrap();
    assert_eq!(fds.len(), 4, "the lab's four namespaces: {fds:?}");
    let mut witness = Witness::new().await.unwrap();
    for (p, _) in &fds {
        witness.watch_path(p).await.unwrap();
    }
    let inodes: Vec<u64> = fds.iter().map(|(_, i)| *i).collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        witness.wait_gone(Duration::from_secs(10)).await.unwrap(),
        0,
        "namespaces outlived SIGKILL"
    );
    assert!(processes_in(&inodes).unwrap().is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for i in inodes {
        assert!(
            !mounts.contains(&format!("net:[{i}]")),
            "a pin of the killed lab remains"
        );
    }
}

/// SIGKILL while `up --name` pins: `netfault gc` removes the half-built lab, and only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_reaps_a_named_lab_whose_builder_was_killed_and_nothing_else() {
    if netfault::privilege::skip_without_pins(
        "gc_reaps_a_named_lab_whose_builder_was_killed_and_nothing_else",
    ) {
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let pins = tempfile::tempdir().unwrap();
    let env = |c: &mut Command| {
        c.env("NETFAULT_RUN_DIR", run.path())
            .env("NETFAULT_NETNS_DIR", pins.path());
    };
    // A namespace pin that is not netfault's, named like one of the lab's would be.
    let foreign = netfault::netns::Netns::create().unwrap();
    let foreign_pin = pins.path().join("other-node1");
    foreign.pin(&foreign_pin).unwrap();

    let mut up = netfault(&[
        "up",
        repo().join("fixtures/single-node.toml").to_str().unwrap(),
        "--name",
        "crash",
    ]);
    env(&mut up);
    let mut child = up
        .env("NETFAULT_PAUSE_AT", "up:pinned")
        .stderr(Stdio::piped())
        .spawn()
        .map(common::Reaper)
        .unwrap();
    wait_paused(&mut child, "up:pinned");
    let mut witness = Witness::new().await.unwrap();
    for (p, _) in netns_fds(child.id()).unwrap() {
        witness.watch_path(&p).await.unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        pins.path().join("crash-node1").exists(),
        "the first pin was made"
    );
    // The unpinned namespaces go; the pinned one stays (however long the kernel takes).
    assert_eq!(
        witness
            .wait_down_to(1, Duration::from_secs(30))
            .await
            .unwrap(),
        1,
        "the pinned namespace lives on"
    );

    let mut st = netfault(&["status"]);
    env(&mut st);
    let text = String::from_utf8_lossy(&st.output().unwrap().stdout).into_owned();
    assert!(
        text.contains("crash") && text.contains("abandoned"),
        "{text}"
    );

    let mut gc = netfault(&["gc"]);
    env(&mut gc);
    let out = gc.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed lab crash"));
    assert_eq!(witness.wait_gone(Duration::from_secs(10)).await.unwrap(), 0);
    assert!(
        std::fs::read_dir(run.path().join("labs"))
            .unwrap()
            .next()
            .is_none(),
        "record removed"
    );

    let mut gc = netfault(&["gc", "--all"]);
    env(&mut gc);
    assert!(gc.status().unwrap().success());
    assert!(
        netfault::registry::is_nsfs_pin(&foreign_pin),
        "gc touched a pin that is not netfault's"
    );
    netfault::netns::unpin(&foreign_pin).unwrap();
}

#[test]
fn a_pinned_two_node_vxlan_lab_diagnoses_healthy() {
    if netfault::privilege::skip_without_pins("a_pinned_two_node_vxlan_lab_diagnoses_healthy") {
        return;
    }
    let name = format!("v{}", std::process::id());
    let fixture = repo().join("fixtures/two-node-vxlan.toml");
    let up = netfault(&["up", fixture.to_str().unwrap(), "--name", &name])
        .output()
        .unwrap();
    assert_eq!(
        up.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let dg = netfault(&["diagnose", &name]).output().unwrap();
    let down = netfault(&["down", &name]).output().unwrap();
    assert_eq!(
        dg.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&dg.stdout),
        String::from_utf8_lossy(&dg.stderr)
    );
    assert!(String::from_utf8_lossy(&dg.stdout).contains("is healthy"));
    assert_eq!(down.status.code(), Some(0));
}

#[test]
fn faults_lists_the_catalog() {
    let out = netfault(&["faults", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = v.as_array().unwrap();
    assert_eq!(kinds.len(), netfault::fault::CATALOG.len());
    let m = kinds
        .iter()
        .find(|k| k["name"] == "delete-masquerade")
        .unwrap();
    assert_eq!(m["component"], "masquerade");
    assert_eq!(m["params"][0][0], "node");
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly_like_a_unix_tool() {
    // `netfault faults | head -1`: the reader is gone before netfault prints.
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = netfault(&["faults"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGPIPE), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn cni_audit_rejects_a_broken_conflist_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.conflist");
    std::fs::write(&bad, "{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": ,\n}\n").unwrap();
    let out = netfault(&["cni", "audit", "--conflist", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    assert!(out.stdout.is_empty(), "nothing was audited");

    let missing = dir.path().join("missing.conflist");
    let out = netfault(&["cni", "audit", "--conflist", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.conflist"), "{err}");
}

/// `up` on a fixture whose pods a plugin attaches, then `down`: the IPAM state directory goes
/// with the lab.
#[test]
fn a_named_cni_lab_keeps_its_ipam_state_until_down() {
    if netfault::privilege::skip_without_pins("a_named_cni_lab_keeps_its_ipam_state_until_down") {
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let netns = tempfile::tempdir().unwrap();
    let env = |c: &mut Command| {
        c.env("NETFAULT_RUN_DIR", run.path())
            .env("NETFAULT_NETNS_DIR", netns.path());
    };
    let mut up = netfault(&[
        "up",
        repo().join("fixtures/cni-bridge.toml").to_str().unwrap(),
        "--name",
        "clitest-cni",
    ]);
    env(&mut up);
    let out = up.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: Vec<_> = std::fs::read_dir(run.path().join("cni"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(state.len(), 1, "one CNI state directory for the lab");
    // `up` has exited, but gc must not take the state of a lab that is still up.
    let mut gc = netfault(&["gc"]);
    env(&mut gc);
    assert_eq!(gc.output().unwrap().status.code(), Some(0));
    assert!(
        state[0].path().exists(),
        "gc removed a live lab's CNI state"
    );
    let mut diag = netfault(&["diagnose", "clitest-cni"]);
    env(&mut diag);
    let out = diag.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut down = netfault(&["down", "clitest-cni"]);
    env(&mut down);
    assert_eq!(down.output().unwrap().status.code(), Some(0));
    let left: Vec<_> = std::fs::read_dir(run.path().join("cni"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(left.is_empty(), "CNI state left: {left:?}");
    assert_eq!(std::fs::read_dir(netns.path()).unwrap().count(), 0);
}

/// `case new` turns faults into a case file that passes as written, and a snapshot for review.
#[test]
fn case_new_writes_a_passing_case_and_its_snapshot_for_review() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tests/snapshots")).unwrap();
    let fixture = repo().join("fixtures/single-node.toml");
    let out = netfault(&[
        "case",
        "new",
        "fwd-off",
        "--fixture",
        fixture.to_str().unwrap(),
        "--fault",
        "disable-ip-forward:node=node1",
        "--dir",
        dir.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("fwd-off.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("# Written by `netfault case new`"),
        "{text}"
    );
    assert!(
        text.contains("culprits = [\"node1 forwarding\"]   # observed: review"),
        "{text}"
    );
    assert!(text.contains("\"pod-a -> ext\" = \"timeout\""), "{text}");
    let case = netfault::case::load_case(&path).unwrap();
    assert_eq!(case.faults.len(), 1);
    let snap =
        std::fs::read_to_string(dir.path().join("tests/snapshots/fwd-off.snap.new")).unwrap();
    assert!(
        snap.starts_with("---\nsource: cases/tests/cases.rs\n"),
        "{snap}"
    );
    assert!(
        snap.contains("case: fwd-off\nfixture: single-node\nstatus: pass\n"),
        "{snap}"
    );

    // A second time: the file exists, nothing is overwritten; a bad fault is refused up front.
    let again = netfault(&[
        "case",
        "new",
        "fwd-off",
        "--fixture",
        fixture.to_str().unwrap(),
        "--fault",
        "disable-ip-forward:node=node1",
        "--dir",
        dir.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let bad = netfault(&[
        "case",
        "new",
        "x",
        "--fixture",
        fixture.to_str().unwrap(),
        "--fault",
        "delete-veth:pod=pod-z",
        "--dir",
        dir.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("pod-z"));
    assert!(!dir.path().join("x.toml").exists());
}

/// `exec` runs in the host's namespaces with its name as hostname, and passes the exit code on.
#[test]
fn exec_runs_inside_a_lab_host_with_its_hostname() {
    if netfault::privilege::skip_without_pins("exec_runs_inside_a_lab_host_with_its_hostname") {
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let netns = tempfile::tempdir().unwrap();
    let with_env = |mut c: Command| {
        c.env("NETFAULT_RUN_DIR", run.path())
            .env("NETFAULT_NETNS_DIR", netns.path());
        c
    };
    let lab = format!("ex{}", std::process::id());
    let up = with_env(netfault(&[
        "up",
        repo().join("fixtures/single-node.toml").to_str().unwrap(),
        "--name",
        &lab,
    ]))
    .output()
    .unwrap();
    assert_eq!(
        up.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let out = with_env(netfault(&[
        "exec",
        &lab,
        "pod-a",
        "--",
        "sh",
        "-c",
        "hostname; ls /sys/class/net | tr '\\n' ' '; echo; echo $NETFAULT_HOST; exit 3",
    ]))
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let down = with_env(netfault(&["down", &lab])).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the command's exit code: {text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "pod-a");
    assert_eq!(lines[1].trim(), "eth0 lo", "the pod's interfaces in /sys");
    assert_eq!(lines[2], "pod-a");
    // The caller's hostname is untouched.
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(here.trim(), "pod-a");
    assert_eq!(down.status.code(), Some(0));

    let missing = with_env(netfault(&["exec", &lab, "pod-a", "--", "true"]))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "the lab is gone");
}

/// A pinned lab with cluster DNS: `exec` shows the pod's resolv.conf (mounted over
/// /etc/resolv.conf) and its hostname, the pod's own resolver finds Services through the DNS
/// daemon `up` started, `truth-table` prints what the fixture expects, and `down` ends the
/// daemon.
#[test]
fn a_pinned_k8s_lab_resolves_names_from_its_pods_and_down_ends_its_dns_server() {
    if netfault::privilege::skip_without_pins(
        "a_pinned_k8s_lab_resolves_names_from_its_pods_and_down_ends_its_dns_server",
    ) {
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let netns = tempfile::tempdir().unwrap();
    let with_env = |mut c: Command| {
        c.env("NETFAULT_RUN_DIR", run.path())
            .env("NETFAULT_NETNS_DIR", netns.path());
        c
    };
    let lab = format!("k8{}", std::process::id());
    let up = with_env(netfault(&[
        "up",
        repo().join("fixtures/k8s.toml").to_str().unwrap(),
        "--name",
        &lab,
    ]))
    .output()
    .unwrap();
    assert_eq!(
        up.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.path().join(format!("labs/{lab}.json"))).unwrap(),
    )
    .unwrap();
    let pid = rec["dns_pid"][0].as_u64().expect("a DNS server pid") as u32;
    let exec = |cmd: &str| {
        let o = with_env(netfault(&["exec", &lab, "pod-a", "--", "sh", "-c", cmd]))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let resolv = exec("cat /etc/resolv.conf; hostname");
    let web = exec("getent hosts web");
    let api = exec("getent hosts api.default");
    let none = exec("getent hosts nosuch || echo no-such-name");
    let status = with_env(netfault(&["status", &lab, "-q"]))
        .output()
        .unwrap();
    let down = with_env(netfault(&["down", &lab])).output().unwrap();
    assert!(resolv.contains("nameserver 10.96.0.10\n"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local\n"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5\n"), "{resolv}");
    assert_eq!(resolv.lines().last(), Some("pod-a"));
    assert!(web.starts_with("10.96.0.20 "), "{web}");
    assert!(web.contains("web.default.svc.cluster.local"), "{web}");
    assert!(api.starts_with("10.96.0.30 "), "{api}");
    assert_eq!(none.trim(), "no-such-name");
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert_eq!(down.status.code(), Some(0));
    // Ended: gone, or a zombie waiting for init to reap it.
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_string()))
            .is_some_and(|r| !r.starts_with('Z'))
    };
    for _ in 0..100 {
        if !running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!running(), "down ends the DNS server");
    assert!(!run.path().join(format!("labs/{lab}.resolv")).exists());
    // Outside the lab, nothing changed.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(!host.contains("10.96.0.10"));

    let tt = netfault(&[
        "truth-table",
        repo().join("fixtures/k8s.toml").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&tt.stdout);
    assert_eq!(tt.status.code(), Some(0));
    assert!(
        text.contains("pod-b → pod-c icmp,tcp,udp: timeout (default: NetworkPolicy default/api-allow-client isolates pod-c for ingress"),
        "{text}"
    );
}

/// Two `up --name X` at the same moment: one wins, the other says the name is taken, and the
/// winner's lab is intact (its record and pins are not touched by the loser).
#[test]
fn two_ups_of_one_name_at_once_one_wins_the_other_gets_a_clear_error() {
    if netfault::privilege::skip_without_pins(
        "two_ups_of_one_name_at_once_one_wins_the_other_gets_a_clear_error",
    ) {
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let netns = tempfile::tempdir().unwrap();
    let with_env = |mut c: Command| {
        c.env("NETFAULT_RUN_DIR", run.path())
            .env("NETFAULT_NETNS_DIR", netns.path());
        c
    };
    let lab = format!("race{}", std::process::id());
    let fixture = repo().join("fixtures/single-node.toml");
    let spawn = || {
        with_env(netfault(&["up", fixture.to_str().unwrap(), "--name", &lab]))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let won: Vec<_> = outs.iter().filter(|o| o.status.code() == Some(0)).collect();
    let lost: Vec<_> = outs.iter().filter(|o| o.status.code() != Some(0)).collect();
    let status = with_env(netfault(&["status", &lab, "-q"]))
        .output()
        .unwrap();
    let down = with_env(netfault(&["down", &lab])).output().unwrap();
    assert_eq!(won.len(), 1, "exactly one wins");
    assert_eq!(lost.len(), 1);
    let err = String::from_utf8_lossy(&lost[0].stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(status.status.code(), Some(0), "the winner's lab is healthy");
    assert_eq!(down.status.code(), Some(0));
    assert_eq!(std::fs::read_dir(netns.path()).unwrap().count(), 0);
}

/// Ctrl-C during `netfault run`: it stops, says how many cases ran and how they ended, exits
/// 130, and leaves no lab behind (its labs are anonymous namespaces of the process).
#[test]
fn sigint_during_run_stops_it_cleanly_with_exit_130() {
    use std::io::BufRead;
    let mut child = netfault(&["run", repo().join("cases").to_str().unwrap(), "--jobs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Each case prints its line as it ends: wait for the first, then for the next case's lab.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(());
            lines.push(l);
        }
        lines
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("a first case finished");
    let held: Vec<u64> = loop {
        let held: Vec<u64> = netns_fds(pid)
            .unwrap()
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        if !held.is_empty() {
            break held;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = reader.join().unwrap().join("\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("netfault: interrupted after "), "{err}");
    assert!(err.contains("not finished"), "{err}");
    let ran = stdout
        .lines()
        .filter(|l| {
            ["PASS", "FAIL", "ERROR", "UNSUPPORTED"]
                .iter()
                .any(|s| l.starts_with(s))
        })
        .count();
    assert!(ran >= 1, "{stdout}");
    assert!(err.contains(&format!("after {ran} of")), "{err}\n{stdout}");
    // Nothing runs in those namespaces any more (no helper outlived the run).
    assert_eq!(
        netfault::leakcheck::processes_in(&held).unwrap(),
        Vec::new()
    );
}

/// A user without root: `netfault run` enters a user namespace of its own and runs the case; a
/// pinned lab is refused with what it needs.
#[test]
fn an_unprivileged_user_runs_cases_in_a_user_namespace_but_cannot_pin() {
    if netfault::privilege::skip_without_pins(
        "an_unprivileged_user_runs_cases_in_a_user_namespace_but_cannot_pin",
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // nobody may not be able to read this checkout (a clone under a 0700 directory): it gets
    // its own copy of the binary, the case and its fixture.
    let dir = tempfile::tempdir().unwrap();
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(dir.path(), 0o755).unwrap();
    for sub in ["cases", "fixtures"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        open(&dir.path().join(sub), 0o755).unwrap();
    }
    let bin = dir.path().join("netfault");
    std::fs::copy(BIN, &bin).unwrap();
    open(&bin, 0o755).unwrap();
    for f in ["cases/nft-reject.toml", "fixtures/single-node.toml"] {
        std::fs::copy(repo().join(f), dir.path().join(f)).unwrap();
        open(&dir.path().join(f), 0o644).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args);
        c.current_dir("/").env("TMPDIR", "/tmp");
        // SAFETY: only syscalls between fork and exec.
        unsafe {
            c.pre_exec(|| {
                nix::unistd::setgroups(&[])?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
                Ok(())
            });
        }
        c.output().unwrap()
    };
    let case = dir.path().join("cases/nft-reject.toml");
    let out = as_nobody(&["run", case.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
    let fixture = dir.path().join("fixtures/single-node.toml");
    let out = as_nobody(&["up", fixture.to_str().unwrap(), "--name", "nobody"]);
    assert_eq!(out.status.code(), Some(3), "could not do it: 3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("netfault up pins namespaces under /run/netns, which needs root of the machine (you are uid 65534)"),
        "{err}"
    );
}

/// Neither root nor user namespaces (the limit is 0, as a locked-down machine sets it): a clear
/// message says what is missing, exit 3 (could not do it), no panic.
#[test]
fn without_root_or_user_namespaces_netfault_says_what_is_missing() {
    use std::os::unix::process::CommandExt;
    let case = repo().join("cases/nft-reject.toml");
    let mut c = netfault(&["run", case.to_str().unwrap()]);
    // SAFETY: only syscalls between fork and exec. The child becomes an unmapped user (no
    // capabilities after exec) in a user namespace where no further one may be created.
    unsafe {
        c.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)?;
            let fd = libc::open(
                c"/proc/sys/user/max_user_namespaces".as_ptr(),
                libc::O_WRONLY,
            );
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("netfault needs root, or a user namespace to run without it")
            && err.contains("user.max_user_namespaces = 0")
            && err.contains("Run it as root"),
        "{err}"
    );
}
