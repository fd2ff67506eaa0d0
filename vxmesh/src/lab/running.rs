//! [`Lab`]: a lab [`super::up_with`] built, with the agents its launcher started, removed
//! when it is dropped.

use super::launcher::LabAgent;
use super::{LabError, LabState};

/// A lab built by [`super::up_with`]: its state (what `state.json` holds) and the agents its
/// launcher started. Dropping it, also while a panic unwinds, does what [`Lab::down`] does
/// (errors then go to the log); [`Lab::into_parts`] leaves the lab up instead.
pub struct Lab {
    state: LabState,
    agents: Vec<Box<dyn LabAgent>>,
    /// False once the lab was removed or given up by [`Lab::into_parts`].
    armed: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("prefix", &self.state.prefix)
            .field(
                "agents",
                &self.agents.iter().map(|a| a.node()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Lab {
    /// A lab being built: removed on drop from the start, so a failed or panicking build
    /// leaves nothing behind.
    pub(super) fn building(state: LabState) -> Lab {
        Lab {
            state,
            agents: Vec::new(),
            armed: true,
        }
    }

    /// The state and the agents, for the build to fill in.
    pub(super) fn parts_mut(&mut self) -> (&mut LabState, &mut Vec<Box<dyn LabAgent>>) {
        (&mut self.state, &mut self.agents)
    }

    /// What the lab is made of (as `lab status` shows it, with the agents as started).
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The lab's prefix.
    pub fn prefix(&self) -> &str {
        &self.state.prefix
    }

    /// A catalog over the lab's store (a new client each call).
    ///
    /// Errors: [`LabError::Step`] when the store cannot be opened.
    pub fn catalog(&self) -> Result<crate::Catalog, LabError> {
        crate::open_catalog(&self.state.store)
            .map_err(|e| LabError::step("opening the lab store", e))
    }

    /// The running agent of host `host` (`h1`), unless it was stopped with
    /// [`Lab::stop_agent`].
    pub fn agent(&self, host: &str) -> Option<&dyn LabAgent> {
        self.agents
            .iter()
            .find(|a| a.node() == host)
            .map(|a| a.as_ref())
    }

    /// Every agent still held, in host order.
    pub fn agents(&self) -> impl Iterator<Item = &dyn LabAgent> {
        self.agents.iter().map(|a| a.as_ref())
    }

    /// Stops the agent of host `host` (what it made in the kernel stays, as after
    /// `lab stop-agent`). Returns whether the lab held one.
    ///
    /// Errors: the agent's [`LabAgent::stop`] error.
    pub fn stop_agent(&mut self, host: &str) -> Result<bool, LabError> {
        let Some(i) = self.agents.iter().position(|a| a.node() == host) else {
            return Ok(false);
        };
        self.agents.remove(i).stop()?;
        if let Some(h) = self.state.hosts.iter_mut().find(|h| h.name == host) {
            h.agent_running = false;
        }
        Ok(true)
    }

    /// Stops every agent the lab holds, then removes the lab ([`super::down`]). Returns what
    /// was removed.
    ///
    /// Errors: [`LabError::Teardown`] with every step that failed (each step is tried).
    pub fn down(mut self) -> Result<Vec<String>, LabError> {
        self.remove()
    }

    /// Leaves the lab up and hands over its state and agents: agent processes go on running
    /// when theirs are dropped, in-process agents stop when theirs are dropped. The lab is
    /// then removed with [`super::down`] (`vxmesh lab down`).
    pub fn into_parts(mut self) -> (LabState, Vec<Box<dyn LabAgent>>) {
        self.armed = false;
        (self.state.clone(), std::mem::take(&mut self.agents))
    }

    fn remove(&mut self) -> Result<Vec<String>, LabError> {
        self.armed = false;
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for agent in std::mem::take(&mut self.agents) {
            let node = agent.node().to_string();
            match agent.stop() {
                Ok(()) => done.push(format!("stopped the agent of {node}")),
                Err(e) => errors.push(e.to_string()),
            }
        }
        match super::down(&self.state.prefix) {
            Ok(d) => done.extend(d),
            Err(LabError::Teardown(e)) => errors.extend(e),
            Err(e) => errors.push(e.to_string()),
        }
        if errors.is_empty() {
            Ok(done)
        } else {
            Err(LabError::Teardown(errors))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.remove() {
                tracing::warn!("removing lab {}: {e}", self.state.prefix);
            }
        }
    }
}
