//! Every kind of fault, one file per family: its parameters, catalog line, check against a
//! topology and injection (which returns the exact heal). `registry.rs` lists them all.

mod address;
mod dns;
mod filter;
mod forwarding;
mod ipv6;
mod link;
mod mtu;
mod nat;
mod neighbour;
mod overlay;
mod policy;
mod route;
mod service;
mod shaping;

pub use address::*;
pub use dns::*;
pub use filter::*;
pub use forwarding::*;
pub use ipv6::*;
pub use link::*;
pub use mtu::*;
pub use nat::*;
pub use neighbour::*;
pub use overlay::*;
pub use policy::*;
pub use route::*;
pub use service::*;
pub use shaping::*;
