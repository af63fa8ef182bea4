//! Probes: ICMP echo, TCP connect + echo, UDP echo, as Rust sockets opened inside the lab's
//! namespaces and driven by tokio, every probe at once.
//!
//! The prober opens its own echo listeners in the target namespaces, so it works on any lab,
//! including one another process brought up. Echo replies name the source address the server
//! saw (`seen_as`), which makes NAT visible.

mod classify;
mod dns;
mod echo;
mod flow;
mod held;
mod resend;
mod run;
mod sock;
mod spec;
pub mod standing;
mod watch;

pub use classify::{classify_ee, classify_errno};
pub use echo::Servers;
pub use flow::{hold, FlowResult, HeldFlows};
pub use run::{all_pairs, matrix, matrix_in_two, run};
pub use spec::{
    kernel_lacked, pairs_of, target_probes, Observation, ProbeSpec, FOREIGN_SERVER, FOREIGN_SILENT,
    KERNEL_LACKS, SEEN_DROPPED, UDP_SERVICE_SPORT,
};
