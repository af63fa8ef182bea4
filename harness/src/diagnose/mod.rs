//! Explaining a lab from its live state: state capture and diff, the path walk with its nft
//! evaluator, and kernel evidence.

pub mod evidence;
mod kube_proxy_rules;
pub mod nfteval;
mod planted;
pub mod state;
pub mod vocab;
pub mod walk;
pub mod walk6;
mod whole_lab;

pub use state::{capture, diff, LabState};
pub use vocab::{Component, Culprit, Diagnosis, Evidence, Hop, HopStatus};
pub use walk::{explain, explain_changes, explain_pairs};
pub use whole_lab::{diagnose_lab, LabDiagnosis, PairReport};
