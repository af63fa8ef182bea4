//! netfault: build disposable container-network labs in network namespaces, break them on
//! purpose, probe who can still reach whom, and explain why.

pub mod diagnose;
pub mod error;
pub mod fault;
pub mod lab;
pub mod leakcheck;
pub mod matrix;
pub mod netns;
pub mod nft;
pub mod nl;
pub mod probe;
pub mod registry;
pub mod topology;

pub use error::{Error, Result};
pub use lab::Lab;
pub use topology::{load_fixture, Outcome, Proto, Topology};
