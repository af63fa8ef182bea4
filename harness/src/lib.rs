//! netfault: build disposable container-network labs in network namespaces, break them on
//! purpose, probe who can still reach whom, and explain why.

pub mod audit;
pub mod case;
pub mod cli;
pub mod clock;
pub mod cni;
pub mod conntrack;
pub mod diagnose;
pub mod diagram;
pub mod drill;
pub mod dropwatch;
pub mod enter;
pub mod error;
pub mod explore;
pub mod fault;
pub mod junit;
pub mod lab;
pub mod leakcheck;
pub mod matrix;
pub mod netns;
pub mod newcase;
pub mod nft;
pub mod nl;
pub mod nl6;
pub mod packets;
pub mod paths;
pub mod privilege;
pub mod probe;
pub mod registry;
pub mod report;
pub mod script;
pub mod steps;
pub mod testhook;
pub mod tools;
pub mod topology;
pub mod verdict;

pub use error::{Error, Result};
pub use lab::Lab;
pub use topology::{load_fixture, Outcome, Proto, Topology};

/// A tokio runtime for netfault's async API, for callers without one (tests, the CLI).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Workers and blocking threads live on after the call that made them: never in a lab.
        .on_thread_start(|| netns::return_home().expect("returning a runtime thread home"))
        .enable_all()
        .build()
        .expect("tokio runtime")
}
