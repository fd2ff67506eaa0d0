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
        let on_lease = |key: String| Op::Put {
            key,
            value: std::process::id().to_string().into_bytes(),
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

    /// Is `node`'s agent running (its key present and its lease not expired)?
    pub fn agent_alive(&self, node: &str) -> Result<bool, CatalogError> {
        validate::node_name(node)?;
        Ok(self.store.get(&keys::agent(node))?.is_some())
    }
}
