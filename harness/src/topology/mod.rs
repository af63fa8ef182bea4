//! The plain-data model of a lab (no syscalls): fixtures parsed and validated into a [`Topology`].

pub mod conflist;
pub mod coverage;
pub mod expect;
pub mod family;
pub mod k8s;
pub mod k8s_eval;
pub mod model;
pub mod param;
pub mod parse;
pub mod selector;
pub mod source;
pub mod suggest;

pub use coverage::Coverage;
pub use expect::{ExpectRule, Outcome, PairPattern, Proto};
pub use family::Family;
pub use k8s::{K8s, Target};
pub use k8s_eval::TargetProbe;
pub use model::*;
pub use parse::{load_fixture, parse_fixture};
pub use source::{ConfigError, ConfigErrors, Key, Source};
pub use suggest::did_you_mean;
