//! `lab status`: the lab's state with live agent status.

use super::{LabError, LabState};

pub fn status(prefix: &str) -> Result<LabState, LabError> {
    super::check_prefix(prefix)?;
    let mut state = LabState::load(prefix)?;
    for h in state.hosts.iter_mut() {
        h.agent_running = h.agent().is_some();
    }
    Ok(state)
}
