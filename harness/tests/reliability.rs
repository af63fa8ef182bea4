//! SIGKILL at checkpoints of `netfault up`, `run` and `cni audit`: after each kill (and, for a
//! pinned lab, `netfault gc`) nothing of the killed process remains: network namespaces (so
//! their links), pins, mounts, records, CNI/IPAM state, temporary files, child processes, and the
//! root namespace's links are as before.
//!
//! A run with `NETFAULT_PAUSE_AT=#N` stops at its Nth checkpoint (see `netfault::testhook`). At
//! the stop the test notes every process of the run (its tree, and any process carrying the
//! test's marker in its environment, such as a daemon in a session of its own) and every network
//! namespace they hold, then SIGKILLs the netfault process. Small runs are killed at every
//! checkpoint; long ones at checkpoints drawn at random (the seed is printed; set
//! `NETFAULT_KILL_SEED` to replay one).

mod common;
use common::repo;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netfault::leakcheck::{alive, namespaces_held, process_tree, processes_marked, Proc, Witness};

const BIN: &str = env!("CARGO_BIN_EXE_netfault");
const MARKER: &str = "NETFAULT_KILLTEST";

fn path(rel: &str) -> String {
    repo().join(rel).to_string_lossy().into_owned()
}

/// The namespaces a process of the run holds. A process that ended (or whose pid now names
/// another process) while we looked holds nothing; any other failure fails the test, with what
/// /proc says of the process.
///
/// Access denied is asked again for a second before it fails the test: a process caught while
/// it exits (this kernel denies /proc/PID/ns and /proc/PID/fd of a task between releasing its
/// memory and its namespaces, even to root: ~1 in 5,000 reads of an `nft` that ends) is a zombie
/// holding nothing a moment later. CI met it once, with an `nft` of the run ending at the stop.
fn held_by(proc: Proc, own: u64, point: &str) -> Vec<(std::path::PathBuf, u64)> {
    let mut tries = 0;
    let mut held = namespaces_held(proc.0, own);
    while matches!(&held, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
        && alive(proc)
        && !zombie(proc.0)
        && tries < 20
    {
        std::thread::sleep(Duration::from_millis(50));
        tries += 1;
        held = namespaces_held(proc.0, own);
    }
    match held {
        Ok(held) => held,
        Err(_) if !alive(proc) || zombie(proc.0) => Vec::new(),
        Err(e) => {
            let status = std::fs::read_to_string(format!("/proc/{}/status", proc.0))
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    ["Name:", "State:", "Uid:", "Gid:", "CapEff:", "NSpid:"]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .collect::<Vec<_>>()
                .join("; ");
            panic!(
                "killed at {point}: cannot read the namespaces of pid {}: {e} ({status})",
                proc.0
            )
        }
    }
}

/// A CNI plugin that ended while netfault sat paused at `cni:exec` is a zombie until netfault
/// reaps it, which it never does once killed (CI met it in the rootless run).
fn zombie(pid: u32) -> bool {
    netfault::leakcheck::is_zombie(pid)
}

/// Whether `/proc/PID/fd/N` (or a task's `ns/net`) still names namespace `ino`: an fd closed
/// while we looked may already be reused by another file.
fn names(p: &Path, ino: u64) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.ino() == ino)
}

/// Private run, pin and temp directories, and a marker, for one command killed again and again.
struct Sandbox {
    run: tempfile::TempDir,
    pins: tempfile::TempDir,
    tmp: tempfile::TempDir,
    marker: String,
    args: Vec<String>,
    /// The lab name the command pins (then `netfault gc` runs after each kill).
    named: bool,
}

/// Where a command stopped.
enum Stop {
    Killed(String),
    Finished,
}

impl Sandbox {
    fn new(args: &[String], named: bool) -> Sandbox {
        let run = tempfile::tempdir().unwrap();
        Sandbox {
            marker: run
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            run,
            pins: tempfile::tempdir().unwrap(),
            tmp: tempfile::tempdir().unwrap(),
            args: args.to_vec(),
            named,
        }
    }

    fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("NETFAULT_RUN_DIR", self.run.path())
            .env("NETFAULT_NETNS_DIR", self.pins.path())
            .env("TMPDIR", self.tmp.path())
            .env(MARKER, &self.marker)
            .stdout(Stdio::null());
        c
    }

    /// The checkpoints a whole run passes, in order.
    fn checkpoints(&self) -> Vec<String> {
        let out = self
            .command(&self.args)
            .env("NETFAULT_PAUSE_AT", "#0")
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        if self.named {
            self.down();
        }
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|l| l.strip_prefix("netfault: checkpoint #"))
            .map(|l| l.split_once(' ').map_or("", |(_, p)| p).to_string())
            .collect()
    }

    fn down(&self) {
        let name = self.args.last().unwrap().clone();
        let out = self
            .command(&["down".into(), name])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs the command, SIGKILLs it at checkpoint `n`, and checks nothing of it remains.
    async fn kill_at(&self, n: usize) -> Stop {
        let mut child = self
            .command(&self.args)
            .env("NETFAULT_PAUSE_AT", format!("#{n}"))
            .stderr(Stdio::piped())
            .spawn()
            .map(common::Reaper)
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(p) = l.strip_prefix("netfault: paused at ") {
                    let _ = tx.send(p.to_string());
                }
                text.push_str(&l);
                text.push('\n');
            }
            text
        });
        let Ok(point) = rx.recv_timeout(Duration::from_secs(120)) else {
            // No checkpoint n: the run must have finished, and finished well (an early error
            // exit is a failure, not "the run ended before the point").
            let st = child.wait().unwrap();
            let text = stderr.join().unwrap();
            assert!(
                st.success(),
                "{:?} exited with {st} before checkpoint #{n}:\n{text}",
                self.args
            );
            if self.named {
                self.down();
            }
            return Stop::Finished;
        };
        // Everything of the run at the moment it stops.
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let mut procs: BTreeSet<Proc> = process_tree(child.id()).into_iter().collect();
        procs.extend(processes_marked(MARKER, &self.marker));
        let mut witness = Witness::new().await.unwrap();
        let mut inodes = Vec::new();
        for proc in &procs {
            // Fails closed: a namespace that cannot be watched fails the test, unless what held
            // it let go while we looked (the process ended, or the fd no longer names it).
            for (p, ino) in held_by(*proc, own, &point) {
                if inodes.contains(&ino) {
                    continue;
                }
                match witness.watch_path(&p).await {
                    Ok(()) => inodes.push(ino),
                    Err(_) if !names(&p, ino) => {}
                    Err(e) => panic!("killed at {point}: cannot watch {}: {e}", p.display()),
                }
            }
        }
        let pid = child.id();
        child.kill().unwrap();
        child.wait().unwrap();
        // Its tracefs instances (the drop watch's, the diagnosis's) are reaped as the next
        // netfault process's tracer or `netfault gc` reaps them.
        netfault::dropwatch::reap_stale();
        assert_eq!(
            netfault::dropwatch::instances_of(pid),
            Vec::<String>::new(),
            "killed at {point}: tracefs instances remain"
        );
        if self.named {
            let gc = self
                .command(&["gc".into()])
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            assert!(
                gc.status.success(),
                "gc after a kill at {point}: {}",
                String::from_utf8_lossy(&gc.stderr)
            );
        }
        self.assert_nothing_left(&point, &procs, &witness, &inodes)
            .await;
        Stop::Killed(point)
    }

    async fn assert_nothing_left(
        &self,
        point: &str,
        procs: &BTreeSet<Proc>,
        witness: &Witness,
        inodes: &[u64],
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let left = loop {
            let mut left: Vec<Proc> = procs.iter().copied().filter(|p| alive(*p)).collect();
            left.extend(processes_marked(MARKER, &self.marker));
            if left.is_empty() || Instant::now() > deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let left: Vec<String> = left
            .iter()
            .map(|(pid, _)| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!("{pid} {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        for pid in left
            .iter()
            .filter_map(|l| l.split(' ').next()?.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(
            left.is_empty(),
            "killed at {point}: processes outlived it: {left:?}"
        );
        assert_eq!(
            witness.wait_gone(Duration::from_secs(10)).await.unwrap(),
            0,
            "killed at {point}: namespaces outlived it ({} watched)",
            witness.watched()
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for i in inodes {
            assert!(
                !mounts.contains(&format!("net:[{i}]")),
                "killed at {point}: a pin remains mounted"
            );
        }
        assert_eq!(
            files_under(self.pins.path()),
            Vec::<String>::new(),
            "killed at {point}: pins remain"
        );
        assert_eq!(
            files_under(self.tmp.path()),
            Vec::<String>::new(),
            "killed at {point}: temporary files remain"
        );
        // Records, resolv.conf files, CNI and IPAM state (empty directories may stay).
        let state: Vec<String> = files_under(self.run.path());
        assert_eq!(
            state,
            Vec::<String>::new(),
            "killed at {point}: state remains"
        );
    }
}

/// Files (not directories) below `dir`, as relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The root namespace's interfaces and the system CNI state: a crash must not change them.
fn host_view() -> (Vec<String>, Vec<String>) {
    let mut links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    links.sort();
    (links, files_under(Path::new("/var/lib/cni")))
}

/// A deterministic choice of `k` checkpoints out of `1..=n`, from `seed`.
fn draw(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    let mut picked = BTreeSet::new();
    while picked.len() < k.min(n) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        picked.insert((x % n as u64) as usize + 1);
    }
    picked.into_iter().collect()
}

fn seed() -> u64 {
    std::env::var("NETFAULT_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Kills `args` at the given checkpoints (all of them when `sample` is None); returns how many
/// kills happened, after checking each.
async fn kill_everywhere(args: &[String], named: bool, sample: Option<usize>) -> usize {
    let host = host_view();
    let sb = Sandbox::new(args, named);
    let points = sb.checkpoints();
    assert!(
        points.len() >= 10,
        "{args:?} passes only {} checkpoints: {points:?}",
        points.len()
    );
    let chosen: Vec<usize> = match sample {
        None => (1..=points.len()).collect(),
        Some(k) => {
            let s = seed();
            eprintln!(
                "{args:?}: {k} of {} checkpoints, NETFAULT_KILL_SEED={s}",
                points.len()
            );
            draw(points.len(), k, s)
        }
    };
    let mut kills = 0;
    for n in &chosen {
        match sb.kill_at(*n).await {
            Stop::Killed(p) => {
                eprintln!("killed at #{n} {p}: nothing left");
                kills += 1;
            }
            // Concurrent steps may pass fewer checkpoints on another run.
            Stop::Finished => eprintln!("#{n}: the run finished first"),
        }
    }
    assert_eq!(
        host_view(),
        host,
        "the root namespace or /var/lib/cni changed"
    );
    eprintln!("{args:?}: {kills} kill points, no leak");
    kills
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The sixteen-labs test measures sixteen labs at once on two cores, not sixteen beside this
/// file's kill loops and up/down cycles (a DNS lookup then missed its 1 s timeout now and then):
/// it runs alone, the others share.
static LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// `netfault run --jobs 1 cases/NAME.toml`.
fn run_case(name: &str) -> Vec<String> {
    strings(&["run", "--jobs", "1", &path(&format!("cases/{name}.toml"))])
}

/// `netfault up` of the Kubernetes fixture (pins, records, resolv.conf files, kube-proxy tables,
/// the DNS daemon), killed at every checkpoint; `gc` then removes what the kill left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_checkpoint_of_up_then_gc_leaves_nothing() {
    let _load = LOAD.read().await;
    if netfault::privilege::skip_without_pins(
        "sigkill_at_every_checkpoint_of_up_then_gc_leaves_nothing",
    ) {
        return;
    }
    let args = strings(&["up", &path("fixtures/k8s.toml"), "--name", "killed"]);
    let kills = kill_everywhere(&args, true, None).await;
    assert!(kills >= 30, "{kills}");
}

/// `netfault run` of a quick case, killed at every checkpoint (lab up, probing, capturing,
/// injected, healed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_checkpoint_of_a_run_leaves_nothing() {
    let _load = LOAD.read().await;
    let kills = kill_everywhere(&run_case("nft-reject"), false, None).await;
    assert!(kills >= 20, "{kills}");
}

/// `netfault run` of a CNI case (plugins running, IPAM state) and a Kubernetes case (DNS server,
/// kube-proxy tables), killed at checkpoints drawn at random.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_checkpoints_of_cni_and_k8s_runs_leaves_nothing() {
    let _load = LOAD.read().await;
    let kills = kill_everywhere(&run_case("cni-bridge-masquerade"), false, Some(10)).await
        + kill_everywhere(&run_case("k8s-wrong-endpoint-port"), false, Some(8)).await;
    assert!(kills >= 14, "{kills}");
}

/// `netfault cni audit` (many labs, plugins ADD/CHECK/DEL, faults), killed at checkpoints drawn
/// at random.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_checkpoints_of_cni_audit_leaves_nothing() {
    let _load = LOAD.read().await;
    let args = strings(&[
        "cni",
        "audit",
        "--conflist",
        &path("fixtures/cni/bridge.conflist"),
    ]);
    let kills = kill_everywhere(&args, false, Some(12)).await;
    assert!(kills >= 10, "{kills}");
}

/// How many up/down cycles `up_down_cycles_leave_nothing` runs: 1,000 with `ci/run soak`.
fn cycles() -> usize {
    std::env::var("NETFAULT_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

/// `netfault up --name` and `netfault down`, again and again over three fixtures (a bridge, a
/// VXLAN overlay, the Kubernetes layer with its DNS daemon): after every `down` the lab's
/// namespaces are freed and nothing of it remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_down_cycles_leave_nothing() {
    let _load = LOAD.read().await;
    if netfault::privilege::skip_without_pins("up_down_cycles_leave_nothing") {
        return;
    }
    let host = host_view();
    let fixtures = ["single-node", "two-node-vxlan", "k8s"];
    let n = cycles();
    let t0 = Instant::now();
    for i in 0..n {
        let fixture = path(&format!("fixtures/{}.toml", fixtures[i % fixtures.len()]));
        let sb = Sandbox::new(&strings(&["up", &fixture, "--name", "cycle"]), true);
        let up = sb
            .command(&sb.args)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            up.status.success(),
            "cycle {i}: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let mut procs: BTreeSet<Proc> = processes_marked(MARKER, &sb.marker).into_iter().collect();
        let mut witness = Witness::new().await.unwrap();
        let mut inodes = Vec::new();
        for e in std::fs::read_dir(sb.pins.path()).unwrap().flatten() {
            inodes.push(std::fs::metadata(e.path()).unwrap().ino());
            witness.watch_path(&e.path()).await.unwrap();
        }
        assert!(
            witness.watched() >= 4,
            "cycle {i}: pins {}",
            witness.watched()
        );
        procs.extend(processes_marked(MARKER, &sb.marker));
        sb.down();
        sb.assert_nothing_left(&format!("cycle {i} ({fixture})"), &procs, &witness, &inodes)
            .await;
    }
    assert_eq!(
        host_view(),
        host,
        "the root namespace or /var/lib/cni changed"
    );
    eprintln!(
        "{n} up/down cycles in {:.1} s: nothing left after any",
        t0.elapsed().as_secs_f64()
    );
}

/// Sixteen `netfault run` processes at once, each its own case and lab (bridges, VXLAN,
/// Kubernetes Services and DNS, real CNI plugins), on a two-core machine: every case passes and
/// nothing is left. Their probe timeouts are tripled (`NETFAULT_TIMEOUT_SCALE`): at the fixtures'
/// 1 s a healthy baseline probe missed it now and then under this load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_labs_at_once_all_pass_and_leave_nothing() {
    let _alone = LOAD.write().await;
    let host = host_view();
    let cases = [
        "nft-reject",
        "delete-veth",
        "delete-masquerade",
        "disable-ip-forward",
        "bridge-down",
        "route-via",
        "remove-pod-address",
        "strict-rp-filter",
        "delete-vxlan-fdb",
        "vxlan-port",
        "misdirect-fdb",
        "k8s-no-endpoints",
        "k8s-hairpin-off",
        "k8s-dns-server-down",
        "cni-bridge-masquerade",
        "cni-ptp-route",
    ];
    let sandboxes: Vec<Sandbox> = cases
        .iter()
        .map(|c| Sandbox::new(&run_case(c), false))
        .collect();
    let t0 = Instant::now();
    let children: Vec<_> = sandboxes
        .iter()
        .map(|sb| {
            sb.command(&sb.args)
                // Sixteen labs on two cores: a healthy probe can wait past the fixtures' 1 s.
                .env("NETFAULT_TIMEOUT_SCALE", "3")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // All sixteen are running their labs at the same moment.
    let mut outputs = Vec::new();
    for (c, child) in cases.iter().zip(children) {
        outputs.push((c, child.wait_with_output().unwrap()));
    }
    let took = t0.elapsed();
    let failed: Vec<String> = outputs
        .iter()
        .filter(|(_, o)| !o.status.success())
        .map(|(c, o)| format!("{c}: {}", String::from_utf8_lossy(&o.stdout)))
        .collect();
    assert!(
        failed.is_empty(),
        "cases failed under load:\n{}",
        failed.join("\n")
    );
    for sb in &sandboxes {
        assert!(processes_marked(MARKER, &sb.marker).is_empty());
        assert_eq!(files_under(sb.tmp.path()), Vec::<String>::new());
    }
    assert_eq!(
        host_view(),
        host,
        "the root namespace or /var/lib/cni changed"
    );
    eprintln!("16 labs at once: all passed in {:.1} s", took.as_secs_f64());
}
