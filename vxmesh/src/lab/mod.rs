//! The lab: several simulated hosts on one machine.
//!
//! Each host is a network namespace joined to an underlay switch (a bridge in a namespace of
//! its own, on the subnet [`LabSpec::underlay`]) and runs its own agent: a `vxmesh agent`
//! process ([`ProcessLauncher`], what `vxmesh lab up` does), or one inside the calling process
//! ([`InProcessLauncher`] through [`up_with`], for an embedder's own test lab). Containers are
//! namespaces attached to the overlay through the same code path the CNI plugin uses
//! ([`overlay_core::container`]). Everything the lab makes is named after its prefix, so
//! `lab down` can find and remove all of it even when `lab up` failed half way.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use overlay_core::process::{Pidfd, ProcessIdentity};
use serde::{Deserialize, Serialize};

pub mod bpf;
pub mod cgroup;
pub mod demo;
mod down;
pub mod etcd;
mod exec;
mod in_process;
mod launcher;
pub mod replica;
pub mod resolv;
mod running;
mod status;
pub mod underlay;
mod up;

pub use demo::{LabDemo, LabReplica};
pub use down::down;
pub use exec::exec;
pub use in_process::InProcessLauncher;
pub use launcher::{AgentLauncher, AgentSite, LabAgent, ProcessLauncher};
pub use running::Lab;
pub use status::{start_agent, start_etcd_member, status, stop_agent};
pub use up::{up, up_with, LabSpec};

/// Where lab state lives: `/run/vxmesh/lab/PREFIX/`.
pub const STATE_ROOT: &str = "/run/vxmesh/lab";
/// The bridge that plays the underlay switch, inside the switch namespace.
pub const SWITCH_BRIDGE: &str = "sw0";
/// Every host's underlay interface.
pub const UNDERLAY_IF: &str = "eth0";
/// Every container's interface.
pub const CONTAINER_IF: &str = "eth0";

/// Errors of the lab's operations.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A bad lab parameter; `field` names it.
    #[error("invalid {field} '{value}': {reason}")]
    Invalid {
        /// The parameter (`prefix`, `hosts`, ...).
        field: &'static str,
        /// The value given.
        value: String,
        /// What a good value is.
        reason: String,
    },
    /// A lab with this prefix is up already.
    #[error("lab '{0}' is already up; run `vxmesh lab down --prefix {0}` first")]
    AlreadyUp(String),
    /// No lab with this prefix is up (the prefix, its state directory).
    #[error("lab '{0}' is not up (no state in {1})")]
    NotUp(String, String),
    /// No host, container or client of the lab has this name.
    #[error("unknown lab host or container '{0}' (see `vxmesh lab status`)")]
    UnknownMember(String),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// A step of building or changing the lab failed.
    #[error("{context}: {message}")]
    Step {
        /// What was being done.
        context: String,
        /// What went wrong.
        message: String,
    },
    /// `lab down` removed what it could; these are the parts it could not.
    #[error("lab down finished with {} error(s): {}", .0.len(), .0.join("; "))]
    Teardown(Vec<String>),
}

impl LabError {
    fn step(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        LabError::Step {
            context: context.into(),
            message: e.to_string(),
        }
    }
}

/// A simulated host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabHost {
    /// The host's lab name (`h1`, `h2`, ...): its node name in the store.
    pub name: String,
    /// Its network namespace (`PREFIX-h1`).
    pub namespace: String,
    /// Its underlay interface ([`UNDERLAY_IF`]).
    pub interface: String,
    /// Its underlay address (the node's underlay address in the store).
    pub address: Ipv4Addr,
    /// The PID of its agent, when `lab up` (or `lab start-agent`) started one.
    pub agent_pid: Option<u32>,
    /// The agent's start time (clock ticks after boot, /proc/PID/stat field 22), recorded when
    /// `lab up` started it: with the PID and the command line it proves a process is this
    /// agent before anything signals it (PIDs are reused). Absent in older state files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_start_time: Option<u64>,
    /// Filled by `lab status`: its agent runs.
    #[serde(default)]
    pub agent_running: bool,
    /// The datapath its agent runs (`agent --datapath`): the lab's, or what `lab start-agent
    /// --datapath` last asked for.
    #[serde(default)]
    pub datapath: crate::fast_plane::DatapathMode,
    /// Its agent runs inside the process that built the lab ([`InProcessLauncher`]): no PID
    /// is recorded, `lab stop-agent` and `lab down` do not signal it (that process stops it),
    /// and `lab status` takes whether it runs from its store lease.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent_in_process: bool,
}

impl LabHost {
    /// A pidfd on this host's agent, when the process now holding `agent_pid` is the agent
    /// `lab up` started (same start time, an `agent` command line for this host's namespace);
    /// `None` when it has exited or the PID now names another process.
    pub fn agent(&self) -> Option<Pidfd> {
        let expected = ProcessIdentity {
            pid: self.agent_pid?,
            start_time: self.agent_start_time.unwrap_or(0),
        };
        Pidfd::open_if(expected, |args| is_agent_of(args, &self.namespace))
            .ok()
            .flatten()
            .filter(|p| !p.exited())
    }
}

impl LabHost {
    /// Is the process `lab up` started for this host still there (same PID and start time)?
    /// For waiting on it only: signals go through [`LabHost::agent`], which also checks the
    /// command line (just after the start it may not be readable yet).
    pub fn agent_alive(&self) -> bool {
        let (Some(pid), Some(start)) = (self.agent_pid, self.agent_start_time) else {
            return false;
        };
        ProcessIdentity::of(pid).is_ok_and(|i| i.start_time == start)
            && Pidfd::open(pid).is_ok_and(|p| !p.exited())
    }
}

/// Is `args` the command line of a vxmesh agent running for network namespace `namespace`?
pub fn is_agent_of(args: &[String], namespace: &str) -> bool {
    args.iter().any(|a| a == "agent")
        && args
            .windows(2)
            .any(|w| w[0] == "--netns" && w[1] == namespace)
}

/// An overlay network of the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabNetwork {
    /// The network's name (`net1`, ...).
    pub name: String,
    /// Its subnet (CIDR).
    pub subnet: String,
    /// Its VXLAN network identifier.
    pub vni: u32,
    /// Its gateway address (the containers' default route and nameserver).
    pub gateway: Ipv4Addr,
    /// Carried inside WireGuard between the hosts.
    #[serde(default)]
    pub encrypted: bool,
}

/// A container of the lab: a network namespace attached to one network on one host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabContainer {
    /// The container's lab name (`h1-c1`): its endpoint id.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its network namespace (`PREFIX-h1-c1`).
    pub namespace: String,
    /// The network it is attached to.
    pub network: String,
    /// Its interface inside the namespace ([`CONTAINER_IF`]).
    pub interface: String,
    /// Its address on the network.
    pub address: Ipv4Addr,
    /// Its MAC address (`aa:bb:cc:dd:ee:ff`).
    pub mac: String,
}

/// What a lab is made of; written to `state.json` as it is built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's prefix.
    pub prefix: String,
    /// The store every agent and command of the lab uses: an SQLite path, or the etcd
    /// cluster's URL.
    pub store: PathBuf,
    /// The namespace of the underlay switch ([`SWITCH_BRIDGE`]).
    pub switch_namespace: String,
    /// The underlay switch's subnet ([`LabSpec::underlay`]): host N has its N-th address.
    pub underlay_subnet: ipnet::Ipv4Net,
    /// The simulated hosts.
    pub hosts: Vec<LabHost>,
    /// The overlay networks.
    pub networks: Vec<LabNetwork>,
    /// The containers.
    pub containers: Vec<LabContainer>,
    /// The lab's cgroup: a child per host (its agent's `--cgroup`), and below it one per
    /// container of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// Where the agents pin their BPF objects (`--bpf-pin-root`), one directory per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_pin_root: Option<PathBuf>,
    /// `lab up` mounted bpffs at /sys/fs/bpf (nothing was there): `lab down` unmounts it when
    /// it is empty.
    #[serde(default)]
    pub mounted_bpffs: bool,
    /// The outside client (`lab exec client -- …`): a namespace on the underlay switch that
    /// is not a vxmesh host, to reach published ports from outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<LabClient>,
    /// The routing mesh's demo service and its replicas (`lab up --replicas N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo: Option<LabDemo>,
    /// The lab's etcd cluster (`lab up --store etcd`); `store` is then its URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<etcd::LabEtcd>,
}

/// The lab's outside client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabClient {
    /// Its network namespace.
    pub namespace: String,
    /// Its address on the underlay.
    pub address: Ipv4Addr,
}

/// The member name of the outside client (`lab exec client`); its address is
/// [`underlay::client_address`] (10.99.0.250 in the default underlay).
pub const CLIENT: &str = "client";

/// The state directory of lab `prefix`: `STATE_ROOT/PREFIX` (its `state.json`, the hosts'
/// state directories).
pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(prefix)
}

/// A lab host's agent state directory (its WireGuard private key).
pub fn host_state_dir(prefix: &str, host: &str) -> PathBuf {
    state_dir(prefix).join(host)
}

fn state_file(prefix: &str) -> PathBuf {
    state_dir(prefix).join("state.json")
}

impl LabState {
    /// Reads the state of lab `prefix` as `lab up` recorded it. Errors: [`LabError::NotUp`]
    /// when it has none, [`LabError::Io`] or [`LabError::Step`] when it cannot be read or parsed.
    pub fn load(prefix: &str) -> Result<LabState, LabError> {
        let path = state_file(prefix);
        let text = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                LabError::NotUp(prefix.to_string(), state_dir(prefix).display().to_string())
            }
            _ => LabError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            },
        })?;
        serde_json::from_slice(&text)
            .map_err(|e| LabError::step(format!("parsing {}", path.display()), e))
    }

    fn save(&self) -> Result<(), LabError> {
        let path = state_file(&self.prefix);
        let tmp = path.with_extension("json.tmp");
        let io = |source| LabError::Io {
            context: format!("writing {}", path.display()),
            source,
        };
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).expect("state serializes"),
        )
        .map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// A container by its lab name.
    pub fn container(&self, name: &str) -> Option<&LabContainer> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The namespace of a host or container, by its lab name (`h1`, `h1-c2`).
    pub fn namespace_of(&self, member: &str) -> Option<&str> {
        if member == CLIENT {
            return self.client.as_ref().map(|c| c.namespace.as_str());
        }
        self.hosts
            .iter()
            .find(|h| h.name == member)
            .map(|h| h.namespace.as_str())
            .or_else(|| {
                self.containers
                    .iter()
                    .find(|c| c.name == member)
                    .map(|c| c.namespace.as_str())
            })
    }
}

/// A prefix names namespaces (`PREFIX-h1-c1`), so it must keep them within the 255 bytes of a
/// file name and free of '/'.
pub fn check_prefix(prefix: &str) -> Result<(), LabError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix.as_bytes()[0].is_ascii_alphanumeric()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid {
            field: "prefix",
            value: prefix.to_string(),
            reason: "must be 1 to 32 letters, digits, '-' or '_', starting with a letter or digit"
                .into(),
        })
    }
}
