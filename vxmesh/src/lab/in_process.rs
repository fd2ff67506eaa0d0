//! [`InProcessLauncher`]: the lab's agents as [`crate::agent::Agent`]s inside the calling
//! process, for an embedder that builds its own test lab ([`super::up_with`]).

use overlay_core::process::ProcessIdentity;

use super::launcher::{AgentLauncher, AgentSite, LabAgent};
use super::LabError;
use crate::agent::{Agent, AgentConfig, AgentHandle, HostNetns};

/// A change an embedder makes to each agent's configuration (e.g. a shorter resync).
type Configure = Box<dyn Fn(&mut AgentConfig) + Send + Sync>;

/// Starts each lab host's agent inside this process with [`Agent::spawn`], on a catalog of its
/// own over the lab's store, with the settings `vxmesh lab up` passes its agent processes
/// ([`InProcessLauncher::config`]). The agents stop when their [`LabAgent`] is stopped or
/// dropped (with the [`super::Lab`] that holds them); the lab records no PID for them.
///
/// ```no_run
/// # fn main() -> Result<(), vxmesh::lab::LabError> {
/// use vxmesh::lab::{self, InProcessLauncher, LabSpec};
///
/// let mut spec = LabSpec::new("mylab");
/// spec.hosts = 2;
/// spec.underlay = "10.77.0.0/24".parse().unwrap();
/// let launcher = InProcessLauncher::new().with_config(|c| c.dns = None);
/// let lab = lab::up_with(&spec, &launcher, &|line| eprintln!("{line}"))?;
/// let h1 = lab.agent("h1").and_then(|a| a.handle()).expect("an in-process agent");
/// println!("h1 applied revision {}", h1.status().applied_revision);
/// lab.down()?; // or drop it: the agents stop and the lab is removed either way
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct InProcessLauncher {
    configure: Option<Configure>,
}

impl std::fmt::Debug for InProcessLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessLauncher")
            .field("configure", &self.configure.is_some())
            .finish()
    }
}

impl InProcessLauncher {
    /// A launcher giving every agent [`InProcessLauncher::config`] unchanged.
    pub fn new() -> InProcessLauncher {
        InProcessLauncher::default()
    }

    /// Lets `configure` change each agent's configuration after the lab's settings are in it
    /// (called once per host, just before its agent starts).
    pub fn with_config(
        mut self,
        configure: impl Fn(&mut AgentConfig) + Send + Sync + 'static,
    ) -> InProcessLauncher {
        self.configure = Some(Box::new(configure));
        self
    }

    /// The configuration of the agent of `site`: [`AgentConfig::new`] in the host's namespace,
    /// with the state directory, cgroup, pin root and datapath the lab gives its agent
    /// processes (`--state-dir`, `--cgroup`, `--bpf-pin-root`, `--datapath`), then the
    /// embedder's changes ([`InProcessLauncher::with_config`]).
    pub fn config(&self, site: &AgentSite) -> AgentConfig {
        let mut config = AgentConfig::new(site.node.clone(), HostNetns::named(&site.namespace));
        config.state_dir = site.state_dir.clone();
        config.services.cgroup = Some(site.cgroup.clone());
        config.services.pin_root = site.pin_root.clone();
        config.datapath = site.datapath;
        if let Some(f) = &self.configure {
            f(&mut config);
        }
        config
    }
}

impl AgentLauncher for InProcessLauncher {
    fn launch(&self, site: &AgentSite) -> Result<Box<dyn LabAgent>, LabError> {
        let catalog = crate::open_catalog(&site.store)
            .map_err(|e| LabError::step("opening the lab store", e))?;
        let handle = Agent::spawn(catalog, self.config(site))
            .map_err(|e| LabError::step(format!("starting the agent of {}", site.node), e))?;
        Ok(Box::new(InProcessAgent { handle }))
    }
}

/// An agent running inside this process.
struct InProcessAgent {
    handle: AgentHandle,
}

impl LabAgent for InProcessAgent {
    fn node(&self) -> &str {
        self.handle.node()
    }

    fn is_running(&self) -> bool {
        self.handle.is_running()
    }

    fn process(&self) -> Option<ProcessIdentity> {
        None
    }

    fn handle(&self) -> Option<&AgentHandle> {
        Some(&self.handle)
    }

    fn stop(self: Box<Self>) -> Result<(), LabError> {
        let node = self.handle.node().to_string();
        self.handle
            .stop()
            .map_err(|e| LabError::step(format!("stopping the agent of {node}"), e))
    }
}
