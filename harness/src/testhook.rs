//! Crash tests stop a netfault process at a checkpoint and SIGKILL it there.
//!
//! Checkpoints sit between the steps that build, break, probe and tear down a lab. With
//! `NETFAULT_PAUSE_AT` set, every checkpoint the process reaches is numbered in order and printed
//! on stderr as `netfault: checkpoint #N POINT`; the process then sleeps until it is killed if the
//! variable names that point (`up:pinned`) or that number (`#7`). `#0` pauses nowhere: it lists
//! the checkpoints of a whole run. Without the variable a checkpoint costs one environment lookup.
//!
//! Points include `up:namespaces` (namespaces exist, nothing wired), `up:wired`, `up:reserved`,
//! `up:pinned` (a named lab's first pin made), `up:recorded`, `probe:listening`, `probe:done`,
//! `capture`, `fault:injected`, `fault:healed`, `case:injected` (a case's faults are in),
//! `cni:exec` (a plugin is running), `cni:done`.

use std::sync::atomic::{AtomicU64, Ordering};

static REACHED: AtomicU64 = AtomicU64::new(0);

pub fn pause(point: &str) {
    let Ok(want) = std::env::var("NETFAULT_PAUSE_AT") else {
        return;
    };
    let n = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
    eprintln!("netfault: checkpoint #{n} {point}");
    if want == point || want.strip_prefix('#') == Some(n.to_string().as_str()) {
        eprintln!("netfault: paused at {point} (#{n})");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
