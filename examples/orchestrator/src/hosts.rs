//! The hosts replicas are placed on, and their agents, run in this process through the
//! library ([`Agent::spawn`], one per host, each programming its host's network namespace).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use vxmesh::agent::{Agent, AgentConfig, AgentHandle, HostNetns};
use vxmesh::lab::{AgentSite, InProcessLauncher, LabState};
use vxmesh::Catalog;

use crate::OrchestratorError;

/// One host: its node name, its network namespace, how its replicas' namespaces are named,
/// and how this process runs its agent.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// The host's node name in the store.
    pub node: String,
    /// The host's network namespace (where its containers' veths go).
    pub netns: HostNetns,
    /// Replica namespaces on this host are named `PREFIX1`, `PREFIX2`, … (a lab host `P-h1`
    /// uses `P-h1-c`, the lab's container names, so `vxmesh lab down` removes them too).
    pub netns_prefix: String,
    /// The agent this process runs for the host (`agent.node` and `agent.netns` as above);
    /// `None`: its agent runs elsewhere (another process, e.g. the lab's `vxmesh agent`).
    pub agent: Option<AgentConfig>,
}

impl HostSpec {
    /// The hosts of lab `prefix` (`vxmesh lab up --prefix PREFIX`). For every host not named
    /// in `keep`, the lab's agent process is stopped (`vxmesh lab stop-agent`) and this
    /// process runs its agent instead, configured as the lab configures its own (state
    /// directory, cgroup, BPF pin root, datapath: [`InProcessLauncher::config`]); the hosts in
    /// `keep` keep theirs.
    ///
    /// Errors: [`OrchestratorError::Lab`] when the lab is not up or an agent cannot be stopped.
    pub fn take_over_lab(prefix: &str, keep: &[&str]) -> Result<Vec<HostSpec>, OrchestratorError> {
        let state = LabState::load(prefix)?;
        let mut hosts = Vec::new();
        for h in &state.hosts {
            let netns = HostNetns::named(&h.namespace);
            let agent = if keep.contains(&h.name.as_str()) {
                None
            } else {
                vxmesh::lab::stop_agent(prefix, &h.name)?;
                let site = AgentSite::of(prefix, &state.store, h);
                Some(InProcessLauncher::new().config(&site))
            };
            hosts.push(HostSpec {
                node: h.name.clone(),
                netns,
                netns_prefix: format!("{}-c", h.namespace),
                agent,
            });
        }
        Ok(hosts)
    }

    /// The host's namespace file for [`vxmesh::ContainerSpec::host_netns`].
    pub fn netns_path(&self) -> Option<PathBuf> {
        match &self.netns {
            HostNetns::Current => None,
            HostNetns::Path(p) => Some(p.clone()),
        }
    }
}

/// The hosts and the handles of their running agents.
#[derive(Debug)]
pub struct Hosts {
    specs: BTreeMap<String, HostSpec>,
    agents: Mutex<BTreeMap<String, AgentHandle>>,
}

impl Hosts {
    /// Starts the agent of every host that has one in its spec. On an error the agents
    /// already started are stopped (dropped).
    ///
    /// Errors: [`OrchestratorError::Agent`] (unknown node, a live agent already runs for it,
    /// the namespace cannot be opened).
    pub fn start(catalog: &Catalog, specs: Vec<HostSpec>) -> Result<Hosts, OrchestratorError> {
        let mut agents = BTreeMap::new();
        for (spec, config) in specs.iter().filter_map(|s| Some((s, s.agent.clone()?))) {
            agents.insert(spec.node.clone(), Agent::spawn(catalog.clone(), config)?);
        }
        Ok(Hosts {
            specs: specs.into_iter().map(|s| (s.node.clone(), s)).collect(),
            agents: Mutex::new(agents),
        })
    }

    /// Every host's node name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.specs.keys().cloned().collect()
    }

    /// A host by node name.
    pub fn get(&self, node: &str) -> Option<&HostSpec> {
        self.specs.get(node)
    }

    /// Stops `node`'s agent (blocking: it waits for the agent's threads). Its heartbeat goes
    /// at once; its liveness stays in the store until its lease expires. False when this
    /// process runs no agent for it (any more).
    pub fn stop_agent(&self, node: &str) -> Result<bool, OrchestratorError> {
        let handle = self.agents.lock().expect("agents lock").remove(node);
        match handle {
            Some(h) => h.stop().map(|_| true).map_err(Into::into),
            None => Ok(false),
        }
    }

    /// Ends the agent of `node` as a crash would ([`vxmesh::agent::AgentHandle::abort`]): its
    /// liveness stays in the store until its lease expires. False when it runs elsewhere.
    pub fn abort_agent(&self, node: &str) -> Result<bool, OrchestratorError> {
        let handle = self.agents.lock().expect("agents lock").remove(node);
        match handle {
            Some(h) => h.abort().map(|_| true).map_err(Into::into),
            None => Ok(false),
        }
    }

    /// Stops every agent.
    pub fn stop_all(&self) {
        let all = std::mem::take(&mut *self.agents.lock().expect("agents lock"));
        for (node, h) in all {
            if let Err(e) = h.stop() {
                tracing::warn!(node, "agent ended with: {e}");
            }
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.stop_all();
    }
}
