//! Typed errors of the datapath crate: each names what failed (the map, program, path or
//! field) and carries the cause.

use std::{io, path::PathBuf};

/// Errors of loading, pinning, attaching and map updates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; nothing was changed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The bad field or argument.
        field: &'static str,
        /// Why it is bad.
        reason: String,
    },
    /// bpffs could not be found or mounted.
    #[error("bpffs at {path}: {source}")]
    Bpffs {
        /// The mount point.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A pin directory or pin file could not be made, read or removed.
    #[error("pin path {path}: {source}")]
    PinPath {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The kernel (or aya) refused an object: parse, map creation, or map reuse.
    #[error("loading {object}.o: {source}")]
    Load {
        /// The object (`lxc`, `sock`).
        object: &'static str,
        /// The cause.
        source: Box<aya::EbpfError>,
    },
    /// An object lacks a map or program this crate expects (a build mismatch).
    #[error("{object}.o has no {kind} {name}")]
    Missing {
        /// The object.
        object: &'static str,
        /// `map` or `program`.
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// Loading (verifier), attaching or test-running a program failed.
    #[error("program {program}: {action}: {source}")]
    Program {
        /// The program.
        program: &'static str,
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: Box<aya::programs::ProgramError>,
    },
    /// A link could not be turned into a pinnable bpf_link.
    #[error("link of program {program}: {source}")]
    Link {
        /// The program.
        program: &'static str,
        /// The cause.
        source: Box<aya::programs::links::LinkError>,
    },
    /// Pinning a program, map or link failed.
    #[error("pinning {what} at {path}: {source}")]
    Pin {
        /// What was pinned.
        what: String,
        /// Where.
        path: PathBuf,
        /// The cause.
        source: aya::pin::PinError,
    },
    /// A map operation failed.
    #[error("map {map}: {op}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// The operation.
        op: &'static str,
        /// The cause.
        source: Box<aya::maps::MapError>,
    },
    /// A raw bpf(2) command or a file system step on a target failed.
    #[error("{op} on {target}: {source}")]
    Sys {
        /// The operation (`BPF_LINK_UPDATE`, `open cgroup`, `setns`, ...).
        op: &'static str,
        /// What it was done to.
        target: String,
        /// The cause.
        source: io::Error,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }
    pub(crate) fn map(map: &'static str, op: &'static str, e: aya::maps::MapError) -> Self {
        Error::Map {
            map,
            op,
            source: Box::new(e),
        }
    }
    pub(crate) fn program(
        program: &'static str,
        action: &'static str,
        e: aya::programs::ProgramError,
    ) -> Self {
        Error::Program {
            program,
            action,
            source: Box::new(e),
        }
    }
    pub(crate) fn sys(op: &'static str, target: impl std::fmt::Display, e: io::Error) -> Self {
        Error::Sys {
            op,
            target: target.to_string(),
            source: e,
        }
    }
    pub(crate) fn pin_path(path: impl Into<PathBuf>, e: io::Error) -> Self {
        Error::PinPath {
            path: path.into(),
            source: e,
        }
    }
}
