//! netfault's error type: every message says where (host, file, step) and what went wrong, in
//! words a user can act on.

use crate::topology::ConfigErrors;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a fixture or case file that does not validate. Nothing was built.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The kernel refused a netlink request.
    #[error("{host}: {what}: {msg}")]
    Netlink {
        host: String,
        what: String,
        msg: String,
    },
    /// `nft` failed or could not be run.
    #[error("{host}: nft: {msg}")]
    Nft { host: String, msg: String },
    /// A CNI plugin failed (or could not run).
    #[error("{0}")]
    Cni(#[from] crate::topology::conflist::CniError),
    /// This machine lacks a kernel feature or program the step needs.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Something this kernel has but netfault does not build (yet): not the kernel's lack.
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// A command-line value out of range or in conflict with what exists.
    #[error("{0}")]
    BadInput(String),
    /// A named lab, host or interface that does not exist, or a name already taken.
    #[error("{0}")]
    NotFound(String),
    /// The fault does not apply to the lab as it is (nothing to delete, say).
    #[error("not applicable: {0}")]
    NotApplicable(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::topology::ConfigError> for Error {
    fn from(e: crate::topology::ConfigError) -> Self {
        Error::Config(e.into())
    }
}

impl Error {
    pub fn other(msg: impl Into<String>) -> Self {
        Error::Other(msg.into())
    }

    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> Self {
        Error::Other(format!(
            "{what}: {}",
            crate::topology::source::plain_io_error(&e)
        ))
    }

    /// Whether the error is the user's input (exit code 2 in the CLI).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Config(_) | Error::NotFound(_) | Error::BadInput(_)
        )
    }
}

/// The errno of a netlink error, if it is one.
pub fn netlink_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// A netlink error as words ("File exists"), never raw bytes.
pub fn netlink_message(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => crate::topology::source::plain_io_error(&m.to_io()),
        rtnetlink::Error::RequestFailed => "the netlink connection closed".into(),
        other => format!("unexpected netlink reply ({})", short(other)),
    }
}

fn short(e: &rtnetlink::Error) -> String {
    let s = e.to_string();
    s.chars().take(120).collect()
}

pub fn nl(host: &str, what: impl Into<String>, e: rtnetlink::Error) -> Error {
    Error::Netlink {
        host: host.to_string(),
        what: what.into(),
        msg: netlink_message(&e),
    }
}
