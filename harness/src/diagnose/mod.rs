//! Explaining a lab from its live state: state capture and diff, and the path walk.

pub mod state;
pub mod walk;

pub use state::{capture, diff, LabState};
pub use walk::{explain, explain_changes, Component, Culprit, Diagnosis, Hop};
