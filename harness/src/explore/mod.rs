//! `netfault explore`: seeded rounds of combined faults on a fixture, each judged against what
//! its faults may be blamed as (wrong), what each breaks alone (missed) and heal; failing rounds
//! shrunk by delta debugging to minimal cases.

mod draw;
mod judge;
mod record;
mod round;
mod run;
pub mod shrink;
mod target;
mod write;

pub use draw::{draw, Offer, Rng};
pub use judge::{judge, Verdict, Wrong};
pub use record::{Exploration, Failure, RoundRecord, Shrunk, Summary};
pub use round::{run as run_round, Ran, RoundRun};
pub use run::{explore, replay, Options};
pub use target::Target;
