//! One agent per node: a node's agent holds a claim on it in this process, and its heartbeat
//! key in the store names its process (`AgentOwner`), so a second agent is refused whether it
//! is started in the same process or in another one, while a key left by an agent that
//! crashed (its process gone, its lease not yet expired) does not block a restart.

use std::collections::BTreeSet;
use std::sync::Mutex;

use overlay_core::catalog::{AgentOwner, Catalog};

use super::AgentError;

/// The nodes whose agent runs in this process.
static RUNNING_HERE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A node's claim, released when dropped (as the agent's thread ends).
#[derive(Debug)]
pub(super) struct Claim(String);

impl Claim {
    /// Takes `node`'s claim, or says who holds it.
    pub(super) fn take(catalog: &Catalog, node: &str) -> Result<Claim, AgentError> {
        let refused = |owner: String| AgentError::AlreadyRunning {
            node: node.to_string(),
            owner,
        };
        if !RUNNING_HERE.lock().unwrap().insert(node.to_string()) {
            return Err(refused("this process".into()));
        }
        let claim = Claim(node.to_string());
        match catalog.agent_owner(node)? {
            None => {}
            // This process, whose agent for the node has ended (its key outlived it).
            Some(Some(o)) if o.is_this_process() => {}
            Some(Some(o)) if o.is_gone_here() => tracing::info!(
                node,
                pid = o.pid,
                "the previous agent of this node is gone (its lease not yet expired): taking over"
            ),
            Some(Some(o)) => {
                return Err(refused(describe(&o)));
            }
            Some(None) => return Err(refused("an agent of an older vxmesh".into())),
        }
        Ok(claim)
    }
}

fn describe(o: &AgentOwner) -> String {
    let here = AgentOwner::this_process();
    if o.boot_id == here.boot_id {
        format!("pid {} on this machine", o.pid)
    } else {
        format!("pid {} on another machine (boot {})", o.pid, o.boot_id)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        RUNNING_HERE.lock().unwrap().remove(&self.0);
    }
}
