//! A pinned lab used like a network: faults injected and healed from separate processes, a reset
//! from changes made by hand, commands inside pods, and the exit codes scripts rely on.

mod common;
use common::repo;

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_netfault");

/// Runs netfault with the lab's pins and records in the machine's usual places (so `ip netns
/// exec` sees them); each test uses a lab name of its own.
fn nf(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// curl run in pod-a of `lab` (silent, with `args`), as a user of the pinned lab runs it.
fn curl(lab: &str, args: &[&str]) -> Output {
    let mut all = vec!["exec", lab, "pod-a", "--", "curl", "-s"];
    all.extend_from_slice(args);
    nf(&all)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ip_netns(lab: &str, host: &str, cmd: &str) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", &format!("{lab}-{host}"), "sh", "-c", cmd])
        .output()
        .unwrap();
    assert!(o.status.success(), "{cmd}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A lab that goes down when the test ends, however it ends.
struct Up(String);

impl Up {
    fn new(prefix: &str, fixture: &str) -> Up {
        let name = format!("{prefix}{}", std::process::id());
        let f = repo().join(fixture);
        let o = nf(&["up", f.to_str().unwrap(), "--name", &name]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        Up(name)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = nf(&["down", &self.0]);
    }
}

/// Everything `heal` must put back exactly: links, addresses, routes, neighbours, rules, the
/// sysctls the faults touch.
fn state(lab: &str) -> String {
    ip_netns(
        lab,
        "node1",
        "ip link; ip addr; ip route; ip neigh; nft -s list ruleset; \
         sysctl net.ipv4.ip_forward net.ipv4.conf.all.forwarding",
    )
}

#[test]
fn faults_injected_into_a_pinned_lab_heal_exactly_from_another_process() {
    if netfault::privilege::skip_without_pins("faults_injected_into_a_pinned_lab_heal_exactly") {
        return;
    }
    let lab = Up::new("fh", "fixtures/single-node.toml");
    let lab = lab.0.as_str();
    let before = state(lab);
    let o = nf(&[
        "fault",
        lab,
        "delete-masquerade:node=node1",
        "nft-reject:node=node1,from=pod-b,proto=tcp,port=8080",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("#1 delete-masquerade:node=node1 injected"),
        "{}",
        text(&o)
    );
    let listed = nf(&["fault", lab]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .collect::<Vec<_>>(),
        [
            "#1 delete-masquerade:node=node1",
            "#2 nft-reject:node=node1,from=pod-b,proto=tcp,port=8080"
        ]
    );
    let st = nf(&["status", lab]);
    assert_eq!(st.status.code(), Some(1), "unhealthy: {}", text(&st));
    assert!(text(&st).contains("pod-a → ext tcp: expected reachable, observed timeout"));

    // Two faults held: heal must be told which.
    let which = nf(&["heal", lab]);
    assert_eq!(which.status.code(), Some(2), "{}", text(&which));
    assert!(text(&which).contains("name one"), "{}", text(&which));
    let one = nf(&["heal", lab, "nft-reject"]);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one));
    assert!(text(&one).contains("healed nft-reject:node=node1"));
    let unknown = nf(&["heal", lab, "7"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("holds no fault #7"),
        "{}",
        text(&unknown)
    );
    let rest = nf(&["heal", lab, "--all"]);
    assert!(text(&rest).contains("healed delete-masquerade:node=node1"));
    assert_eq!(
        state(lab),
        before,
        "heal puts back exactly what the faults changed"
    );
    assert_eq!(nf(&["status", lab]).status.code(), Some(0));
    let none = nf(&["heal", lab, "--all"]);
    assert!(text(&none).contains("nothing to heal"), "{}", text(&none));

    // A typo gets a suggestion and changes nothing.
    let typo = nf(&["fault", lab, "delete-masquerde:node=node1"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        text(&typo).contains("did you mean \"delete-masquerade\""),
        "{}",
        text(&typo)
    );
    let host = nf(&["fault", lab, "delete-masquerade:node=nod1"]);
    assert_eq!(host.status.code(), Some(2));
    assert!(
        text(&host).contains("did you mean \"node1\""),
        "{}",
        text(&host)
    );
    assert_eq!(state(lab), before);
}

#[test]
fn reset_undoes_changes_made_by_hand_and_lists_them() {
    if netfault::privilege::skip_without_pins("reset_undoes_changes_made_by_hand") {
        return;
    }
    let lab = Up::new("rs", "fixtures/two-node-vxlan.toml");
    let lab = lab.0.as_str();
    // A vxlan device set down and up loses its routes and neighbours: heal by hand cannot
    // bring them back with `ip link set up`.
    ip_netns(
        lab,
        "node1",
        "ip link set flannel.1 down; ip link set flannel.1 up; sysctl -qw net.ipv4.ip_forward=0; \
         ip route add blackhole 10.99.0.0/16; nft add table inet mine; \
         ip rule add from 10.244.1.2 lookup 100 priority 100; \
         sysctl -qw net.core.somaxconn=7",
    );
    ip_netns(lab, "pod-a", "ip addr flush dev eth0");
    // And a fault netfault injected: reset forgets it.
    let f = nf(&["fault", lab, "delete-masquerade:node=node2"]);
    assert_eq!(f.status.code(), Some(0), "{}", text(&f));
    assert_eq!(nf(&["status", lab]).status.code(), Some(1));

    let r = nf(&["reset", lab]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    let t = text(&r);
    for line in [
        "node1: route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 added",
        "node1: route blackhole 10.99.0.0/16 removed",
        "node1: sysctl net.ipv4.ip_forward 0 → 1",
        "node1: nft table inet mine deleted",
        "node1: rule 100: from 10.244.1.2/32 lookup 100 removed",
        "node1: sysctl net.core.somaxconn 7 → 4096",
        "pod-a: address eth0 10.244.1.2/24 added",
    ] {
        assert!(t.contains(line), "{line} in:\n{t}");
    }
    assert!(t.contains("node2: nft"), "the masquerade comes back: {t}");
    let st = nf(&["status", lab]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    let again = nf(&["reset", lab]);
    assert!(
        text(&again).contains("nothing changed back"),
        "{}",
        text(&again)
    );
    let held = nf(&["fault", lab]);
    assert!(text(&held).contains("holds no fault"), "{}", text(&held));
}

#[test]
fn pods_have_their_own_pids_and_resolv_conf_and_exec_exits_as_a_shell_does() {
    if netfault::privilege::skip_without_pins("pods_have_their_own_pids_and_resolv_conf") {
        return;
    }
    let up = Up::new("px", "fixtures/k8s.toml");
    let name = up.0.clone();
    let lab = name.as_str();
    let ps = nf(&[
        "exec",
        lab,
        "pod-a",
        "--",
        "sh",
        "-c",
        "echo $$; ls /proc | grep -c '^[0-9]'",
    ]);
    let out = String::from_utf8_lossy(&ps.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "the command is PID 1 in the pod: {out}");
    let n: u32 = lines[1].parse().unwrap();
    assert!(n <= 3, "only the pod's processes are in its /proc: {out}");
    let node = nf(&["exec", lab, "node1", "--", "sh", "-c", "echo $$"]);
    assert_ne!(
        String::from_utf8_lossy(&node.stdout).trim(),
        "1",
        "a node is a machine"
    );
    // ip netns exec mounts /etc/netns/LAB-POD/resolv.conf, which up wrote.
    let resolv = ip_netns(lab, "pod-a", "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local"),
        "{resolv}"
    );

    // The short name resolves through the search list (UDP, as glibc asks), and the cluster DNS
    // answers over TCP too (as `dig +tcp` asks).
    let getent = ip_netns(lab, "pod-a", "getent hosts web");
    assert!(getent.starts_with("10.96.0.20 "), "{getent}");
    let tcp = python_in(
        lab,
        "pod-a",
        "import socket, struct\n\
         name = b''.join(bytes([len(p)]) + p for p in b'web.default.svc.cluster.local'.split(b'.')) + b'\\0'\n\
         q = struct.pack('>HHHHHH', 7, 0x0100, 1, 0, 0, 0) + name + struct.pack('>HH', 1, 1)\n\
         s = socket.create_connection(('10.96.0.10', 53), timeout=3)\n\
         s.sendall(struct.pack('>H', len(q)) + q)\n\
         n = struct.unpack('>H', s.recv(2))[0]; r = b''\n\
         while len(r) < n: r += s.recv(n - len(r))\n\
         print(struct.unpack('>H', r[6:8])[0], socket.inet_ntoa(r[-4:]))",
    );
    assert_eq!(
        tcp.trim(),
        "1 10.96.0.20",
        "one answer, the ClusterIP, over TCP"
    );

    // A Kubernetes matrix is wider than a terminal: grouped by source it fits 100 columns.
    let by = nf(&["status", lab, "--matrix", "by-source"]);
    let t = String::from_utf8_lossy(&by.stdout).into_owned();
    let widest = t.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest <= 100, "{widest} columns:\n{t}");
    assert!(t.contains("node1  ✓ "), "{t}");
    assert!(
        t.contains("not reachable, as expected: pod-c icmp T"),
        "{t}"
    );
    // A pipe (no terminal width) gets the table, as scripts expect.
    let table = nf(&["status", lab]);
    let widest = String::from_utf8_lossy(&table.stdout)
        .lines()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    assert!(widest > 100, "the full table");

    let missing = nf(&["exec", lab, "pod-a", "--", "no-such-command-here"]);
    assert_eq!(missing.status.code(), Some(127), "{}", text(&missing));
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "echo hi\n").unwrap();
    let denied = nf(&["exec", lab, "pod-a", "--", plain.to_str().unwrap()]);
    assert_eq!(denied.status.code(), Some(126), "{}", text(&denied));

    drop(up);
    let etc = std::path::Path::new("/etc/netns").join(format!("{lab}-pod-a"));
    assert!(!etc.exists(), "down removes what it wrote under /etc/netns");
}

#[test]
fn errors_are_json_under_json_with_distinct_exit_codes() {
    // Bad input: 2, as JSON on stdout.
    let o = nf(&["--json", "script", "/nonexistent/fixture.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["exit"], 2);
    assert_eq!(v["error"]["kind"], "bad-input");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("fixture"),
        "{v}"
    );
    // A usage error clap finds: also JSON, also 2.
    let o = nf(&["--json", "up"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "bad-input");
    // Without --json, on stderr.
    let o = nf(&["script", "/nonexistent/fixture.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("netfault: "));
}

/// Runs a Python snippet inside a lab host (`ip netns exec`), returning its stdout.
fn python_in(lab: &str, host: &str, code: &str) -> String {
    ip_netns(lab, host, &format!("python3 - <<'EOF'\n{code}\nEOF"))
}

#[test]
fn servers_stay_for_real_clients_and_a_users_own_server_is_probed_as_it_is() {
    if netfault::privilege::skip_without_pins("servers_stay_for_real_clients") {
        return;
    }
    let lab = Up::new("sv", "fixtures/single-node.toml");
    let lab = lab.0.as_str();
    // Clients of the lab's own: the standing servers answer, masquerade shows.
    let got = python_in(
        lab,
        "pod-a",
        "import socket\n\
         s = socket.create_connection(('10.244.1.3', 80), timeout=3); s.sendall(b'x\\n')\n\
         print(s.recv(100).decode().strip())\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)\n\
         u.connect(('203.0.113.10', 7)); u.send(b'hi'); print(u.recv(100).decode())",
    );
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        [
            "netfault-echo seen=10.244.1.2 by=pod-b",
            "netfault-echo seen=203.0.113.1 by=ext hi"
        ],
        "{got}"
    );
    // curl gets an HTTP answer that says what the server saw.
    let answer = curl(lab, &["-m", "3", "http://203.0.113.10/"]);
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout),
        "netfault-echo seen=203.0.113.1 by=ext\n"
    );
    assert_eq!(nf(&["status", lab]).status.code(), Some(0));

    // The user's own servers, once the standing ones free the ports.
    let stop = nf(&["serve", lab, "--stop"]);
    assert!(text(&stop).contains("stopped"), "{}", text(&stop));
    let mut own = Command::new(BIN)
        .args(["exec", lab, "pod-b", "--", "python3", "-c"])
        .arg(
            "import socket, time\n\
             t = socket.socket(); t.bind(('0.0.0.0', 80)); t.listen()\n\
             u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('10.244.1.3', 7))\n\
             print('up', flush=True); time.sleep(60)",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(own.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "up");
    let st = nf(&["status", lab]);
    own.kill().unwrap();
    let _ = own.wait();
    let t = text(&st);
    assert!(
        t.contains("note: pod-b tcp/80: a server that is not netfault's listens there"),
        "{t}"
    );
    assert!(
        !t.contains("pod-a → pod-b tcp: expected"),
        "a connection it accepts is reachable: {t}"
    );
    // It never answers UDP: those probes time out, and say why they may.
    assert_eq!(st.status.code(), Some(1), "{t}");
    assert!(
        t.contains("pod-a → pod-b udp: expected reachable, observed timeout"),
        "{t}"
    );
    assert!(t.contains("it may not answer netfault's probe"), "{t}");
}

#[test]
fn a_case_given_as_a_fixture_and_a_fixture_given_as_a_case_say_which_is_which() {
    let fixture = repo().join("fixtures/single-node.toml");
    let o = nf(&["run", fixture.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("this is a fixture"), "{}", text(&o));
    assert!(text(&o).contains("netfault up"), "{}", text(&o));
    // `up` pins namespaces: without root it says that first.
    if netfault::privilege::skip_without_pins("a_case_given_to_up") {
        return;
    }
    let case = repo().join("cases/delete-veth.toml");
    let o = nf(&["up", case.to_str().unwrap(), "--name", "never"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("this is a case file"), "{}", text(&o));
    assert!(text(&o).contains("netfault run"), "{}", text(&o));
}

/// What `netfault faults` prints pastes as it is: each `[[fault]]` block is a case file's
/// TOML, and each `--fault` line is what `case new` and `netfault fault` take.
#[test]
fn the_catalog_prints_entries_that_paste_into_a_case_file_and_the_command_line() {
    let o = nf(&["faults"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut blocks = 0;
    for entry in out.split("\n\n").filter(|e| e.contains("[[fault]]")) {
        let toml_text: String = entry
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("[[fault]]"))
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let t: toml::Table =
            toml::from_str(&toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
        let from_toml: netfault::fault::Fault = t["fault"].as_array().unwrap()[0]
            .clone()
            .try_into()
            .unwrap();
        let flag = entry
            .lines()
            .find_map(|l| l.trim().strip_prefix("--fault "))
            .unwrap();
        let from_flag = netfault::fault::Fault::parse_spec(flag).unwrap();
        assert_eq!(from_toml, from_flag);
        blocks += 1;
    }
    assert_eq!(blocks, netfault::fault::CATALOG.len());
}

/// `--json` is honoured by the commands that print files (script, diagram), and `cni audit
/// --strict` turns what the audit reports into an exit code for CI.
#[test]
fn json_everywhere_and_a_strict_cni_audit() {
    let fixture = repo().join("fixtures/single-node.toml");
    let f = fixture.to_str().unwrap();
    let o = nf(&["--json", "script", f]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["script"].as_str().unwrap().contains("ip netns add"),
        "{v}"
    );
    let o = nf(&["--json", "diagram", f]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["text"].as_str().unwrap().starts_with("<svg"), "{v}");
    assert_eq!(v["format"], "svg");

    if netfault::privilege::skip_without_pins("a_strict_cni_audit") {
        return;
    }
    let conflist = repo().join("fixtures/cni/bridge.conflist");
    let c = conflist.to_str().unwrap();
    let plain = nf(&["--json", "cni", "audit", "--conflist", c, "--jobs", "2"]);
    assert_eq!(
        plain.status.code(),
        Some(0),
        "reports only: {}",
        text(&plain)
    );
    let strict = nf(&[
        "--json",
        "cni",
        "audit",
        "--conflist",
        c,
        "--jobs",
        "2",
        "--strict",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&strict.stdout).unwrap();
    let failures: Vec<&str> = v["strict_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    // The bridge plugin's CHECK does not look at forwarding, and its DEL after the namespace
    // is gone leaves the masquerade chain: both are what --strict exists to catch.
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("disable-ip-forward node=node1: CHECK misses it")),
        "{failures:#?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("DEL leaks")),
        "{failures:#?}"
    );
    assert!(
        !failures.iter().any(|f| f.contains("(all pass)")),
        "a fault that broke nothing is no miss"
    );
    assert_eq!(strict.status.code(), Some(1));
}

/// A dual-stack pinned lab: its inventory shows both families, the standing servers answer real
/// IPv6 clients (TCP through the ip6 masquerade, UDP from the address asked), and an IPv6 fault
/// breaks IPv6 only.
#[test]
fn a_dual_stack_lab_answers_ipv6_clients_and_breaks_one_family() {
    if netfault::privilege::skip_without_pins("a_dual_stack_lab_answers_ipv6_clients") {
        return;
    }
    let lab = Up::new("ds", "fixtures/dual-stack.toml");
    let lab = lab.0.as_str();
    let inv = text(&nf(&["inventory", lab]));
    assert!(inv.contains("10.244.1.2/24, fd00:10:244:1::2/64"), "{inv}");
    assert!(
        !inv.contains("fe80:"),
        "link-local addresses are left out: {inv}"
    );
    let client = "import socket\n\
         s = socket.create_connection(('2001:db8::10', 80), timeout=3); s.sendall(b'x\\n')\n\
         print(s.recv(100).decode().strip())\n\
         u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(3)\n\
         u.connect(('fd00:10:244:1::3', 7)); u.send(b'hi'); print(u.recv(100).decode())";
    let got = python_in(lab, "pod-a", client);
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        [
            "netfault-echo seen=2001:db8::1 by=ext",
            "netfault-echo seen=fd00:10:244:1::2 by=pod-b hi"
        ],
        "{got}"
    );
    let f = nf(&["fault", lab, "forward-drop-policy6:node=node1"]);
    assert_eq!(f.status.code(), Some(0), "{}", text(&f));
    let v4 = curl(lab, &["-m", "3", "http://203.0.113.10/"]);
    assert_eq!(
        String::from_utf8_lossy(&v4.stdout),
        "netfault-echo seen=203.0.113.1 by=ext\n"
    );
    let v6 = curl(lab, &["-m", "1", "-6", "http://[2001:db8::10]/"]);
    assert_eq!(
        v6.status.code(),
        Some(28),
        "curl times out over IPv6: {}",
        text(&v6)
    );
    let d = nf(&["diagnose", lab]);
    let t = text(&d);
    assert_eq!(d.status.code(), Some(1), "{t}");
    assert!(t.contains("pod-a → ext icmp6,tcp6,udp6: timeout"), "{t}");
    assert!(
        t.contains("culprit: node1 filter — table ip6 filter chain FORWARD drops"),
        "{t}"
    );
    assert!(
        !t.contains("ext icmp,") && !t.contains("ext tcp:"),
        "IPv4 is untouched: {t}"
    );
    assert_eq!(nf(&["heal", lab]).status.code(), Some(0));
    assert_eq!(nf(&["status", lab]).status.code(), Some(0));
}
