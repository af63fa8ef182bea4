//! The fault catalog as data: one variant per kind of breakage with its parameters, the
//! catalog's lines, names as the case files spell them, and parameter errors.

use serde::Serialize;

use super::check::{Checker, ParamError};

/// One kind of fault: its catalog line, its check against a topology, and its injection into a
/// live lab, which returns the steps that heal it exactly. Each kind is a struct of its typed
/// parameters (serde, as case files spell them) in its family's file under `kinds/`.
pub trait Breakage: Serialize {
    /// Its line in the catalog: name, parameters, what it does, the component it breaks.
    const KIND: Kind;
    /// Whether it changes the Kubernetes layer (kube-proxy's and the policies' tables, the DNS
    /// server) rather than links, routes, rules and sysctls.
    const KUBERNETES: bool = false;
    /// The kernel feature beyond netfault's baseline (veth, bridge, nftables, tbf) it needs, if
    /// any: its cases are `unsupported` exactly where the kernel lacks it.
    const KERNEL_FEATURE: Option<&'static str> = None;

    /// Components besides `KIND.component` the diagnosis may rightly blame this fault as.
    const ALSO_BLAMED_AS: &'static [crate::diagnose::Component] = &[];

    /// The hosts the diagnosis may rightly blame it at: those its parameters name and the node
    /// of each pod they name; for a Kubernetes-layer fault, every node too.
    fn blamed_at(&self, t: &crate::topology::Topology) -> Vec<String> {
        super::blame::hosts_named(self, t, Self::KUBERNETES)
    }

    /// Checks the parameters against the topology (names exist with the right role, numbers
    /// in range, the fixture has what the kind needs).
    fn check(&self, c: &Checker) -> Result<(), ParamError>;

    /// Breaks the lab; returns what heals it, in the order to undo backwards.
    fn inject(
        &self,
        lab: &crate::lab::Lab,
    ) -> impl std::future::Future<Output = crate::error::Result<Vec<super::undo::Undo>>> + Send;
}

/// Builds [`Fault`] (a variant per kind, tagged by `type` as case files write it), the catalog
/// and the dispatch to each kind from the one list in `registry.rs`.
macro_rules! registry {
    ($( $variant:ident => $ty:ident ),* $(,)?) => {
        /// A fault of any kind.
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "type", rename_all = "kebab-case")]
        pub enum Fault {
            $( $variant($ty), )*
        }

        /// Every kind, in the registry's order.
        pub const CATALOG: &[super::kind::Kind] = &[ $( <$ty as super::kind::Breakage>::KIND, )* ];

        $(
            impl From<$ty> for Fault {
                fn from(f: $ty) -> Fault {
                    Fault::$variant(f)
                }
            }
        )*

        impl Fault {
            /// Its catalog line.
            pub fn kind(&self) -> super::kind::Kind {
                match self { $( Fault::$variant(_) => <$ty as super::kind::Breakage>::KIND, )* }
            }

            /// Its name, as case files and the catalog spell it.
            pub fn name(&self) -> &'static str {
                self.kind().name
            }

            /// The kernel feature beyond netfault's baseline it needs, if any.
            pub fn kernel_feature(&self) -> Option<&'static str> {
                match self { $( Fault::$variant(_) => <$ty as super::kind::Breakage>::KERNEL_FEATURE, )* }
            }

            /// Where the diagnosis may rightly blame it (see `blame.rs`).
            pub fn blamable(&self, t: &crate::topology::Topology) -> super::blame::Blamable {
                match self { $( Fault::$variant(f) => {
                    let own = super::blame::component(<$ty as super::kind::Breakage>::KIND.component);
                    let mut components = vec![own];
                    components.extend_from_slice(<$ty as super::kind::Breakage>::ALSO_BLAMED_AS);
                    super::blame::Blamable {
                        hosts: super::kind::Breakage::blamed_at(f, t),
                        components,
                    }
                } )* }
            }

            /// Whether it changes the Kubernetes layer.
            pub(super) fn is_k8s(&self) -> bool {
                match self { $( Fault::$variant(_) => <$ty as super::kind::Breakage>::KUBERNETES, )* }
            }

            /// Checks the parameters against a topology: names exist and have the right
            /// role, interfaces exist on their host, numbers are in range, the fixture has
            /// what the kind needs.
            pub fn check(
                &self,
                t: &crate::topology::Topology,
            ) -> Result<(), super::check::ParamError> {
                let c = super::check::Checker { t };
                match self { $( Fault::$variant(f) => super::kind::Breakage::check(f, &c), )* }
            }

            pub(super) async fn inject_kind(
                &self,
                lab: &crate::lab::Lab,
            ) -> crate::error::Result<Vec<super::undo::Undo>> {
                match self { $( Fault::$variant(f) => super::kind::Breakage::inject(f, lab).await, )* }
            }
        }
    };
}
pub(super) use registry;

/// One entry of the catalog (`netfault faults`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Kind {
    pub name: &'static str,
    /// (parameter, what it is)
    pub params: &'static [(&'static str, &'static str)],
    pub description: &'static str,
    /// The diagnosis component this fault breaks.
    pub component: &'static str,
    /// A use of it on one of the repository's fixtures, as `--fault` and `netfault fault` take
    /// it (`netfault faults` prints it, and as TOML for a case file).
    pub example: &'static str,
}

pub(super) const POD: (&str, &str) = ("pod", "a pod");
pub(super) const NODE: (&str, &str) = ("node", "a node");
pub(super) const SERVICE: (&str, &str) = ("service", "a Service of the fixture");

/// A rate like `1mbit`, `500kbit`, `2gbit`, `8000bit` in bits per second.
pub fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("gbit") {
        (n, 1_000_000_000)
    } else if let Some(n) = lower.strip_suffix("mbit") {
        (n, 1_000_000)
    } else if let Some(n) = lower.strip_suffix("kbit") {
        (n, 1_000)
    } else if let Some(n) = lower.strip_suffix("bit") {
        (n, 1)
    } else {
        return Err(format!("rate \"{s}\" has no unit"));
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("rate \"{s}\" is not a number with a unit"))?;
    let bits = n * mult;
    if !(8_000..=100_000_000_000).contains(&bits) {
        return Err(format!("rate \"{s}\" is out of range (8kbit..100gbit)"));
    }
    Ok(bits)
}
