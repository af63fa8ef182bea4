//! Explaining a lab from its live state: state capture and diff, and the path walk.

pub mod state;

pub use state::{capture, diff, LabState};
