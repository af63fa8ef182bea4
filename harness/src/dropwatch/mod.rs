//! Seeing a probe's packet die, so that a negative is decided by evidence instead of a timeout.
//!
//! One tracefs instance per process (root of the machine only) records `skb:kfree_skb` (drops
//! with a reason) and failed `fib:fib_table_lookup`s (no route). A probe writes a marker into
//! the instance before and after each send: everything the kernel does for that packet in the
//! sender's context (the whole lab path, veths being synchronous) lands between its two
//! markers on the sender's thread, so a drop there is that probe's drop. A [`Book`] holds, per
//! probe run, what each probe's windows saw; echo servers add replies they could not send.
//! A window with no trusted drop reason still decides when no copy of its packets survived
//! ([`fate`]).
//!
//! Without tracefs (a rootless run) the book is filled by [`nfttrace`] instead: nft's drop
//! verdicts, in the namespaces with base chains, of packets that name a probe's own socket.
//! Drops elsewhere (no route, a neighbour that never resolves, a packet translated before the
//! filter that drops it) are waited out there.

mod book;
mod fate;
mod line;
mod nftmsg;
pub mod nfttrace;
mod tracer;

pub use book::{Book, Watched};
pub use tracer::{instances_of, private_tracefs, reap_stale};
