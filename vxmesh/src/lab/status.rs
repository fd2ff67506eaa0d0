//! `lab status`: the lab's state with live agent status.

use super::{LabError, LabState};

/// The state of lab `prefix` with what runs now: each host's agent, the demo's replicas and
/// the etcd members are checked (same PID, start time and command line); an in-process agent
/// ([`super::LabHost::agent_in_process`]) runs as its lease in the lab's store says (until
/// the lease expires after it stopped: a few seconds). Errors: a bad prefix,
/// [`LabError::NotUp`], an unreadable state file.
pub fn status(prefix: &str) -> Result<LabState, LabError> {
    super::check_prefix(prefix)?;
    let mut state = LabState::load(prefix)?;
    let catalog = match state.hosts.iter().any(|h| h.agent_in_process) {
        true => crate::open_catalog(&state.store).ok(),
        false => None,
    };
    for h in state.hosts.iter_mut() {
        h.agent_running = match (&catalog, h.agent_in_process) {
            (_, false) => h.agent().is_some(),
            (Some(c), true) => c.agent_alive(&h.name).unwrap_or(false),
            (None, true) => false,
        };
    }
    for r in state.demo.iter_mut().flat_map(|d| d.replicas.iter_mut()) {
        r.running = r.process().is_some();
    }
    if let Some(e) = state.etcd.as_mut() {
        for i in 0..e.members.len() {
            let running = e.member(prefix, i).is_some();
            e.members[i].running = running;
        }
    }
    Ok(state)
}

/// Starts the agent of `host` again (after it stopped or was killed), as `lab up` started it
/// (with `datapath` instead of the host's recorded one when given), and records its PID,
/// start time and datapath. Errors when its agent is still running.
pub fn start_agent(
    prefix: &str,
    host: &str,
    agent_bin: &std::path::Path,
    datapath: Option<crate::fast_plane::DatapathMode>,
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
    if let Some(d) = datapath {
        h.datapath = d;
    }
    let site = super::AgentSite::of(prefix, &state.store, h);
    // Dropping the agent leaves its process running with the lab.
    let agent = super::AgentLauncher::launch(&super::ProcessLauncher::new(agent_bin), &site)?;
    super::up::record_agent(h, agent.as_ref());
    let started = h.clone();
    state.save()?;
    Ok(started)
}

/// Starts etcd member `member` (`m1`…) of the lab's cluster again on its data directory
/// (after it was stopped or killed) and records it. Errors when the lab has no etcd, the
/// member is unknown, or it is running.
pub fn start_etcd_member(
    prefix: &str,
    member: &str,
) -> Result<super::etcd::LabEtcdMember, LabError> {
    let mut state = status(prefix)?;
    let etcd = state.etcd.as_mut().ok_or_else(|| LabError::Invalid {
        field: "member",
        value: member.to_string(),
        reason: "this lab runs on SQLite, not etcd".into(),
    })?;
    let i = etcd
        .members
        .iter()
        .position(|m| m.name == member)
        .ok_or_else(|| LabError::UnknownMember(member.to_string()))?;
    if etcd.members[i].running {
        return Err(LabError::Invalid {
            field: "member",
            value: member.to_string(),
            reason: "it is running".into(),
        });
    }
    etcd.start_member(prefix, i)?;
    let started = etcd.members[i].clone();
    state.save()?;
    Ok(started)
}

/// Stops the agent of `host` (SIGTERM through a pidfd opened once the process is shown to be
/// that agent, SIGKILL after 5 s); the kernel state it made stays. Returns whether an agent
/// was running. Errors when a running agent runs inside the process that built the lab
/// ([`super::InProcessLauncher`]): only that process can stop it.
pub fn stop_agent(prefix: &str, host: &str) -> Result<bool, LabError> {
    let state = status(prefix)?;
    let h = state
        .hosts
        .iter()
        .find(|h| h.name == host)
        .ok_or_else(|| LabError::UnknownMember(host.to_string()))?;
    if h.agent_in_process && h.agent_running {
        return Err(LabError::Invalid {
            field: "host",
            value: host.to_string(),
            reason: "its agent runs inside the process that built the lab (an embedded lab):                      that process stops it"
                .into(),
        });
    }
    let Some(agent) = h.agent() else {
        return Ok(false);
    };
    let errors = overlay_core::process::terminate_all(&[agent], std::time::Duration::from_secs(5));
    match errors.first() {
        Some(e) => Err(LabError::step(format!("stopping the agent of {host}"), e)),
        None => Ok(true),
    }
}
