//! Faults: one variant per kind of breakage. `inject` changes the live lab and returns a
//! [`Guard`] holding an undo log; `heal` replays it backwards and restores exactly the state
//! before (names, MACs, addresses, routes, neighbours, FDB, sysctls, rule positions). Faults
//! compose: heal several in reverse order.
//!
//! Faults read the live lab, not what the harness remembers building: `delete-masquerade` finds
//! masquerade rules by content, whoever wrote them (nft's native `masquerade` or iptables-nft's xt
//! `MASQUERADE` target); `delete-route` deletes whatever route the host has to that network.

mod blame;
mod catalog;
mod check;
mod guard;
mod k8s;
mod kind;
pub mod kinds;
mod ops;
pub mod pinned;
mod registry;
mod route_bytes;
pub mod spec;
mod undo;
mod variants;

pub use blame::Blamable;
pub use catalog::catalog_markdown;
pub use check::{Checker, ParamError};
pub use guard::{heal_all, Guard};
pub use kind::{parse_rate, Breakage, Kind};
pub use ops::reinsert_lines;
pub use registry::{Fault, CATALOG};
pub use undo::Undo;
pub use variants::variants;

#[cfg(test)]
mod tests;
