//! Crash tests stop a netfault process at a named point: with `NETFAULT_PAUSE_AT=<point>` the
//! process prints `netfault: paused at <point>` on stderr and sleeps until it is killed. Points:
//! `up:namespaces` (namespaces exist, nothing wired), `up:pinned` (a named lab's first pin made),
//! `case:injected` (a case's faults are in).

pub fn pause(point: &str) {
    if std::env::var("NETFAULT_PAUSE_AT").as_deref() == Ok(point) {
        eprintln!("netfault: paused at {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
