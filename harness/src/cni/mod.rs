//! A CNI runtime per the spec (1.0.0; 0.4.0 configs too): ADD, CHECK, DEL and VERSION of real
//! plugin binaries, single configs and conflists.
//!
//! Plugins run inside the node namespace (a plugin treats the namespace it runs in as the host);
//! `CNI_NETNS` is an nsfs path of the pod namespace (`/proc/PID/fd/N`). Conflist semantics, as
//! libcni: ADD runs the plugins in order, each with the list's name and cniVersion, its
//! `runtimeConfig` limited to its `capabilities`, and `prevResult` the previous plugin's output;
//! CHECK runs in order with the cached final result; DEL runs in reverse order with it. IPAM and
//! tuning state go to a per-lab directory, never /var/lib/cni.

mod path;
mod result;
mod runtime;
mod state;
mod verbs;

pub use crate::topology::conflist::{version_at_least, Attachment, CniError, ConfList};
pub use path::PluginPath;
pub use result::{summarize, ResultSummary};
pub use runtime::{Exec, PluginReply, Reply, Runtime};
pub use state::{gc_state_dirs, state_dir};
