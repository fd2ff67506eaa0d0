//! The hosts replicas are placed on, and their agents, run in this process through the
//! library ([`Agent::spawn`], one per host, each programming its host's network namespace).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use vxmesh::agent::{Agent, AgentConfig, AgentHandle, HostNetns};
use vxmesh::lab::LabState;
use vxmesh::Catalog;

use crate::OrchestratorError;

/// One host: its agent's configuration (node name, host namespace, …) and where its replicas'
/// namespaces are named.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// How its agent runs; `agent.node` is the host's node name in the store.
    pub agent: AgentConfig,
    /// Replica namespaces on this host are named `PREFIX1`, `PREFIX2`, … (a lab host `P-h1`
    /// uses `P-h1-c`, the lab's container names, so `vxmesh lab down` removes them too).
    pub netns_prefix: String,
}

impl HostSpec {
    /// The hosts of lab `prefix` (`vxmesh lab up --prefix PREFIX`), configured as the lab
    /// configures its own agents (state directory, cgroup, BPF pin root, datapath), after
    /// stopping the lab's agent processes (`vxmesh lab stop-agent`) so that this process can
    /// run them.
    ///
    /// Errors: [`OrchestratorError::Lab`] when the lab is not up or an agent cannot be stopped.
    pub fn take_over_lab(prefix: &str) -> Result<Vec<HostSpec>, OrchestratorError> {
        let state = LabState::load(prefix)?;
        let mut hosts = Vec::new();
        for h in &state.hosts {
            vxmesh::lab::stop_agent(prefix, &h.name)?;
            let mut agent = AgentConfig::new(&h.name, HostNetns::named(&h.namespace));
            agent.state_dir = vxmesh::lab::host_state_dir(prefix, &h.name);
            agent.services.cgroup = Some(vxmesh::lab::cgroup::host_cgroup(prefix, &h.name));
            agent.services.pin_root = vxmesh::lab::bpf::pin_root(prefix);
            agent.datapath = h.datapath;
            hosts.push(HostSpec {
                agent,
                netns_prefix: format!("{}-c", h.namespace),
            });
        }
        Ok(hosts)
    }

    /// The node name.
    pub fn node(&self) -> &str {
        &self.agent.node
    }

    /// The host's namespace file for [`vxmesh::ContainerSpec::host_netns`].
    pub fn netns_path(&self) -> Option<PathBuf> {
        match &self.agent.netns {
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
    /// Starts one agent per host. On an error the agents already started are stopped.
    ///
    /// Errors: [`OrchestratorError::Agent`] (unknown node, a live agent already runs for it,
    /// the namespace cannot be opened).
    pub fn start(catalog: &Catalog, specs: Vec<HostSpec>) -> Result<Hosts, OrchestratorError> {
        let mut agents = BTreeMap::new();
        for spec in &specs {
            let handle = Agent::spawn(catalog.clone(), spec.agent.clone())?;
            agents.insert(spec.node().to_string(), handle);
        }
        Ok(Hosts {
            specs: specs
                .into_iter()
                .map(|s| (s.node().to_string(), s))
                .collect(),
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
    /// process runs no agent for it.
    pub fn stop_agent(&self, node: &str) -> Result<bool, OrchestratorError> {
        let handle = self.agents.lock().expect("agents lock").remove(node);
        match handle {
            Some(h) => h.stop().map(|_| true).map_err(Into::into),
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
