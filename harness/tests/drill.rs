//! A drill end to end, through the binary: start with a seed, check says not solved, hints
//! reveal one level at a time, a repair of the trainee's own (not the fault's exact inverse)
//! solves it, breakage the trainee causes is named, and the same seed gives the same drill.

use std::path::Path;
use std::process::{Command, Output};

use netfault::drill;
use netfault::fault::kinds;
use netfault::fault::Fault;
use netfault::netns::Netns;
use netfault::topology::{parse_fixture, Source};

const BIN: &str = env!("CARGO_BIN_EXE_netfault");

struct Env {
    run: tempfile::TempDir,
    netns: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            run: tempfile::tempdir().unwrap(),
            netns: tempfile::tempdir().unwrap(),
        }
    }

    fn netfault(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("NETFAULT_RUN_DIR", self.run.path())
            .env("NETFAULT_NETNS_DIR", self.netns.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    fn pin(&self, lab: &str, host: &str) -> Netns {
        Netns::open(&self.netns.path().join(format!("{lab}-{host}"))).unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a command inside a lab host's namespace, as a trainee at its shell would.
fn in_host(ns: &Netns, prog: &str, args: &[&str], stdin: &str) {
    let (prog, args, stdin) = (
        prog.to_string(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        stdin.to_string(),
    );
    let out = ns
        .run(move || {
            use std::io::Write;
            let mut c = Command::new(&prog)
                .args(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
            c.wait_with_output().unwrap()
        })
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// The first seed whose level-2 drill on the built-in fixture is a deleted masquerade.
fn masquerade_seed() -> u64 {
    let t = parse_fixture(&Source::new(
        "single-node.toml",
        include_str!("../../fixtures/single-node.toml"),
    ))
    .unwrap();
    (0..1000)
        .find(|&s| {
            drill::plan(&t, 2, s).first()
                == Some(&vec![Fault::DeleteMasquerade(kinds::DeleteMasquerade {
                    node: "node1".into(),
                })])
        })
        .expect("some seed deletes the masquerade first")
}

#[test]
fn a_drill_is_solved_by_an_equivalent_repair_and_hints_go_one_level_at_a_time() {
    if netfault::privilege::skip_without_pins(
        "a_drill_is_solved_by_an_equivalent_repair_and_hints_go_one_level_at_a_time",
    ) {
        return;
    }
    let env = Env::new();
    let lab = format!("dr{}", std::process::id());
    let seed = masquerade_seed().to_string();
    let o = env.netfault(&[
        "drill", "start", "--level", "2", "--seed", &seed, "--name", &lab,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let start = text(&o);
    // The symptom says who cannot reach whom, never what or where the fault is.
    assert!(start.contains("pod-a cannot reach ext"), "{start}");
    assert!(
        !start.contains("masquerade") && !start.contains("MASQUERADE"),
        "{start}"
    );
    assert!(
        start.contains(&format!("netfault shell {lab} node1")),
        "{start}"
    );

    let o = env.netfault(&["drill", "check", &lab]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("NOT SOLVED"), "{}", text(&o));
    assert!(text(&o).contains("pod-a → ext tcp"), "{}", text(&o));

    // Hints: area, then host, then component, then a command; never more than their level.
    let hint = |n: usize| {
        let o = env.netfault(&["drill", "hint", &lab]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains(&format!("hint {n} of 4")), "{t}");
        t
    };
    let h1 = hint(1);
    assert!(
        h1.contains("Area:") && !h1.contains("node1") && !h1.contains("masquerade"),
        "{h1}"
    );
    let h2 = hint(2);
    assert!(h2.contains("node1") && !h2.contains("masquerade"), "{h2}");
    let h3 = hint(3);
    assert!(
        h3.contains("node1's masquerade") && !h3.contains("Look with"),
        "{h3}"
    );
    let h4 = hint(4);
    assert!(
        h4.contains(&format!("netfault exec {lab} node1")) && h4.contains("nft list ruleset"),
        "{h4}"
    );

    // The capture names where each broken pair's own packets were last seen: an interface on
    // its way (pod-a, node1 or ext), never one that holds only other pairs' packets.
    let o = env.netfault(&["--json", "drill", "check", &lab]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut named = 0;
    for p in v["pcaps"].as_array().unwrap() {
        let of: Vec<&str> = p["last_packets_of"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        if of.contains(&"pod-a → ext tcp") {
            named += 1;
            let host = p["host"].as_str().unwrap();
            assert!(["pod-a", "node1", "ext"].contains(&host), "{p}");
        }
    }
    assert_eq!(named, 1, "one interface saw the pair's last packet: {v}");

    // The trainee breaks something else on the way: check names it as theirs, and only it.
    let pod_b = env.pin(&lab, "pod-b");
    in_host(&pod_b, "ip", &["link", "set", "eth0", "down"], "");
    let o = env.netfault(&["drill", "check", &lab]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("not by the drill"), "{t}");
    assert!(t.contains("pod-b → pod-a tcp"), "{t}");
    let o = env.netfault(&["--json", "drill", "check", &lab]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in v["collateral"].as_array().unwrap() {
        assert!(
            k.as_str().unwrap().contains("pod-b"),
            "only pairs that broke: {v}"
        );
    }
    // Up again, the link has lost its default route (the kernel drops it with the link): put
    // it back, as a trainee would after `check` keeps naming pod-b.
    in_host(&pod_b, "ip", &["link", "set", "eth0", "up"], "");
    let o = env.netfault(&["drill", "check", &lab]);
    assert!(text(&o).contains("pod-b → node1 tcp"), "{}", text(&o));
    in_host(
        &pod_b,
        "ip",
        &["route", "add", "default", "via", "10.244.1.1"],
        "",
    );

    // A repair that is not the exact inverse: SNAT to the uplink address in a table of its own.
    let node1 = env.pin(&lab, "node1");
    in_host(
        &node1,
        "nft",
        &["-f", "-"],
        "table ip trainee {\n chain post {\n  type nat hook postrouting priority srcnat;\n  ip saddr 10.244.1.0/24 oifname \"eth0\" snat to 203.0.113.1\n }\n}\n",
    );
    let o = env.netfault(&["drill", "check", &lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("SOLVED"), "{}", text(&o));
    // The clock stopped at the solve: status says so, and its time no longer moves.
    let seconds = || {
        let o = env.netfault(&["--json", "drill", "status", &lab]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["solved"], true, "{v}");
        v["seconds"].as_u64().unwrap()
    };
    let first = seconds();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(seconds(), first, "the timer stops at SOLVED");
    let o = env.netfault(&["drill", "status", &lab]);
    assert!(text(&o).contains("SOLVED in"), "{}", text(&o));

    let o = env.netfault(&["drill", "reveal", &lab]);
    assert!(
        text(&o).contains("delete-masquerade node=node1"),
        "{}",
        text(&o)
    );
    drop((node1, pod_b));
    let o = env.netfault(&["drill", "end", &lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!Path::new(&env.netns.path().join(format!("{lab}-node1"))).exists());
    assert!(!drill_state(&env, &lab).exists());
}

fn drill_state(env: &Env, lab: &str) -> std::path::PathBuf {
    env.run.path().join("drills").join(format!("{lab}.json"))
}

#[test]
fn the_same_seed_gives_the_same_drill() {
    if netfault::privilege::skip_without_pins("the_same_seed_gives_the_same_drill") {
        return;
    }
    let env = Env::new();
    let id = std::process::id();
    let mut revealed = Vec::new();
    for n in 0..2 {
        let lab = format!("ds{id}x{n}");
        let o = env.netfault(&[
            "drill", "start", "--level", "3", "--seed", "1234", "--name", &lab,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let r = env.netfault(&["drill", "reveal", &lab, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(
            v["faults"].as_array().unwrap().len(),
            2,
            "level 3: two faults"
        );
        revealed.push(v["faults"].clone());
        // Same symptom text too (minus the lab name).
        let s = env.netfault(&["drill", "status", &lab, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
        revealed.push(v["symptom"].clone());
        assert_eq!(env.netfault(&["drill", "end", &lab]).status.code(), Some(0));
    }
    assert_eq!(revealed[0], revealed[2]);
    assert_eq!(revealed[1], revealed[3]);
}

#[test]
fn bad_drill_input_is_refused_and_builds_nothing() {
    if netfault::privilege::skip_without_pins("bad_drill_input_is_refused_and_builds_nothing") {
        return;
    }
    let env = Env::new();
    let o = env.netfault(&["drill", "start", "--level", "7", "--name", "dbad"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("levels are 1"), "{}", text(&o));
    let o = env.netfault(&["drill", "check", "nodrill"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no drill on lab \"nodrill\""),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(env.netns.path()).unwrap().count(), 0);
}

/// An injected filter does not name itself: `nft list ruleset` shows a rule as an admin would
/// write it, not the fault's name.
#[test]
fn injected_filters_do_not_give_the_answer_away() {
    if netfault::privilege::skip_without_pins("injected_filters_do_not_give_the_answer_away") {
        return;
    }
    let t = parse_fixture(&Source::new(
        "single-node.toml",
        include_str!("../../fixtures/single-node.toml"),
    ))
    .unwrap();
    let seed = (0..1000)
        .find(|&s| {
            matches!(
                drill::plan(&t, 2, s).first().map(|v| &v[0]),
                Some(Fault::NftReject(_))
            )
        })
        .expect("some seed rejects first");
    let env = Env::new();
    let lab = format!("nr{}", std::process::id());
    let o = env.netfault(&[
        "drill",
        "start",
        "--level",
        "2",
        "--seed",
        &seed.to_string(),
        "--name",
        &lab,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let node1 = env.pin(&lab, "node1");
    let ruleset = node1
        .run(|| {
            std::process::Command::new("nft")
                .args(["list", "ruleset"])
                .output()
        })
        .unwrap()
        .unwrap();
    let ruleset = String::from_utf8_lossy(&ruleset.stdout).into_owned();
    drop(node1);
    let _ = env.netfault(&["drill", "end", &lab]);
    assert!(ruleset.contains(" reject"), "{ruleset}");
    assert!(
        !ruleset.contains("nft-reject") && !ruleset.contains("netfault_"),
        "{ruleset}"
    );
}

/// "IPv4 works, IPv6 doesn't" as a drill: on a dual-stack fixture a level-2 drill may turn
/// IPv6 forwarding off; check names the IPv6 pairs only, and the trainee's sysctl solves it.
#[test]
fn a_dual_stack_drill_breaks_ipv6_only_and_a_sysctl_solves_it() {
    if netfault::privilege::skip_without_pins(
        "a_dual_stack_drill_breaks_ipv6_only_and_a_sysctl_solves_it",
    ) {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dual-stack.toml");
    let t = parse_fixture(&Source::new(
        "dual-stack.toml",
        include_str!("../../fixtures/dual-stack.toml"),
    ))
    .unwrap();
    let want = vec![Fault::DisableIpv6Forward(kinds::DisableIpv6Forward {
        node: "node1".into(),
    })];
    let seed = (0..1000)
        .find(|&s| drill::plan(&t, 2, s).first() == Some(&want))
        .expect("some seed turns IPv6 forwarding off")
        .to_string();
    let env = Env::new();
    let lab = format!("dv{}", std::process::id());
    let fx = fixture.to_str().unwrap();
    let o = env.netfault(&[
        "drill",
        "start",
        "--fixture",
        fx,
        "--level",
        "2",
        "--seed",
        &seed,
        "--name",
        &lab,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !text(&o).contains("forward"),
        "the symptom gives nothing away: {}",
        text(&o)
    );
    let o = env.netfault(&["drill", "check", &lab]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("pod-a → ext tcp6"), "{t}");
    assert!(!t.contains("pod-a → ext tcp\n"), "IPv4 still works: {t}");
    let node1 = env.pin(&lab, "node1");
    in_host(
        &node1,
        "sysctl",
        &["-w", "net.ipv6.conf.all.forwarding=1"],
        "",
    );
    let o = env.netfault(&["drill", "check", &lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("SOLVED"), "{}", text(&o));
    drop(node1);
    let o = env.netfault(&["drill", "end", &lab]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
