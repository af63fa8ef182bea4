//! A live lab: one anonymous namespace per host, wired by netlink as the plan says.
//!
//! `Lab::up` returns only when every link is operationally up; if any step fails, everything
//! built so far is dropped (and so freed by the kernel) before the error returns. Dropping a
//! `Lab` closes its namespace fds and netlink sockets: the kernel then removes every namespace and
//! interface of the lab. Named labs (`up_named`) are also pinned under /run/netns and outlive the
//! process until `Lab::down_named`.

mod cni_pods;
mod converge;
mod dual_plan;
pub mod intended_path;
pub mod intent;
pub mod inventory;
pub mod k8s;
pub mod kube_proxy;
pub mod kube_proxy_iptables;
mod learn;
mod live;
mod named;
pub mod plan;
pub mod plan6;
pub mod policy;
mod reset;
mod services;
mod settle;
mod up;

pub use live::{CniState, Lab, LabHost};
pub use plan::{HostPlan, IfaceKind, Plan};
pub use reset::Reset;
