//! netfault: build disposable container-network labs in network namespaces, break them on
//! purpose, probe who can still reach whom, and explain why.

pub mod topology;
pub mod netns;
