//! Waiting until hosts have applied a change, from any process: every agent publishes its
//! [`AgentStatus`] in the store (one key per node outside the desired state, on the agent's
//! lease, so it goes with the agent), written after each pass that followed a change.
//!
//! ```no_run
//! # fn main() -> Result<(), vxmesh::Error> {
//! use std::time::Duration;
//! let catalog = vxmesh::open_catalog(std::path::Path::new("/var/lib/vxmesh/store.db"))?;
//! // ... create a network, attach containers ...
//! let revision = catalog.store().revision()?;
//! let statuses = vxmesh::wait::wait_applied(&catalog, &["h1", "h2"], revision, Duration::from_secs(10))?;
//! for (node, s) in &statuses {
//!     assert!(s.errors.is_empty(), "{node}: {:?}", s.errors);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use overlay_core::catalog::Catalog;
use overlay_core::keys;
use overlay_core::store::{LeaseId, Op, StoreError, Txn};

pub use crate::agent::AgentStatus;

/// Why [`wait_applied`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Some nodes had not applied the revision in time. `pending` maps each to the revision it
    /// had applied, or `None` when no agent of it reported (not running).
    #[error(
        "revision {revision} not applied after {waited:?} by {}",
        describe(pending)
    )]
    Timeout {
        /// The revision waited for.
        revision: u64,
        /// How long it was waited for.
        waited: Duration,
        /// Node → the revision it had applied (`None`: no running agent).
        pending: BTreeMap<String, Option<u64>>,
    },
    /// A node in the list is not in the store (no agent can ever apply anything for it).
    #[error("unknown node '{0}'")]
    UnknownNode(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(pending: &BTreeMap<String, Option<u64>>) -> String {
    pending
        .iter()
        .map(|(n, r)| match r {
            Some(r) => format!("{n} (at {r})"),
            None => format!("{n} (no running agent)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status every running agent last published, by node. Records that do not decode are
/// skipped.
pub fn agent_statuses(catalog: &Catalog) -> Result<BTreeMap<String, AgentStatus>, StoreError> {
    let range = catalog.store().range(keys::STATUS)?;
    Ok(range
        .kvs
        .into_iter()
        .filter_map(|kv| serde_json::from_slice::<AgentStatus>(&kv.value).ok())
        .map(|s| (s.node.clone(), s))
        .collect())
}

/// Blocks until every node in `nodes` has applied `revision` (a store revision read after the
/// caller's write: `catalog.store().revision()?`): its agent's last pass reconciled a snapshot
/// at or after `revision`, or nothing under the desired state changed between the revision it
/// applied and `revision`. Returns every node's status then (their `errors` say what could not
/// be applied). Polls the store every 50 ms.
///
/// Errors: [`WaitError::Timeout`] naming the nodes still behind (and those with no running
/// agent) after `timeout`; [`WaitError::UnknownNode`] at once for a node the store does not
/// have; [`WaitError::Store`] when the store cannot be read.
pub fn wait_applied(
    catalog: &Catalog,
    nodes: &[&str],
    revision: u64,
    timeout: Duration,
) -> Result<BTreeMap<String, AgentStatus>, WaitError> {
    let deadline = Instant::now() + timeout;
    for node in nodes {
        if catalog.store().get(&keys::node(node))?.is_none() {
            return Err(WaitError::UnknownNode(node.to_string()));
        }
    }
    loop {
        let statuses = agent_statuses(catalog)?;
        let mut pending = BTreeMap::new();
        for node in nodes {
            match statuses.get(*node) {
                Some(s) if s.applied_revision >= revision => {}
                Some(s) if s.passes > 0 && unchanged(catalog, s.applied_revision, revision) => {}
                Some(s) => {
                    pending.insert(node.to_string(), Some(s.applied_revision));
                }
                None => {
                    pending.insert(node.to_string(), None);
                }
            }
        }
        if pending.is_empty() {
            return Ok(statuses
                .into_iter()
                .filter(|(n, _)| nodes.contains(&n.as_str()))
                .collect());
        }
        if Instant::now() >= deadline {
            return Err(WaitError::Timeout {
                revision,
                waited: timeout,
                pending,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_applied`] for async callers: runs on the runtime's blocking pool.
pub async fn wait_applied_async(
    catalog: Catalog,
    nodes: Vec<String>,
    revision: u64,
    timeout: Duration,
) -> Result<BTreeMap<String, AgentStatus>, WaitError> {
    tokio::task::spawn_blocking(move || {
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        wait_applied(&catalog, &nodes, revision, timeout)
    })
    .await
    .expect("wait_applied panicked")
}

/// True when nothing under the desired state changed after `applied` up to `revision`
/// (false when that cannot be told: history compacted, store unreachable).
fn unchanged(catalog: &Catalog, applied: u64, revision: u64) -> bool {
    if applied >= revision {
        return true;
    }
    match catalog.store().watch(keys::ROOT, applied, Duration::ZERO) {
        Ok(events) => events.iter().all(|e| e.revision > revision),
        Err(_) => false,
    }
}

/// [`unchanged`] from async code.
pub(crate) async fn unchanged_between(catalog: &Catalog, applied: u64, revision: u64) -> bool {
    let c = catalog.clone();
    tokio::task::spawn_blocking(move || unchanged(&c, applied, revision))
        .await
        .unwrap_or(false)
}

/// Publishes `status` as the agent's record, on `lease` (so it goes with the agent).
pub(crate) fn publish_status(
    catalog: &Catalog,
    status: &AgentStatus,
    lease: LeaseId,
) -> Result<(), StoreError> {
    catalog.store().txn(&Txn {
        compares: vec![],
        ops: vec![Op::Put {
            key: keys::agent_status(&status.node),
            value: serde_json::to_vec(status).expect("plain struct"),
            lease: Some(lease),
        }],
    })?;
    Ok(())
}
