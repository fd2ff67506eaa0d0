//! `lab status`: the lab's state with live agent status.

use super::{LabError, LabState};

pub fn status(prefix: &str) -> Result<LabState, LabError> {
    super::check_prefix(prefix)?;
    let mut state = LabState::load(prefix)?;
    for h in state.hosts.iter_mut() {
        h.agent_running = h.agent().is_some();
    }
    for r in state.demo.iter_mut().flat_map(|d| d.replicas.iter_mut()) {
        r.running = r.process().is_some();
    }
    Ok(state)
}

/// Starts the agent of `host` again (after it stopped or was killed), as `lab up` started it,
/// and records its PID and start time. Errors when its agent is still running.
pub fn start_agent(
    prefix: &str,
    host: &str,
    agent_bin: &std::path::Path,
) -> Result<super::LabHost, LabError> {
    let mut state = status(prefix)?;
    let h = state
        .hosts
        .iter_mut()
        .find(|h| h.name == host)
        .ok_or_else(|| LabError::UnknownMember(host.to_string()))?;
    if h.agent_running {
        return Err(LabError::Invalid {
            field: "host",
            value: host.to_string(),
            reason: "its agent is running".into(),
        });
    }
    let (pid, start_time) = super::up::spawn_agent(agent_bin, prefix, &state.store, h)?;
    h.agent_pid = Some(pid);
    h.agent_start_time = start_time;
    h.agent_running = true;
    let started = h.clone();
    state.save()?;
    Ok(started)
}
