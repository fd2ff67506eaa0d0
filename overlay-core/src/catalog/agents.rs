//! Agent liveness: each running agent holds two keys on a lease it keeps alive: its heartbeat
//! (`AGENTS`, gone at once when the agent stops cleanly) and its node's liveness (`ALIVE`,
//! gone only when the lease expires: the agent died or stayed stopped longer than the TTL).

use std::time::Duration;

use crate::keys;
use crate::store::{Compare, LeaseId, Op, StoreError, Txn};
use crate::validate;

use super::{Catalog, CatalogError};

impl Catalog {
    /// Records that `node`'s agent runs, on a new lease of `ttl` (its heartbeat and its node's
    /// liveness key, in one transaction); returns the lease to keep alive.
    pub fn announce_agent(&self, node: &str, ttl: Duration) -> Result<LeaseId, CatalogError> {
        validate::node_name(node)?;
        let lease = self.store.lease_grant(ttl)?;
        let owner = serde_json::to_vec(&AgentOwner::this_process()).expect("plain struct");
        let on_lease = |key: String| Op::Put {
            key,
            value: owner.clone(),
            lease: Some(lease),
        };
        self.store.txn(&Txn {
            compares: vec![],
            ops: vec![on_lease(keys::agent(node)), on_lease(keys::alive(node))],
        })?;
        Ok(lease)
    }

    /// Keeps the agent's key alive; re-announces it when the lease was lost (e.g. the agent was
    /// stopped longer than the lease) or the key is no longer on it. Returns the lease now in
    /// use.
    pub fn keep_agent_alive(
        &self,
        node: &str,
        lease: LeaseId,
        ttl: Duration,
    ) -> Result<LeaseId, CatalogError> {
        match self.store.lease_keepalive(lease) {
            // The lease lives, but is it still ours? After an outage longer than the TTL the
            // lease expired with our key on it, and a store that reuses lease ids may have
            // granted the same id to another agent since: the key is checked every time.
            Ok(()) => match self.store.get(&keys::agent(node))? {
                Some(kv) if kv.lease == Some(lease) => Ok(lease),
                _ => self.announce_agent(node, ttl),
            },
            Err(StoreError::LeaseNotFound(_)) => self.announce_agent(node, ttl),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `node`'s agent key at once (a clean stop), if it is still on `lease`. The lease
    /// itself is left to expire: the records the agent wrote on it (its node's liveness key,
    /// its health reports) stay until then, so the other hosts keep the node's entries, and so an agent restarted within the lease's TTL starts from them instead of
    /// taking every local backend out of service until its first checks complete.
    pub fn retire_agent(&self, node: &str, lease: LeaseId) -> Result<(), CatalogError> {
        validate::node_name(node)?;
        let key = keys::agent(node);
        match self.store.get(&key)? {
            Some(kv) if kv.lease == Some(lease) => {
                // A new agent that re-announced meanwhile keeps its key.
                self.store.txn(&Txn {
                    compares: vec![Compare::ModRevision(key.clone(), kv.mod_revision)],
                    ops: vec![Op::Delete(key)],
                })?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Who holds `node`'s heartbeat key now (`None`: no agent runs; `Some(None)`: an agent of
    /// an older vxmesh, which wrote only its PID).
    pub fn agent_owner(&self, node: &str) -> Result<Option<Option<AgentOwner>>, CatalogError> {
        validate::node_name(node)?;
        Ok(self
            .store
            .get(&keys::agent(node))?
            .map(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    /// Is `node`'s agent running (its key present and its lease not expired)?
    pub fn agent_alive(&self, node: &str) -> Result<bool, CatalogError> {
        validate::node_name(node)?;
        Ok(self.store.get(&keys::agent(node))?.is_some())
    }
}

/// The process that runs an agent, as written in its heartbeat key: enough for an agent about
/// to start to tell a live agent from a stale key its crashed predecessor left.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentOwner {
    /// Its PID.
    pub pid: u32,
    /// Its start time after boot, in clock ticks (`/proc/PID/stat` field 22); 0 if unknown.
    pub start_time: u64,
    /// The boot of the machine it runs on (`/proc/sys/kernel/random/boot_id`): a PID means
    /// something only on the same machine and boot.
    pub boot_id: String,
}

impl AgentOwner {
    /// The calling process.
    pub fn this_process() -> AgentOwner {
        let pid = std::process::id();
        AgentOwner {
            pid,
            start_time: crate::process::ProcessIdentity::of(pid)
                .map(|i| i.start_time)
                .unwrap_or(0),
            boot_id: boot_id(),
        }
    }

    /// True when this owner is a process on this machine and boot that no longer runs: its key
    /// is a leftover (the lease has not expired yet) and a new agent may take over.
    pub fn is_gone_here(&self) -> bool {
        self.boot_id == boot_id()
            && (crate::process::is_exited(self.pid)
                || crate::process::ProcessIdentity::of(self.pid).map_or(true, |i| {
                    self.start_time != 0 && i.start_time != self.start_time
                }))
    }

    /// True when this owner is the calling process.
    pub fn is_this_process(&self) -> bool {
        *self == AgentOwner::this_process()
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), or "" when it cannot be read.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
