//! CNI errors: the spec's error codes, vxmesh's own codes (>= 100) and the error JSON.

use serde_json::{json, Value};

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables.
pub const INVALID_ENV: u32 = 4;
/// I/O failure (the store could not be read or written).
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content (stdin is not JSON, or a field has the wrong type).
pub const DECODE: u32 = 6;
/// Invalid network configuration (missing or bad field, unknown network or node).
pub const INVALID_CONFIG: u32 = 7;
/// Try again later (the agent has not built the network's bridge yet, the store is contended).
pub const TRY_AGAIN: u32 = 11;
/// STATUS: the plugin is not available (ADD would fail).
pub const NOT_AVAILABLE: u32 = 50;
/// STATUS: the plugin is not available, existing containers may have limited connectivity.
pub const NOT_AVAILABLE_LIMITED: u32 = 51;

/// vxmesh: an attachment for this container id and interface name already exists.
pub const ALREADY_ATTACHED: u32 = 100;
/// vxmesh: CNI_IFNAME already exists in the container's network namespace.
pub const IFNAME_EXISTS: u32 = 101;
/// vxmesh: the address asked for (runtimeConfig, args, CNI_ARGS or the delegated IPAM) cannot be
/// used (outside the subnet, the gateway, in use), or the network has no free address.
pub const ADDRESS_UNAVAILABLE: u32 = 102;
/// vxmesh: CHECK found the attachment different from prevResult or from the store.
pub const CHECK_FAILED: u32 = 103;
/// vxmesh: a netlink operation failed (building or removing the veth pair).
pub const DATAPLANE: u32 = 104;
/// vxmesh: the delegated IPAM plugin could not be run or printed something unusable.
pub const IPAM_FAILED: u32 = 105;
/// vxmesh: GC could not remove some stale attachments (every error is in `details`).
pub const GC_FAILED: u32 = 106;
/// vxmesh: an internal error (a bug); the plugin caught it instead of crashing.
pub const INTERNAL: u32 = 199;

/// A CNI error: code, message and details, printed as the spec's error JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error JSON for a result of version `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

pub type CniResult<T> = Result<T, CniError>;
