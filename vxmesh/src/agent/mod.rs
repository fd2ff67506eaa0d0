//! The per-host agent: watches the store and reconciles this host's kernel to it.
//!
//! An agent is a value its caller owns: [`Agent::spawn`] starts it on threads of its own
//! (inside the host's network namespace named in [`AgentConfig::netns`]) and returns an
//! [`AgentHandle`] that reports its [`AgentStatus`] and stops it. It can be started from
//! inside a tokio runtime, installs no signal handler, and refuses a node that already has a
//! live agent. Its log lines are inside a `tracing` span `agent{node=NAME}`.
//!
//! ```no_run
//! # fn main() -> Result<(), vxmesh::Error> {
//! use std::time::Duration;
//! use vxmesh::agent::{Agent, AgentConfig, HostNetns};
//!
//! let catalog = vxmesh::open_catalog(std::path::Path::new("/var/lib/vxmesh/store.db"))?;
//! let agent = Agent::spawn(catalog.clone(), AgentConfig::new("h1", HostNetns::named("h1")))?;
//! let revision = catalog.store().revision()?;
//! // ... later: has it applied everything up to `revision`?
//! let status = agent.status();
//! println!("applied {} ({} errors)", status.applied_revision, status.errors.len());
//! agent.stop()?;
//! # Ok(()) }
//! ```

mod claim;
mod handle;
mod run_loop;
mod wireguard;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use overlay_core::catalog::Catalog;
use overlay_core::wireguard::Datapath;

pub use handle::{AgentHandle, AgentStatus};

/// The node's WireGuard interface, for encrypted networks.
#[derive(Debug, Clone)]
pub struct WireguardConfig {
    /// Interface name (`wg-vx`, at most 15 bytes).
    pub ifname: String,
    /// UDP port on the underlay.
    pub port: u16,
    /// Worker threads of the userspace implementation (per direction for the batched one).
    pub threads: usize,
    /// Which userspace datapath runs the interface.
    pub datapath: Datapath,
}

impl Default for WireguardConfig {
    /// `wg-vx`, UDP 51820, one thread per direction, the batched datapath.
    fn default() -> Self {
        WireguardConfig {
            ifname: overlay_core::wireguard::DEFAULT_IFNAME.to_string(),
            port: overlay_core::wireguard::DEFAULT_PORT,
            threads: 1,
            datapath: Datapath::Batched,
        }
    }
}

/// The host's network namespace: where the agent builds its devices, bridges, routes and BPF
/// attachments, and where its DNS server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostNetns {
    /// The namespace of the thread that calls [`Agent::spawn`] (on a real host started from
    /// `main`: the root namespace, which is then the one programmed).
    Current,
    /// The namespace file at this path (`/run/netns/NAME`, `/proc/PID/ns/net`).
    Path(PathBuf),
}

impl HostNetns {
    /// The named namespace `/run/netns/NAME` (what `ip netns add NAME` makes).
    pub fn named(name: &str) -> HostNetns {
        HostNetns::Path(overlay_core::netns::path(name))
    }

    /// Opens the namespace file; `Current` opens the calling thread's.
    fn open(&self) -> Result<(OwnedFd, PathBuf), AgentError> {
        let path = match self {
            HostNetns::Current => PathBuf::from("/proc/thread-self/ns/net"),
            HostNetns::Path(p) => p.clone(),
        };
        let file = std::fs::File::open(&path).map_err(|source| AgentError::Netns {
            path: path.clone(),
            source,
        })?;
        // A file that opens but is no namespace would only fail later, in setns(2), on the
        // agent's thread: nsfs is the namespaces' file system (NSFS_MAGIC, linux/magic.h).
        const NSFS_MAGIC: i64 = 0x6e73_6673;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| AgentError::Netns {
            path: path.clone(),
            source: e.into(),
        })?;
        if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Err(AgentError::Netns {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a network namespace (not a file of nsfs)",
                ),
            });
        }
        Ok((file.into(), path))
    }
}

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This host's node name (as added with [`Catalog::add_node`]).
    pub node: String,
    /// The host's network namespace, which the agent programs.
    pub netns: HostNetns,
    /// A full pass runs at least this often even without store changes, so that anything
    /// changed by hand in the kernel is put back.
    pub resync: Duration,
    /// Where the agent keeps this host's private key (mode 0700 directory, 0600 file).
    pub state_dir: PathBuf,
    /// `None`: no WireGuard interface (encrypted networks cannot be built on this node).
    pub wireguard: Option<WireguardConfig>,
    /// Services: the cgroup of the socket programs, the pin root. Its `netns` is set by the
    /// agent to the host's namespace ([`AgentConfig::netns`]).
    pub services: crate::service_plane::ServiceConfig,
    /// DNS for service names on every network's gateway; `None`: no DNS server.
    pub dns: Option<crate::dns::DnsConfig>,
    /// TTL of the agent's store lease: this long after the agent died, every other host
    /// removes this node's entries, WireGuard peer and service backends.
    pub lease_ttl: Duration,
    /// The datapath between containers and VXLAN devices (`--datapath`); the eBPF fast path
    /// pins under the services' pin root and attaches in the host's namespace.
    pub datapath: crate::fast_plane::DatapathMode,
}

impl AgentConfig {
    /// The defaults of `vxmesh agent`: resync every 2 s, keys in `/var/lib/vxmesh/NODE`,
    /// WireGuard on ([`WireguardConfig::default`]), services without socket programs (no
    /// cgroup), pinned under [`crate::DEFAULT_PIN_ROOT`], a connection table of 262,144
    /// entries, DNS on (upstreams from `/etc/resolv.conf`), a 5 s lease, the bridge datapath.
    pub fn new(node: impl Into<String>, netns: HostNetns) -> AgentConfig {
        let node = node.into();
        AgentConfig {
            state_dir: std::path::Path::new("/var/lib/vxmesh").join(&node),
            node,
            netns,
            resync: Duration::from_secs(2),
            wireguard: Some(WireguardConfig::default()),
            services: crate::service_plane::ServiceConfig {
                cgroup: None,
                pin_root: crate::DEFAULT_PIN_ROOT.into(),
                netns: PathBuf::new(),
                conntrack_entries: 262_144,
            },
            dns: Some(crate::dns::DnsConfig::default()),
            lease_ttl: crate::heartbeat::DEFAULT_TTL,
            datapath: crate::fast_plane::DatapathMode::Bridge,
        }
    }
}

/// What stops an agent from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store (unknown node, unreachable store, a bad record).
    #[error(transparent)]
    Catalog(#[from] overlay_core::CatalogError),
    /// The kernel refused a netlink request outside a pass (passes report theirs in
    /// [`AgentStatus::errors`]).
    #[error(transparent)]
    Dataplane(#[from] overlay_core::dataplane::DataplaneError),
    /// The agent's threads or runtime could not be started.
    #[error("cannot start the agent's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The host's network namespace cannot be opened or entered.
    #[error("network namespace {}: {source}", path.display())]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another agent runs for this node (in this process, or in the process named).
    #[error("node {node} already has a running agent ({owner}); one agent per node")]
    AlreadyRunning {
        /// The node.
        node: String,
        /// Who runs it: "this process", or the PID and machine of the other agent.
        owner: String,
    },
    /// The WireGuard interface could not be started or configured.
    #[error("WireGuard: {0}")]
    Wireguard(String),
    /// The service datapath could not be started.
    #[error("services: {0}")]
    Services(String),
    /// [`AgentHandle::applied`] gave up: the agent had not applied the revision in time.
    #[error(
        "agent of {node}: revision {revision} not applied after {waited:?} (applied {applied})"
    )]
    NotApplied {
        /// The node.
        node: String,
        /// The revision waited for.
        revision: u64,
        /// The revision it had applied.
        applied: u64,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The agent ended (stopped, or failed: its error is returned by [`AgentHandle::stop`]).
    #[error("agent of {0} is not running")]
    Stopped(String),
    /// The agent's thread panicked.
    #[error("agent of {0} panicked")]
    Panicked(String),
}

/// Starts agents.
pub struct Agent;

impl Agent {
    /// Starts the agent for `config.node` on threads of its own (its own tokio runtime: the
    /// passes on one thread, health checks and reports on two workers, a heartbeat thread),
    /// all inside the host's network namespace, and returns its handle. Callable from inside a
    /// tokio runtime; installs no signal handler (stop it with [`AgentHandle::stop`], or by
    /// dropping the handle).
    ///
    /// Errors, with nothing started: [`AgentError::AlreadyRunning`] when this process or a
    /// live process on this machine (or any other machine) runs an agent for the node;
    /// [`AgentError::Catalog`] when the store does not know the node or cannot be reached
    /// (`CatalogError::Store(e)` with `e.is_unavailable()`: try again later);
    /// [`AgentError::Netns`] when the namespace cannot be opened.
    pub fn spawn(catalog: Catalog, mut config: AgentConfig) -> Result<AgentHandle, AgentError> {
        catalog.node(&config.node)?;
        let claim = claim::Claim::take(&catalog, &config.node)?;
        let (netns, path) = config.netns.open()?;
        // Any thread of the process can reach the namespace through this descriptor while the
        // agent holds it, whatever namespace that thread is in.
        config.services.netns = format!("/proc/self/fd/{}", netns.as_raw_fd()).into();
        handle::start(catalog, config, claim, netns, path)
    }
}
