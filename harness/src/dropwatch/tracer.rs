//! The process's tracefs instance and the thread that reads it.
//!
//! The instance lives in a mount of tracefs made in a private mount namespace of the tracer's
//! own thread (the host's mounts stay as they are). It is named after this process
//! (`netfault-watch-PID-START`): at exit the tracer removes it; one a SIGKILLed process left is
//! removed by the next tracer or by `netfault gc` ([`reap_stale`]), and nothing else is touched.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::fate::{Fates, Verdict};
use super::line::{marker, parse, Line, PATH_ENDS};

/// What the tracer fills: a probe run's book (see `book`), by its run number.
pub(crate) trait Sink: Send + Sync {
    /// A window of probe `p` closed, with what the kernel dropped inside it, or the device
    /// whose queue dropped its packet before it left the sender.
    fn closed(&self, p: usize, drops: Vec<String>, queue_drop: Option<String>);
    /// Whether a failed lookup towards `dst` can be probe `p`'s packet or its reply.
    fn concerns(&self, p: usize, dst: std::net::IpAddr) -> bool;
}

const TRACING: &str = "/sys/kernel/tracing";
const PREFIX: &str = "netfault-watch-";

/// The process-wide tracer: where probes write their markers, and the books it fills.
pub struct Tracer {
    marker: std::fs::File,
    /// The instance's `set_event_pid`, opened for appending: events are recorded only on the
    /// threads that send inside windows (each adds itself before its first window), so a busy
    /// machine's other packets never reach the buffer.
    pids: std::fs::File,
    books: Arc<Books>,
    runs: AtomicU64,
}

type Books = Mutex<HashMap<u64, Weak<dyn Sink>>>;

static STOP: AtomicBool = AtomicBool::new(false);
static DONE: Mutex<Option<std::sync::mpsc::Receiver<()>>> = Mutex::new(None);

/// The tracer, started on first use; None where it cannot run.
pub(crate) fn shared() -> Option<&'static Tracer> {
    static TRACER: OnceLock<Option<Tracer>> = OnceLock::new();
    TRACER
        .get_or_init(|| {
            if std::env::var("NETFAULT_DROPWATCH").as_deref() == Ok("0")
                || !crate::privilege::can_pin()
            {
                return None;
            }
            start()
        })
        .as_ref()
}

impl Tracer {
    pub(crate) fn next_run(&self) -> u64 {
        self.runs.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register(&self, run: u64, book: Weak<dyn Sink>) {
        self.books.lock().unwrap().insert(run, book);
    }

    pub(crate) fn unregister(&self, run: u64) {
        self.books.lock().unwrap().remove(&run);
    }

    /// Runs `send` between probe `probe`'s two markers (each a single write(2), so one event
    /// on this thread).
    pub(crate) fn window<T>(&self, run: u64, probe: usize, send: impl FnOnce() -> T) -> T {
        self.watch_this_thread();
        let _ = (&self.marker).write(marker(true, run, probe).as_bytes());
        let r = send();
        let _ = (&self.marker).write(marker(false, run, probe).as_bytes());
        r
    }

    fn watch_this_thread(&self) {
        thread_local! {
            static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if !WATCHED.get() {
            let _ = (&self.pids).write(format!("{}\n", nix::unistd::gettid()).as_bytes());
            WATCHED.set(true);
        }
    }
}

/// Mounts tracefs privately on a thread of its own, creates and arms the instance, and leaves
/// the thread reading it until the process exits.
fn start() -> Option<Tracer> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let books: Arc<Books> = Arc::default();
    let reader_books = books.clone();
    crate::netns::spawn_home("netfault-dropwatch", move || {
        match setup() {
            Ok((inst, marker, pids, pipe)) => {
                let _ = tx.send(Some((marker, pids)));
                read(&reader_books, pipe);
                let _ = std::fs::write(format!("{inst}/events/enable"), "0");
                let _ = std::fs::remove_dir(&inst);
            }
            Err(_) => {
                let _ = tx.send(None);
            }
        }
        let _ = done_tx.send(());
        Ok(())
    })
    .ok()?;
    let (marker, pids) = rx.recv_timeout(Duration::from_secs(5)).ok()??;
    *DONE.lock().unwrap() = Some(done_rx);
    // SAFETY: registering a plain extern "C" function that takes nothing.
    unsafe { libc::atexit(stop_at_exit) };
    Some(Tracer {
        marker,
        pids,
        books,
        runs: AtomicU64::new(1),
    })
}

/// At exit: the reader stops, disarms and removes the instance (within its poll interval).
extern "C" fn stop_at_exit() {
    STOP.store(true, Ordering::SeqCst);
    if let Ok(mut done) = DONE.lock() {
        if let Some(rx) = done.take() {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// On the tracer's thread: a private tracefs mount, stale instances reaped, this process's
/// instance armed. Returns the instance path, its marker file, its pid filter and its pipe.
fn setup() -> std::io::Result<(String, std::fs::File, std::fs::File, std::fs::File)> {
    private_tracefs()?;
    reap_here();
    let inst = instance_path();
    std::fs::create_dir(&inst)?;
    let arm = || -> std::io::Result<(std::fs::File, std::fs::File, std::fs::File)> {
        let ev = |e: &str, f: &str, v: &str| std::fs::write(format!("{inst}/events/{e}/{f}"), v);
        std::fs::write(format!("{inst}/buffer_size_kb"), "2048")?;
        std::fs::write(format!("{inst}/trace_clock"), "mono")?;
        // poll(2) on the pipe wakes only once the buffer is this full (default 50%): at 0 it
        // wakes on the first event, so a probe learns of its drop at once.
        std::fs::write(format!("{inst}/buffer_percent"), "0")?;
        // Only the windows' threads (none yet: this one, which sends nothing) are traced.
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{inst}/set_event_pid"))?;
        pids.write_all(format!("{}\n", nix::unistd::gettid()).as_bytes())?;
        // Every reason from NOT_SPECIFIED (2) on: a packet's fate needs its frees (see `fate`).
        ev("skb/kfree_skb", "filter", "reason > 1")?;
        ev("skb/kfree_skb", "enable", "1")?;
        ev("skb/consume_skb", "enable", "1")?;
        for seen in ["net_dev_queue", "netif_rx", "netif_receive_skb"] {
            ev(&format!("net/{seen}"), "enable", "1")?;
        }
        ev("fib/fib_table_lookup", "filter", "err != 0")?;
        ev("fib/fib_table_lookup", "enable", "1")?;
        // IPv6's lookups, where the kernel has IPv6 (a miss there is no error of the watch).
        if ev("fib6/fib6_table_lookup", "filter", "err != 0").is_ok() {
            ev("fib6/fib6_table_lookup", "enable", "1")?;
        }
        let marker = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("{inst}/trace_marker"))?;
        let pipe = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("{inst}/trace_pipe"))?;
        Ok((marker, pids, pipe))
    };
    match arm() {
        Ok((marker, pids, pipe)) => Ok((inst, marker, pids, pipe)),
        Err(e) => {
            let _ = std::fs::remove_dir(&inst);
            Err(e)
        }
    }
}

/// This thread gets a mount namespace of its own (CLONE_FS: its root and cwd too) with tracefs
/// mounted in it; the host's mounts stay as they are.
pub fn private_tracefs() -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    match mount(
        Some("nodev"),
        TRACING,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        // Tracefs is mounted there already (systemd mounts it on a stock machine): mounting
        // the same superblock on the same place again is EBUSY, and the copy this namespace
        // got of the host's mount is the one to use.
        Err(nix::errno::Errno::EBUSY) if is_tracefs(TRACING) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_tracefs(path: &str) -> bool {
    use nix::sys::statfs::{statfs, TRACEFS_MAGIC};
    statfs(path).is_ok_and(|s| s.filesystem_type() == TRACEFS_MAGIC)
}

/// The path of this process's instance: `netfault-watch-PID-START`. The start time tells this
/// process from a later one that got its pid.
fn instance_path() -> String {
    let me = std::process::id();
    let start = crate::registry::process_start(me).unwrap_or(0);
    format!("{TRACING}/instances/{PREFIX}{me}-{start}")
}

/// Removes instances of netfault processes that no longer run (SIGKILLed ones); returns how many.
fn reap_here() -> usize {
    let Ok(rd) = std::fs::read_dir(format!("{TRACING}/instances")) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if is_stale(&name) && std::fs::remove_dir(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// Whether an instance name is a netfault process's that no longer runs: `netfault-watch-PID-
/// START[-tag]` (earlier versions added a tag for the diagnosis's own instance) whose pid is
/// gone or now another process's; or, as still earlier versions named that one,
/// `netfault-PID-TID` whose pid is gone.
fn is_stale(name: &str) -> bool {
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
    if let Some(rest) = name.strip_prefix(PREFIX) {
        let mut w = rest.split('-');
        return match (num(w.next()), num(w.next())) {
            (Some(pid), Some(start)) => crate::registry::process_start(pid as u32) != Some(start),
            _ => false,
        };
    }
    let Some(rest) = name.strip_prefix("netfault-") else {
        return false;
    };
    let mut w = rest.split('-');
    match (num(w.next()), num(w.next()), w.next()) {
        (Some(pid), Some(_), None) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// Names of the tracefs instances of process `pid` (this version's and earlier ones'), for
/// tests that check a killed process's were reaped; empty where tracefs cannot be mounted.
pub fn instances_of(pid: u32) -> Vec<String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if private_tracefs().is_err() {
                return Vec::new();
            }
            let Ok(rd) = std::fs::read_dir(format!("{TRACING}/instances")) else {
                return Vec::new();
            };
            let mine = [format!("{PREFIX}{pid}-"), format!("netfault-{pid}-")];
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| mine.iter().any(|m| n.starts_with(m.as_str())))
                .collect()
        })
        .join()
        .unwrap_or_default()
    })
}

/// Removes the tracefs instances SIGKILLed netfault processes left (for `netfault gc`); returns
/// how many, 0 where tracefs cannot be mounted.
pub fn reap_stale() -> usize {
    std::thread::scope(|s| {
        s.spawn(|| {
            if private_tracefs().is_err() {
                return 0;
            }
            reap_here()
        })
        .join()
        .unwrap_or(0)
    })
}

/// Reads the pipe until the process exits, handing each probe its window's drops.
fn read(books: &Books, pipe: std::fs::File) {
    let mut open: HashMap<i32, Open> = HashMap::new();
    let mut pending = String::new();
    let debug = std::env::var_os("NETFAULT_DROPWATCH_DEBUG").is_some();
    let mut buf = vec![0u8; 256 * 1024];
    let mut pipe = pipe;
    while !STOP.load(Ordering::SeqCst) {
        let mut pfd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the pipe stays open for the call. A timeout, so that the
        // exit's stop is seen.
        // A timeout reads too: the pipe is non-blocking, and waking is only a hint.
        if unsafe { libc::poll(&mut pfd, 1, 50) } < 0
            && nix::errno::Errno::last() != nix::errno::Errno::EINTR
        {
            return;
        }
        let n = match pipe.read(&mut buf) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        let mut lines: Vec<&str> = pending.split('\n').collect();
        let rest = lines.pop().unwrap_or("").to_string();
        for l in lines {
            if debug {
                eprintln!("dropwatch: {l}");
            }
            if let Some(line) = parse(l) {
                dispatch(books, &mut open, line);
            }
        }
        pending = rest;
    }
}

/// A window being read: its probe, the trusted drops inside it, and every packet's fate.
struct Open {
    run: u64,
    probe: usize,
    drops: Vec<String>,
    fates: Fates,
}

fn dispatch(books: &Books, open: &mut HashMap<i32, Open>, line: Line) {
    let book = |run: u64| books.lock().unwrap().get(&run).and_then(Weak::upgrade);
    match line {
        Line::Window {
            tid,
            open: true,
            run,
            probe,
        } => {
            let w = Open {
                run,
                probe,
                drops: Vec::new(),
                fates: Fates::default(),
            };
            open.insert(tid, w);
        }
        Line::Window {
            tid,
            open: false,
            run,
            probe,
        } => {
            let Some(mut w) = open.remove(&tid) else {
                return;
            };
            if (w.run, w.probe) != (run, probe) {
                return;
            }
            let mut queue_drop = None;
            if w.drops.is_empty() {
                match w.fates.verdict() {
                    Some(Verdict::Dead(why)) => w.drops.push(why),
                    Some(Verdict::QueueDrop { dev }) => queue_drop = Some(dev),
                    None => {}
                }
            }
            if let Some(b) = book(run) {
                b.closed(probe, w.drops, queue_drop);
            }
        }
        Line::Drop {
            tid,
            skb,
            reason,
            location,
        } => {
            if let Some(w) = open.get_mut(&tid) {
                w.fates.dropped(&skb, &reason, &location);
                if PATH_ENDS.contains(&reason.as_str()) {
                    w.drops
                        .push(format!("the kernel dropped it: {reason} at {location}"));
                }
            }
        }
        Line::Seen { tid, skb, dev } => {
            if let Some(w) = open.get_mut(&tid) {
                w.fates.seen(&skb, &dev);
            }
        }
        Line::Consumed { tid, skb } => {
            if let Some(w) = open.get_mut(&tid) {
                w.fates.consumed(&skb);
            }
        }
        Line::Lost => {
            for w in open.values_mut() {
                w.fates.lost();
            }
        }
        Line::NoRoute { tid, src, dst, err } => {
            let Some(w) = open.get_mut(&tid) else {
                return;
            };
            if book(w.run).is_some_and(|b| b.concerns(w.probe, dst)) {
                // A miss in the main table is what the sender sees as ENETUNREACH.
                let why = match -err {
                    libc::EAGAIN => "no matching route".to_string(),
                    e => nix::errno::Errno::from_raw(e).desc().to_string(),
                };
                w.drops
                    .push(format!("route lookup {src} → {dst} failed: {why}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where tracefs is mounted already (systemd does it), the private mount is the host's
    /// copy, not an error: the drop watch once silently stayed off on such machines.
    #[test]
    fn instances_are_stale_when_their_process_is_gone() {
        let me = std::process::id();
        let start = crate::registry::process_start(me).unwrap();
        assert!(!is_stale(&format!("{PREFIX}{me}-{start}")));
        assert!(!is_stale(&format!("{PREFIX}{me}-{start}-drops")));
        // The same pid with another start time: a process that ended, its pid reused.
        assert!(is_stale(&format!("{PREFIX}{me}-{}-drops", start + 1)));
        assert!(is_stale(&format!("{PREFIX}{}-1", u32::MAX)));
        // An earlier version's name: stale only when no process has the pid.
        assert!(!is_stale(&format!("netfault-{me}-77")));
        assert!(is_stale(&format!("netfault-{}-77", u32::MAX)));
        // Not netfault's, or not a name netfault gives.
        for other in [
            "dbg",
            "netfault-x",
            "netfault-watch-12",
            "perf-1-2",
            "netfault-1-2-3",
        ] {
            assert!(!is_stale(other), "{other}");
        }
    }

    #[test]
    fn a_private_tracefs_works_where_tracefs_is_mounted_already() {
        if !crate::privilege::can_pin() {
            eprintln!("skipped: needs root of the machine");
            return;
        }
        let seen = std::thread::spawn(|| {
            private_tracefs()?;
            // On this thread's own mounts: mounted once, now asked again in a fresh namespace.
            std::thread::scope(|s| s.spawn(private_tracefs).join().unwrap())?;
            Ok::<_, std::io::Error>(is_tracefs(TRACING))
        })
        .join()
        .unwrap();
        assert!(matches!(seen, Ok(true)), "{seen:?}");
    }
}
