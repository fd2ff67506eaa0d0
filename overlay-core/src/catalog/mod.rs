//! The catalog: typed, validated operations on the objects in the store (networks, nodes,
//! endpoints and their addresses).
//!
//! Every change is one compare-and-swap transaction built from what was read just before; when
//! another writer got there first the transaction fails and the operation starts again from a
//! fresh read. That is what lets several processes (or several hosts, with etcd) change the
//! store at once without losing an update or handing out an address twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::keys;
use crate::model::{Endpoint, HostReport, Network, Node};
use crate::store::{Compare, KeyValue, Revision, Store, StoreError, Txn};
use crate::validate::{self, ValidationError};

mod agents;
mod endpoints;
mod hosts;
mod networks;
mod nodes;

pub use agents::AgentOwner;
pub use endpoints::EndpointSpec;
pub use networks::NetworkSpec;

/// How many times an operation is retried when concurrent writers keep winning.
const ATTEMPTS: u32 = 200;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("unknown {kind} '{name}'")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    Exists { kind: &'static str, name: String },
    #[error(
        "network '{network}' has no free address: all {capacity} addresses of {subnet} are in use"
    )]
    Exhausted {
        network: String,
        subnet: String,
        capacity: u64,
    },
    #[error("{kind} '{name}' still has {count} endpoint(s) ({sample}); remove them first or use --force")]
    InUse {
        kind: &'static str,
        name: String,
        count: usize,
        sample: String,
    },
    #[error("gave up after {0} attempts: other writers kept changing the store")]
    Contended(u32),
    #[error("bad record in the store at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything in the store at one revision, decoded and validated.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: Revision,
    pub networks: BTreeMap<String, Network>,
    pub nodes: BTreeMap<String, Node>,
    /// Every endpoint of every network, sorted by network then id.
    pub endpoints: Vec<Endpoint>,
    /// What each node's agent published about its host, by node name (nodes whose agent has
    /// not published yet are absent).
    pub hosts: BTreeMap<String, HostReport>,
    /// Nodes whose agent's lease is alive (`keys::ALIVE`; a clean stop leaves it until the
    /// lease expires).
    pub alive: BTreeSet<String>,
    /// Records that could not be used, with the reason (they are skipped, not fatal).
    pub problems: Vec<String>,
}

impl Snapshot {
    /// Is `node` down: an agent ran there (it published a host report) and its lease expired?
    /// Its entries, WireGuard peer and service backends are then removed from every other host
    /// until its agent is back. A node no agent ever ran on (a peer configured by hand) is
    /// never down.
    pub fn node_down(&self, node: &str) -> bool {
        self.hosts.contains_key(node) && !self.alive.contains(node)
    }
}

/// Typed access to the store.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Catalog { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Reads every object at one revision. Records that fail to decode or validate are left
    /// out and reported in `problems`, so one bad record cannot stop a host's reconcile.
    pub fn snapshot(&self) -> Result<Snapshot, CatalogError> {
        let range = self.store.range(keys::ROOT)?;
        let mut snap = Snapshot {
            revision: range.revision,
            ..Default::default()
        };
        let mut endpoints = Vec::new();
        for kv in &range.kvs {
            if kv.key.starts_with(keys::NETWORKS) {
                match decode_valid(kv, validate::stored_network) {
                    Ok(n) => {
                        snap.networks.insert(n.name.clone(), n);
                    }
                    Err(e) => snap.problems.push(e.to_string()),
                }
            } else if kv.key.starts_with(keys::NODES) {
                match decode_valid(kv, validate::stored_node) {
                    Ok(n) => {
                        snap.nodes.insert(n.name.clone(), n);
                    }
                    Err(e) => snap.problems.push(e.to_string()),
                }
            } else if let Some(node) = kv.key.strip_prefix(keys::HOSTS) {
                match decode_valid(kv, validate::stored_host_report) {
                    Ok(r) => {
                        snap.hosts.insert(node.to_string(), r);
                    }
                    Err(e) => snap.problems.push(e.to_string()),
                }
            } else if let Some(node) = kv.key.strip_prefix(keys::ALIVE) {
                snap.alive.insert(node.to_string());
            } else if kv.key.starts_with(keys::ENDPOINTS) {
                match decode::<Endpoint>(kv) {
                    Ok(e) => endpoints.push((kv.key.clone(), e)),
                    Err(e) => snap.problems.push(e.to_string()),
                }
            }
        }
        for (key, e) in endpoints {
            match snap.networks.get(&e.network) {
                Some(n) => match validate::stored_endpoint(&e, n) {
                    Ok(()) => snap.endpoints.push(e),
                    Err(err) => snap
                        .problems
                        .push(format!("bad record in the store at {key}: {err}")),
                },
                None => snap.problems.push(format!(
                    "endpoint at {key} names unknown network '{}'",
                    e.network
                )),
            }
        }
        Ok(snap)
    }

    /// Runs `attempt` until it returns a transaction that commits, or an error.
    /// `attempt` returns the transaction and the value to hand back when it commits.
    fn commit_with_retry<T>(
        &self,
        mut attempt: impl FnMut() -> Result<(Txn, T), CatalogError>,
    ) -> Result<T, CatalogError> {
        for n in 0..ATTEMPTS {
            let (txn, value) = attempt()?;
            if self.store.txn(&txn)?.succeeded {
                return Ok(value);
            }
            // Someone else wrote first: back off a little (growing, jittered) and read again.
            let ms = 1 + rand::random::<u64>() % (2 + u64::from(n.min(20)) * 2);
            std::thread::sleep(Duration::from_millis(ms));
        }
        Err(CatalogError::Contended(ATTEMPTS))
    }

    /// Reads a guard key and returns the comparison that holds while nobody has written it
    /// since. Call it BEFORE reading the records the guard protects: a write that lands
    /// between this read and those reads then fails the comparison, while a guard read after
    /// the data would miss it (two nodes could take the same tunnel address).
    fn read_guard(&self, key: &str) -> Result<Compare, CatalogError> {
        Ok(match self.store.get(key)? {
            Some(kv) => Compare::ModRevision(kv.key, kv.mod_revision),
            None => Compare::Absent(key.to_string()),
        })
    }

    fn get_decoded<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(KeyValue, T)>, CatalogError> {
        match self.store.get(key)? {
            Some(kv) => {
                let v = decode(&kv)?;
                Ok(Some((kv, v)))
            }
            None => Ok(None),
        }
    }

    fn list_decoded<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(KeyValue, T)>, CatalogError> {
        let range = self.store.range(prefix)?;
        range
            .kvs
            .into_iter()
            .map(|kv| {
                let v = decode(&kv)?;
                Ok((kv, v))
            })
            .collect()
    }
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, CatalogError> {
    serde_json::from_slice(&kv.value).map_err(|e| CatalogError::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    })
}

/// Decodes a record and checks it with `check` (a `validate::stored_*` function).
fn decode_valid<T: DeserializeOwned>(
    kv: &KeyValue,
    check: impl Fn(&T) -> Result<(), ValidationError>,
) -> Result<T, CatalogError> {
    let v = decode(kv)?;
    check(&v).map_err(|e| corrupt(kv, e))?;
    Ok(v)
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("model types always serialize")
}

fn corrupt(kv: &KeyValue, e: ValidationError) -> CatalogError {
    CatalogError::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    }
}

/// "a, b, c and 2 more" for error messages.
fn sample<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    let shown = all.iter().take(3).copied().collect::<Vec<_>>().join(", ");
    if all.len() > 3 {
        format!("{shown} and {} more", all.len() - 3)
    } else {
        shown
    }
}
