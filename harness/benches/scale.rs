//! netfault against `ip` shell scripts and `ip -batch`, side by side, at growing sizes.
//!
//!     cargo run --release -p netfault --example bench_scale -- [--sizes 10,50,100,200]
//!         [--rounds 5] [--json FILE] [--kinds single,vxlan]
//!
//! For N pods on one node (and the two-node vxlan design with N pods in all), it measures
//! netfault's lab up, full matrix (N×(N−1) ICMP and TCP probes), one fault injected and healed,
//! a whole case (up → baseline → fault → probe → diagnose → heal → down) and teardown until the
//! kernel freed every namespace; the process's peak memory and threads after up. In the same run
//! it builds and tears down the same namespaces, bridge, veths, addresses and routes with a shell
//! script of one `ip` per step and with `ip -batch` (one process per namespace), and prints
//! netfault's ratios against both (and Mininet's when `mn` is installed). Medians, with min–max.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netfault::fault::kinds;
use netfault::leakcheck::Witness;
use netfault::netns::Netns;
use netfault::topology::{parse_fixture, Source};
use netfault::{Lab, Proto};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Single,
    Vxlan,
    /// Ten vxlan nodes sharing the pods.
    Vxlan10,
    /// `Single`, dual-stack: every host with an IPv6 address too, probed over both families.
    Dual,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Single => "single",
            Kind::Vxlan => "vxlan",
            Kind::Vxlan10 => "vxlan10",
            Kind::Dual => "dual",
        }
    }
}

/// The fixture: N pods on one node's cni0, or N pods over two vxlan nodes; ICMP and TCP probes.
fn fixture(kind: Kind, n: usize) -> String {
    let probe = "[probe]\nprotocols = [\"icmp\", \"tcp\"]\n\n[expect]\n\"ext -> pod-*\" = \"unreachable\"\n";
    match kind {
        Kind::Single => format!(
            "description = \"{n} pods on one node\"\n\n[node.node1]\npod_cidr = \"10.244.0.0/22\"\nuplink = \"203.0.113.1/24\"\npods = {n}\n\n[external.ext]\nuplink = \"203.0.113.10/24\"\n\n{probe}"
        ),
        Kind::Dual => format!(
            "description = \"{n} pods on one dual-stack node\"\n\n[node.node1]\npod_cidr = [\"10.244.0.0/22\", \"fd00:10:244::/64\"]\nuplink = [\"203.0.113.1/24\", \"2001:db8::1/64\"]\npods = {n}\n\n[external.ext]\nuplink = [\"203.0.113.10/24\", \"2001:db8::10/64\"]\n\n{probe}"
        ),
        Kind::Vxlan => format!(
            "description = \"{n} pods on two vxlan nodes\"\n\n[cluster]\nnetwork = \"vxlan\"\ncidr = \"10.244.0.0/16\"\n\n\
             [node.node1]\npod_cidr = \"10.244.4.0/22\"\nuplink = \"203.0.113.1/24\"\npods = {}\n\n\
             [node.node2]\npod_cidr = \"10.244.8.0/22\"\nuplink = \"203.0.113.2/24\"\npods = {}\n\n\
             [external.ext]\nuplink = \"203.0.113.10/24\"\n\n{probe}",
            n.div_ceil(2),
            n / 2
        ),
        Kind::Vxlan10 => {
            let mut f = format!(
                "description = \"{n} pods on ten vxlan nodes\"\n\n[cluster]\nnetwork = \"vxlan\"\ncidr = \"10.244.0.0/16\"\n\n"
            );
            for i in 1..=10 {
                f += &format!(
                    "[node.node{i}]\npod_cidr = \"10.244.{i}.0/24\"\nuplink = \"203.0.113.{i}/24\"\npods = {}\n\n",
                    n / 10 + usize::from(i <= n % 10)
                );
            }
            f + &format!("[external.ext]\nuplink = \"203.0.113.100/24\"\n\n{probe}")
        }
    }
}

/// Past these sizes the bench skips the `ip` script baselines (an all-pairs neighbour script of
/// 1,000 pods is a million `ip neigh` lines) and runs two rounds.
const BASELINE_MAX: usize = 200;
/// The big labs issue 15 asks for: 1,000 pods on one node, ten vxlan nodes of 100.
const BIG: [(Kind, usize); 2] = [(Kind::Single, 1000), (Kind::Vxlan10, 1000)];

/// The case: pod-1's veth goes down on its node; everything to and from pod-1 times out.
const CASE: &str = "description = \"bench\"\nfixture = \"bench.toml\"\n\n[[fault]]\ntype = \"veth-down\"\npod = \"pod-1\"\n\n[expect]\n\"pod-1 -> *\" = \"timeout\"\n\"pod-* -> pod-1\" = \"timeout\"\n\"node* -> pod-1\" = \"timeout\"\n";

#[derive(Default, Clone)]
struct Series(Vec<Duration>);

impl Series {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    fn median(&self) -> Option<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len() / 2).copied()
    }
    fn spread(&self) -> Option<(Duration, Duration)> {
        Some((*self.0.iter().min()?, *self.0.iter().max()?))
    }
    fn show(&self) -> String {
        match (self.median(), self.spread()) {
            (Some(m), Some((lo, hi))) => format!("{} ({}–{})", ms(m), ms(lo), ms(hi)),
            _ => "-".into(),
        }
    }
    fn json(&self) -> serde_json::Value {
        match (self.median(), self.spread()) {
            (Some(m), Some((lo, hi))) => serde_json::json!({
                "median_ms": m.as_secs_f64() * 1e3, "min_ms": lo.as_secs_f64() * 1e3,
                "max_ms": hi.as_secs_f64() * 1e3, "rounds": self.0.len(),
            }),
            _ => serde_json::Value::Null,
        }
    }
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1e3;
    if m >= 100.0 {
        format!("{m:.0} ms")
    } else {
        format!("{m:.1} ms")
    }
}

#[derive(Default)]
struct Row {
    kind: &'static str,
    n: usize,
    up: Series,
    matrix: Series,
    probes: usize,
    not_as_expected: usize,
    fault: Series,
    case: Series,
    down: Series,
    peak_rss_mib: f64,
    threads_after_up: usize,
    neigh_permanent: usize,
    shell_up: Series,
    shell_down: Series,
    batch_up: Series,
    batch_down: Series,
    mininet_up: Option<Series>,
    /// What the matrix probed (`Matrix::coverage`).
    coverage: String,
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The same namespaces, bridge(s), veths, addresses and routes as `ip` commands: one line per
/// step, grouped by the namespace they run in ("" = the root, for `ip netns add`).
fn ip_steps(t: &netfault::Topology, lab: &str) -> Vec<(String, String)> {
    use netfault::lab::{IfaceKind, Plan};
    let plan = Plan::from_topology(t);
    let mut v = Vec::new();
    for h in &plan.hosts {
        v.push((String::new(), format!("netns add {lab}-{}", h.name)));
    }
    for h in &plan.hosts {
        let ns = format!("{lab}-{}", h.name);
        // Sysctls are no `ip` command: a `sysctl` process in the namespace, as scripts do.
        let kv: Vec<String> = h
            .sysctls
            .iter()
            .map(|(k, v)| format!("'{k}={v}'"))
            .collect();
        v.push((ns.clone(), format!("!sysctl -qw {}", kv.join(" "))));
        v.push((ns.clone(), "link set lo up".into()));
        for i in &h.ifaces {
            match &i.kind {
                IfaceKind::Bridge => {
                    v.push((ns.clone(), format!("link add {} type bridge", i.name)));
                    v.push((ns.clone(), format!("link set {} up", i.name)));
                }
                IfaceKind::Veth {
                    peer_host,
                    peer_name,
                    create: true,
                } => {
                    v.push((
                        ns.clone(),
                        format!(
                            "link add {} type veth peer name {peer_name} netns {lab}-{peer_host}",
                            i.name
                        ),
                    ));
                    if let Some(m) = &i.master {
                        v.push((ns.clone(), format!("link set {} master {m}", i.name)));
                    }
                    v.push((ns.clone(), format!("link set {} up", i.name)));
                }
                IfaceKind::Veth { create: false, .. } => {}
                IfaceKind::Vxlan {
                    vni,
                    port,
                    local,
                    dev,
                } => {
                    v.push((
                        ns.clone(),
                        format!(
                            "link add {} type vxlan id {vni} dstport {port} local {local} dev {dev} nolearning",
                            i.name
                        ),
                    ));
                    v.push((ns.clone(), format!("link set {} up", i.name)));
                }
            }
        }
    }
    // Peers come up from inside their namespace, then addresses and routes.
    for h in &plan.hosts {
        let ns = format!("{lab}-{}", h.name);
        for i in &h.ifaces {
            if matches!(i.kind, IfaceKind::Veth { create: false, .. }) {
                v.push((ns.clone(), format!("link set {} up", i.name)));
            }
        }
        for (dev, net) in &h.addresses {
            v.push((ns.clone(), format!("addr add {net} dev {dev}")));
        }
        for r in &h.routes {
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            let onlink = if r.onlink { " onlink" } else { "" };
            v.push((
                ns.clone(),
                format!("route add {}{via} dev {}{onlink}", r.dst, r.dev),
            ));
        }
    }
    v
}

/// Lets the kernel finish tearing down what the previous round left (it does so
/// asynchronously), so every build is timed on a quiet machine.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

fn run_sh(script: &str) {
    let mut c = Command::new("sh")
        .arg("-e")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sh");
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success(), "the baseline script failed");
}

fn ip_batch(ns: Option<&str>, lines: &[String]) -> std::process::Child {
    let mut cmd = Command::new("ip");
    if let Some(n) = ns {
        cmd.args(["-n", n]);
    }
    let mut c = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("ip");
    let text = lines.join("\n") + "\n";
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    c
}

/// Waits until the kernel freed the pinned namespaces `names` after `delete` ran.
async fn delete_and_wait(names: &[String], delete: impl FnOnce()) -> Duration {
    let mut w = Witness::new().await.unwrap();
    let mut held = Vec::new();
    for n in names {
        let ns = Netns::open(Path::new(&format!("/run/netns/{n}"))).unwrap();
        w.watch(&ns).await.unwrap();
        held.push(ns);
    }
    drop(held);
    let t = Instant::now();
    delete();
    assert_eq!(w.wait_gone(Duration::from_secs(30)).await.unwrap(), 0);
    t.elapsed()
}

async fn baselines(t: &netfault::Topology, row: &mut Row, rounds: usize) {
    let lab = format!("nfb{}", std::process::id());
    let steps = ip_steps(t, &lab);
    let names: Vec<String> = t
        .namespace_names()
        .iter()
        .map(|h| format!("{lab}-{h}"))
        .collect();
    for _ in 0..rounds {
        // One `ip` per step.
        let mut sh = String::new();
        for (ns, cmd) in &steps {
            if let Some(sysctl) = cmd.strip_prefix('!') {
                let _ = writeln!(sh, "ip netns exec {ns} {sysctl}");
            } else if ns.is_empty() {
                let _ = writeln!(sh, "ip {cmd}");
            } else {
                let _ = writeln!(sh, "ip -n {ns} {cmd}");
            }
        }
        settle().await;
        let t0 = Instant::now();
        run_sh(&sh);
        row.shell_up.push(t0.elapsed());
        let del: String = names
            .iter()
            .map(|n| format!("ip netns del {n}\n"))
            .collect();
        row.shell_down
            .push(delete_and_wait(&names, || run_sh(&del)).await);

        // `ip -batch`: the root's steps, then one `ip -n NS -batch` per namespace, one after
        // another (as a script does): creating namespaces first, then the rest.
        settle().await;
        let t0 = Instant::now();
        let root: Vec<String> = steps
            .iter()
            .filter(|(n, _)| n.is_empty())
            .map(|(_, c)| c.clone())
            .collect();
        assert!(ip_batch(None, &root).wait().unwrap().success());
        let creates = |c: &str| c.contains(" type ") || c.contains(" master ");
        for (ns, cmd) in &steps {
            if let Some(sysctl) = cmd.strip_prefix('!') {
                run_sh(&format!("ip netns exec {ns} {sysctl}\n"));
            }
        }
        for creating in [true, false] {
            for ns in &names {
                let lines: Vec<String> = steps
                    .iter()
                    .filter(|(n, c)| n == ns && !c.starts_with('!') && creates(c) == creating)
                    .map(|(_, c)| c.clone())
                    .collect();
                if !lines.is_empty() {
                    assert!(ip_batch(Some(ns), &lines).wait().unwrap().success());
                }
            }
        }
        row.batch_up.push(t0.elapsed());
        let del: Vec<String> = names.iter().map(|n| format!("netns del {n}")).collect();
        row.batch_down.push(
            delete_and_wait(&names, || {
                assert!(ip_batch(None, &del).wait().unwrap().success());
            })
            .await,
        );
    }
}

fn mininet(n: usize, rounds: usize) -> Option<Series> {
    if Command::new("sh")
        .args(["-c", "command -v mn"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return None;
    }
    let mut s = Series::default();
    for _ in 0..rounds {
        let t0 = Instant::now();
        let ok = Command::new("mn")
            .args([
                "--switch",
                "lxbr",
                "--controller",
                "none",
                "--topo",
                &format!("single,{n}"),
                "--test",
                "none",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            s.push(t0.elapsed());
        }
    }
    Some(s)
}

fn main() {
    // Paths are the repository's, as `ci/bench` gives them.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).expect("repository root");
    let mut sizes = vec![10usize, 50, 100, 200];
    let mut rounds = 5usize;
    let mut kinds = vec![Kind::Single, Kind::Dual, Kind::Vxlan];
    let mut json_out = PathBuf::from("target/bench/scale.json");
    let mut case_file = PathBuf::from("cases/nft-reject.toml");
    let mut big = true;
    let mut args = bench_args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|x| x.parse().unwrap())
                    .collect()
            }
            "--rounds" => rounds = args.next().unwrap().parse().unwrap(),
            "--json" => json_out = PathBuf::from(args.next().unwrap()),
            "--case" => case_file = PathBuf::from(args.next().unwrap()),
            "--no-big" => big = false,
            "--kinds" => {
                kinds = args
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|k| match k {
                        "vxlan" => Kind::Vxlan,
                        "vxlan10" => Kind::Vxlan10,
                        "dual" => Kind::Dual,
                        _ => Kind::Single,
                    })
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = netfault::runtime();
    let mut rows = Vec::new();
    let mut jobs: Vec<(Kind, usize)> = kinds
        .iter()
        .flat_map(|&k| sizes.iter().map(move |&n| (k, n)))
        .collect();
    if big {
        jobs.extend(BIG);
    }
    {
        for (kind, n) in jobs {
            let rounds = if n > BASELINE_MAX {
                rounds.min(2)
            } else {
                rounds
            };
            let text = fixture(kind, n);
            let topo =
                parse_fixture(&Source::new("bench.toml", &text)).unwrap_or_else(|e| panic!("{e}"));
            let case = netfault::case::parse_case(&Source::new("bench-case.toml", CASE), |_| {
                Ok(Source::new("bench.toml", &text))
            })
            .unwrap_or_else(|e| panic!("{e}"));
            let mut row = Row {
                kind: kind.name(),
                n,
                ..Default::default()
            };
            eprintln!("bench: {} pods, {} ...", n, kind.name());
            // Peak memory of this size only.
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            rt.block_on(async {
                for r in 0..rounds {
                    settle().await;
                    let t0 = Instant::now();
                    let lab = Lab::up(&topo).await.expect("up");
                    row.up.push(t0.elapsed());
                    if r == 0 {
                        row.threads_after_up = threads();
                        row.neigh_permanent =
                            lab.plan().hosts.iter().map(|h| h.neighbours.len()).sum();
                    }
                    let t0 = Instant::now();
                    let m = netfault::probe::matrix(&lab).await.expect("matrix");
                    row.matrix.push(t0.elapsed());
                    row.coverage = m.coverage.clone().unwrap_or_else(|| "all pairs".into());
                    row.probes = m
                        .cells
                        .iter()
                        .filter(|c| {
                            matches!(
                                c.proto,
                                Proto::Icmp | Proto::Tcp | Proto::Icmp6 | Proto::Tcp6
                            )
                        })
                        .count();
                    row.not_as_expected = row.not_as_expected.max(m.mismatches().len());
                    let t0 = Instant::now();
                    let g = netfault::fault::Fault::VethDown(kinds::VethDown {
                        pod: "pod-1".into(),
                    })
                    .inject(&lab)
                    .await
                    .expect("inject");
                    g.heal(&lab).await.expect("heal");
                    row.fault.push(t0.elapsed());
                    let mut w = Witness::new().await.unwrap();
                    for h in lab.hosts() {
                        w.watch(&h.ns).await.unwrap();
                    }
                    let t0 = Instant::now();
                    drop(lab);
                    assert_eq!(w.wait_gone(Duration::from_secs(30)).await.unwrap(), 0);
                    row.down.push(t0.elapsed());
                    // A whole case at 1,000 pods is not a speed figure but a flood: the downed
                    // veth's port forgets pod-1's MAC, so the bridge copies every probe for
                    // pod-1 to 999 ports until it times out (minutes of softirq).
                    if n > BASELINE_MAX {
                        continue;
                    }
                    let t0 = Instant::now();
                    let rep = case.run().await;
                    row.case.push(t0.elapsed());
                    assert_eq!(
                        rep.status,
                        netfault::case::Status::Pass,
                        "{}",
                        rep.summary().chars().take(600).collect::<String>()
                    );
                }
                row.peak_rss_mib = status_kib("VmHWM:") as f64 / 1024.0;
                if kind == Kind::Single && n <= BASELINE_MAX {
                    baselines(&topo, &mut row, rounds).await;
                }
            });
            if kind == Kind::Single && n <= BASELINE_MAX {
                row.mininet_up = mininet(n, rounds);
            }
            rows.push(row);
        }
    }
    // One small case end to end, as `cargo test` runs each: up, baseline, fault, probe,
    // diagnose (with kernel evidence), heal, check, down.
    let case = netfault::case::load_case(&case_file).unwrap_or_else(|e| panic!("{e}"));
    let mut case_times = Series::default();
    rt.block_on(async {
        for _ in 0..rounds.max(5) {
            settle().await;
            let t0 = Instant::now();
            let rep = case.run().await;
            case_times.push(t0.elapsed());
            assert_eq!(rep.status, netfault::case::Status::Pass, "{}", case.name);
        }
    });
    print_table(&rows);
    dual_vs_single(&rows);
    println!("\nthe matrix each size probed:");
    for r in &rows {
        println!("  {:<7} {:>5} pods: {}", r.kind, r.n, r.coverage);
    }
    println!(
        "\none case end to end ({}, fixture {}): {}",
        case_file.display(),
        case.topology.name,
        case_times.show()
    );
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let ratio = |a: &Series, b: &Series| match (a.median(), b.median()) {
                (Some(x), Some(y)) => serde_json::json!(y.as_secs_f64() / x.as_secs_f64()),
                _ => serde_json::Value::Null,
            };
            serde_json::json!({
                "kind": r.kind, "pods": r.n, "up": r.up.json(), "matrix": r.matrix.json(),
                "probes": r.probes, "not_as_expected": r.not_as_expected,
                "fault_inject_heal": r.fault.json(), "case": r.case.json(), "down_until_gone": r.down.json(),
                "peak_rss_mib": r.peak_rss_mib, "threads_after_up": r.threads_after_up,
                "permanent_neighbours": r.neigh_permanent,
                "matrix_coverage": r.coverage,
                "ip_shell": {"up": r.shell_up.json(), "down_until_gone": r.shell_down.json()},
                "ip_batch": {"up": r.batch_up.json(), "down_until_gone": r.batch_down.json()},
                "mininet": r.mininet_up.as_ref().map(|m| m.json()),
                "up_speedup_vs_ip_shell": ratio(&r.up, &r.shell_up),
                "up_speedup_vs_ip_batch": ratio(&r.up, &r.batch_up),
                "down_speedup_vs_ip_shell": ratio(&r.down, &r.shell_down),
                "down_speedup_vs_ip_batch": ratio(&r.down, &r.batch_down),
            })
        })
        .collect();
    if let Some(d) = json_out.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let json = serde_json::json!({
        "sizes": json,
        "case": {"file": case_file, "end_to_end": case_times.json()},
    });
    std::fs::write(&json_out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("\nJSON: {}", json_out.display());
}

/// Issue 18's goal: a dual-stack lab up in at most 1.6× the IPv4-only one's time (same run), its
/// matrix (both families) with every pair as expected.
fn dual_vs_single(rows: &[Row]) {
    for d in rows.iter().filter(|r| r.kind == "dual") {
        let Some(s) = rows.iter().find(|r| r.kind == "single" && r.n == d.n) else {
            continue;
        };
        if let (Some(a), Some(b), Some(ma), Some(mb)) = (
            s.up.median(),
            d.up.median(),
            s.matrix.median(),
            d.matrix.median(),
        ) {
            println!(
                "dual-stack vs IPv4-only, {} pods: up {} vs {} ({:.2}×); matrix {} probes in {} vs {} in {} ({:.2}×); {} not as expected",
                d.n,
                ms(b),
                ms(a),
                b.as_secs_f64() / a.as_secs_f64(),
                d.probes,
                ms(mb),
                s.probes,
                ms(ma),
                mb.as_secs_f64() / ma.as_secs_f64(),
                d.not_as_expected
            );
        }
    }
}

fn print_table(rows: &[Row]) {
    println!("netfault (median, min–max over rounds)");
    println!(
        "{:<7} {:>5}  {:<24} {:<26} {:>7} {:<22} {:<24} {:<22} {:>8} {:>7}",
        "design",
        "pods",
        "up",
        "matrix (icmp+tcp)",
        "probes",
        "fault inject+heal",
        "case (up…down)",
        "down until gone",
        "peak MiB",
        "threads"
    );
    for r in rows {
        println!(
            "{:<7} {:>5}  {:<24} {:<26} {:>7} {:<22} {:<24} {:<22} {:>8.1} {:>7}",
            r.kind,
            r.n,
            r.up.show(),
            format!(
                "{}{}",
                r.matrix.show(),
                if r.not_as_expected > 0 {
                    format!(" ({} wrong)", r.not_as_expected)
                } else {
                    String::new()
                }
            ),
            r.probes,
            r.fault.show(),
            r.case.show(),
            r.down.show(),
            r.peak_rss_mib,
            r.threads_after_up
        );
    }
    println!("\nbuilding the same namespaces and their sysctls, bridge, veths, addresses and routes (single node)");
    println!(
        "{:>5}  {:<24} {:<24} {:<24} {:<24} {:>10} {:>10} {:<18}",
        "pods",
        "ip per step: up",
        "down until gone",
        "ip -batch: up",
        "down until gone",
        "×shell",
        "×batch",
        "mininet up"
    );
    for r in rows.iter().filter(|r| r.kind == "single") {
        let ratio = |a: &Series, b: &Series| match (a.median(), b.median()) {
            (Some(x), Some(y)) => format!("{:.1}×", y.as_secs_f64() / x.as_secs_f64()),
            _ => "-".into(),
        };
        println!(
            "{:>5}  {:<24} {:<24} {:<24} {:<24} {:>10} {:>10} {:<18}",
            r.n,
            r.shell_up.show(),
            r.shell_down.show(),
            r.batch_up.show(),
            r.batch_down.show(),
            ratio(&r.up, &r.shell_up),
            ratio(&r.up, &r.batch_up),
            r.mininet_up
                .as_ref()
                .map(|m| m.show())
                .unwrap_or_else(|| "not installed".into())
        );
    }
    println!("(×shell, ×batch: how many times faster netfault's lab up is, same run; netfault's lab also has N² permanent neighbour entries, which the baselines skip)");
}

/// The arguments after `cargo bench ... --`, without the `--bench` flag cargo adds.
fn bench_args() -> impl Iterator<Item = String> {
    std::env::args().filter(|a| a != "--bench")
}
