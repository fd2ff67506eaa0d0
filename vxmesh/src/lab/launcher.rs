//! How the lab starts a host's agent: an [`AgentLauncher`] gets the host's [`AgentSite`] and
//! returns the running [`LabAgent`]. [`ProcessLauncher`] runs each agent as a `vxmesh agent`
//! process (what `vxmesh lab up` does); [`super::InProcessLauncher`] runs it inside the
//! calling process through [`crate::agent::Agent::spawn`].

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use overlay_core::process::{self, Pidfd, ProcessIdentity};

use super::{state_dir, LabError, LabHost};

/// Where a lab host's agent runs and keeps its things: what every launcher is given, so that
/// agents started either way program the same namespace, attach to the same cgroup and pin
/// under the same root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSite {
    /// The lab's prefix.
    pub prefix: String,
    /// The lab's store, as [`crate::open_catalog`] takes it: an SQLite file, or an etcd URL
    /// (`etcd://127.0.0.1:2379,…?netns=P-etcd`).
    pub store: PathBuf,
    /// The host's node name (`h1`).
    pub node: String,
    /// The host's network namespace (`P-h1`, under /run/netns).
    pub namespace: String,
    /// The agent's state directory (its WireGuard private key): `/run/vxmesh/lab/P/h1`.
    pub state_dir: PathBuf,
    /// The host's cgroup, to which the agent attaches its socket programs
    /// ([`super::cgroup::host_cgroup`]).
    pub cgroup: PathBuf,
    /// The lab's BPF pin root; the agent pins under `<pin_root>/<node>/` ([`super::bpf`]).
    pub pin_root: PathBuf,
    /// The datapath the agent runs.
    pub datapath: crate::fast_plane::DatapathMode,
    /// Where an agent process logs (appended): `agent-h1.log` in the lab's state directory.
    pub log: PathBuf,
}

impl AgentSite {
    /// The site of host `host` in lab `prefix`, whose store is `store`.
    pub fn of(prefix: &str, store: &Path, host: &LabHost) -> AgentSite {
        AgentSite {
            prefix: prefix.to_string(),
            store: store.to_path_buf(),
            node: host.name.clone(),
            namespace: host.namespace.clone(),
            state_dir: super::host_state_dir(prefix, &host.name),
            cgroup: super::cgroup::host_cgroup(prefix, &host.name),
            pin_root: super::bpf::pin_root(prefix),
            datapath: host.datapath,
            log: state_dir(prefix).join(format!("agent-{}.log", host.name)),
        }
    }
}

/// Starts the agent of one lab host. [`super::up_with`] calls it once per host, after the
/// host's namespace, underlay address, cgroup and node record exist and before any container
/// is attached.
pub trait AgentLauncher: Send + Sync {
    /// Starts the agent of `site.node` and returns it once started (not necessarily once it
    /// has built anything: the lab waits for the networks' bridges itself).
    ///
    /// Errors: whatever stops the agent from starting, as [`LabError::Io`] or
    /// [`LabError::Step`] naming the host.
    fn launch(&self, site: &AgentSite) -> Result<Box<dyn LabAgent>, LabError>;
}

/// A lab host's running agent, as a launcher started it.
pub trait LabAgent: Send {
    /// The host's node name.
    fn node(&self) -> &str;

    /// True until the agent has ended (stopped, exited or failed).
    fn is_running(&self) -> bool;

    /// The agent's own process (PID and start time) when it runs as one: the lab records it
    /// in `state.json`, so that `lab status`, `lab stop-agent` and `lab down` reach it from any
    /// process. `None` for an agent that runs inside the calling process.
    fn process(&self) -> Option<ProcessIdentity>;

    /// The in-process agent's handle (status, [`crate::agent::AgentHandle::applied`]), when
    /// the agent runs inside this process.
    fn handle(&self) -> Option<&crate::agent::AgentHandle> {
        None
    }

    /// Stops the agent and waits until it has ended; what it made in the kernel stays.
    ///
    /// Errors: [`LabError::Step`] when it could not be stopped or ended with an error.
    fn stop(self: Box<Self>) -> Result<(), LabError>;
}

/// Runs each agent as a `vxmesh agent` process of binary `bin`, in a process group of its own
/// (a Ctrl-C meant for the caller does not reach it), logging to [`AgentSite::log`]; dropping
/// its [`LabAgent`] leaves the process running (what `vxmesh lab up` wants: the lab outlives
/// the command), [`LabAgent::stop`] ends it (SIGTERM, SIGKILL after 5 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLauncher {
    bin: PathBuf,
}

impl ProcessLauncher {
    /// A launcher running `bin` (the `vxmesh` binary; a bare name is looked up in `PATH`).
    pub fn new(bin: impl Into<PathBuf>) -> ProcessLauncher {
        ProcessLauncher { bin: bin.into() }
    }

    /// The binary it runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

impl AgentLauncher for ProcessLauncher {
    fn launch(&self, site: &AgentSite) -> Result<Box<dyn LabAgent>, LabError> {
        let (log, err) = super::up::log_files(&site.log)?;
        let child = Command::new(&self.bin)
            .arg("--store")
            .arg(&site.store)
            .args(["agent", "--node", &site.node, "--netns", &site.namespace])
            .arg("--state-dir")
            .arg(&site.state_dir)
            .arg("--cgroup")
            .arg(&site.cgroup)
            .arg("--bpf-pin-root")
            .arg(&site.pin_root)
            .arg("--datapath")
            .arg(site.datapath.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| LabError::Io {
                context: format!(
                    "starting the agent of {} ({})",
                    site.node,
                    self.bin.display()
                ),
                source,
            })?;
        let start_time = ProcessIdentity::of(child.id())
            .map(|i| i.start_time)
            .unwrap_or(0);
        Ok(Box::new(ProcessAgent {
            node: site.node.clone(),
            identity: ProcessIdentity {
                pid: child.id(),
                start_time,
            },
            child: Mutex::new(child),
        }))
    }
}

/// An agent process this process started (its child: the PID stays its own until reaped).
struct ProcessAgent {
    node: String,
    /// Start time 0: the process exited before it could be read.
    identity: ProcessIdentity,
    child: Mutex<Child>,
}

impl LabAgent for ProcessAgent {
    fn node(&self) -> &str {
        &self.node
    }

    fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        matches!(child.try_wait(), Ok(None))
    }

    fn process(&self) -> Option<ProcessIdentity> {
        Some(self.identity)
    }

    fn stop(self: Box<Self>) -> Result<(), LabError> {
        let mut child = self.child.into_inner().unwrap_or_else(|e| e.into_inner());
        let what = || format!("stopping the agent of {}", self.node);
        if matches!(child.try_wait(), Ok(None)) {
            // Not reaped yet, so the PID is still this child's.
            let pidfd = Pidfd::open(child.id()).map_err(|e| LabError::step(what(), e))?;
            if let Some(e) = process::terminate_all(&[pidfd], Duration::from_secs(5)).first() {
                return Err(LabError::step(what(), e));
            }
        }
        child.wait().map_err(|source| LabError::Io {
            context: what(),
            source,
        })?;
        Ok(())
    }
}
