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
        /// The kernel's answer in words (the source's own text is raw bytes).
        msg: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// A system call or file operation failed.
    #[error("{what}: {}", crate::topology::source::plain_io_error(.source))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A fault's parameters do not fit the lab it was given.
    #[error("{fault}: {source}")]
    InvalidFault {
        fault: String,
        #[source]
        source: crate::topology::param::ParamError,
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
        Error::Io {
            what: what.to_string(),
            source: e,
        }
    }

    /// The causes below this error, outermost first, that its message does not already say.
    pub fn causes(&self) -> Vec<String> {
        let shown = self.to_string();
        let mut out = Vec::new();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            // In words: io errors without "(os error N)", netlink errors never as raw bytes.
            let text = if let Some(io) = e.downcast_ref::<std::io::Error>() {
                crate::topology::source::plain_io_error(io)
            } else if let Some(n) = e.downcast_ref::<Box<rtnetlink::Error>>() {
                netlink_message(n)
            } else if let Some(n) = e.downcast_ref::<rtnetlink::Error>() {
                netlink_message(n)
            } else {
                e.to_string()
            };
            if !shown.contains(&text) && !out.contains(&text) {
                out.push(text);
            }
            cur = e.source();
        }
        out
    }

    /// Whether the error is the user's input (exit code 2 in the CLI).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Config(_) | Error::NotFound(_) | Error::BadInput(_) | Error::InvalidFault { .. }
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

pub fn nl_error(host: &str, what: impl Into<String>, e: rtnetlink::Error) -> Error {
    Error::Netlink {
        host: host.to_string(),
        what: what.into(),
        msg: netlink_message(&e),
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_causes_and_say_each_once() {
        let e = Error::io(
            "opening /run/netns/x",
            std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(
            e.to_string(),
            "opening /run/netns/x: No such file or directory"
        );
        let cause = std::error::Error::source(&e).expect("the io error is chained");
        assert_eq!(
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.raw_os_error()),
            Some(libc::ENOENT)
        );
        // The message already says the cause: nothing more to print.
        assert!(e.causes().is_empty());

        let t = crate::topology::parse_fixture(&crate::topology::Source::new(
            "single-node.toml",
            include_str!("../../fixtures/single-node.toml"),
        ))
        .unwrap();
        let f: crate::fault::Fault =
            toml::from_str("type = \"delete-veth\"\npod = \"pod-z\"\n").unwrap();
        let e = Error::InvalidFault {
            fault: f.to_string(),
            source: f.check(&t).unwrap_err(),
        };
        assert!(e.is_bad_input());
        let p = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<crate::fault::ParamError>())
            .expect("the parameter error is chained");
        assert_eq!(p.field, "pod");
        assert_eq!(
            e.to_string(),
            format!("delete-veth pod=pod-z: {}; {}", p.message, p.help)
        );
    }
}
