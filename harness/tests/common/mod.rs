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
