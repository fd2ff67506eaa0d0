//! The dataplane's error type.

use std::fmt;
use std::io;

use crate::netns::NetnsError;

/// Why a dataplane operation failed. Messages name the operation and the link (by name or
/// index); the underlying netlink error is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The kernel (or the netlink connection) refused a request. (Boxed: rtnetlink's error
    /// can hold a whole netlink message, and results should stay small.)
    #[error("{op} ({target}): {source}")]
    Netlink {
        op: &'static str,
        target: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },

    #[error("{op}: link {link} not found")]
    LinkNotFound { op: &'static str, link: String },

    #[error("{op}: link {link} already exists")]
    LinkExists { op: &'static str, link: String },

    /// A VXLAN device could not be created: another device holds its VNI on its UDP port.
    #[error(
        "create vxlan {link}: VNI {vni} on UDP port {port} is already held by device {holder}"
    )]
    VniTaken {
        link: String,
        vni: u32,
        port: u16,
        holder: String,
    },

    /// A VXLAN device could not come up: its UDP port is bound by something that cannot share it.
    #[error("set up {link}: UDP port {port} is already bound by {holders}")]
    PortTaken {
        link: String,
        port: u16,
        holders: String,
    },

    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] io::Error),

    #[error("Dataplane::connect must be called inside a tokio runtime")]
    NoRuntime,

    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    #[error("{op} ({target}): {detail}")]
    Unexpected {
        op: &'static str,
        target: String,
        detail: String,
    },

    #[error(transparent)]
    Netns(#[from] NetnsError),
}

impl DataplaneError {
    /// The kernel's errno (positive) when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DataplaneError::Netlink { source, .. } => errno_of(source),
            _ => None,
        }
    }

    /// True when the object the operation needed (or meant to delete) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            DataplaneError::LinkNotFound { .. } => true,
            DataplaneError::Netns(e) => e.is_not_found(),
            _ => matches!(
                self.errno(),
                Some(libc::ENOENT | libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL)
            ),
        }
    }

    /// True when the object the operation meant to create already exists.
    pub fn is_exists(&self) -> bool {
        match self {
            DataplaneError::LinkExists { .. } => true,
            _ => self.errno() == Some(libc::EEXIST),
        }
    }

    pub(crate) fn invalid(what: impl fmt::Display, reason: impl fmt::Display) -> Self {
        DataplaneError::Invalid {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Builds a `map_err` closure that wraps an rtnetlink error with the operation and target.
pub(crate) fn nl(
    op: &'static str,
    target: impl fmt::Display,
) -> impl FnOnce(rtnetlink::Error) -> DataplaneError {
    let target = target.to_string();
    move |source| DataplaneError::Netlink {
        op,
        target,
        source: Box::new(source),
    }
}

/// The errno of an rtnetlink error, if the kernel answered with one.
pub(crate) fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()).filter(|c| *c != 0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<DataplaneError>() <= 72);
    }
}
