//! The store: where desired state lives.
//!
//! One trait with the shape of etcd's key-value API (keys with revisions, compare-and-swap
//! transactions, prefix reads, watches from a revision, leases), so an embedded database on one
//! machine and etcd for clusters can sit behind it. [`sqlite::SqliteStore`] is the embedded
//! default; [`etcd::EtcdStore`] keeps the state in an etcd v3 cluster. [`StoreSpec`] names one
//! (`PATH`, `sqlite:PATH` or `etcd://HOST:PORT[,HOST:PORT…]`) and [`open`] opens it.
//!
//! The trait is synchronous: every caller (the CLI, the CNI plugin, the catalogs, the agent's
//! blocking tasks) is written against blocking calls. The etcd store bridges to its async
//! client with a runtime of its own (see [`etcd`]).

use std::time::Duration;

pub mod copy;
pub mod etcd;
mod spec;
pub mod sqlite;

pub use etcd::{EtcdConfig, EtcdStore};
pub use spec::{open, StoreOptions, StoreSpec};
pub use sqlite::SqliteStore;

/// A store revision: increases by one with every successful write transaction.
pub type Revision = u64;
/// A lease: keys attached to it are deleted when it expires or is revoked.
pub type LeaseId = i64;

/// One key with its value and revisions (etcd's `mvccpb.KeyValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the transaction that created the key.
    pub create_revision: Revision,
    /// Revision of the transaction that last wrote the key.
    pub mod_revision: Revision,
    /// Number of writes since the key was created (1 after creation).
    pub version: u64,
    pub lease: Option<LeaseId>,
}

/// A condition of a transaction; all must hold for its operations to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    Exists(String),
    Absent(String),
    /// The key exists and was last written at exactly this revision.
    ModRevision(String, Revision),
}

/// A write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete(String),
    DeletePrefix(String),
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }
}

/// If every compare holds, apply every op, atomically, at one new revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    /// False when a compare failed; nothing was written then.
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: Revision,
}

/// The keys under a prefix, read at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub kvs: Vec<KeyValue>,
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: String,
    /// The new value for `Put`, `None` for `Delete`.
    pub value: Option<Vec<u8>>,
    pub revision: Revision,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store {path}: cannot create its directory: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("watch from revision {requested}: history up to revision {compacted} was compacted; read the whole state again")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("lease {0} does not exist or has expired")]
    LeaseNotFound(LeaseId),
    #[error("store {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// etcd answered with an error, or could not be reached (`unavailable` set: a transport
    /// failure, no leader, or the request timed out inside etcd; the caller may try again).
    #[error("store {endpoints}: {op}: {message}")]
    Etcd {
        endpoints: String,
        op: &'static str,
        message: String,
        unavailable: bool,
    },
    /// An operation did not finish within the store's timeout (nothing hangs longer).
    #[error("store {endpoints}: {op}: no answer within {after:?}")]
    Timeout {
        endpoints: String,
        op: &'static str,
        after: Duration,
    },
    /// A bad store specification or option; `field` names it (`store`, `store-ca`, ...).
    #[error("invalid {field} '{value}': {reason}")]
    Config {
        field: String,
        value: String,
        reason: String,
    },
}

impl StoreError {
    /// True when the store could not be reached or did not answer in time: the operation may
    /// succeed if tried again later (the CNI plugin answers code 11, "try again later").
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout { .. } => true,
            StoreError::Etcd { unavailable, .. } => *unavailable,
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

/// The desired-state store. Implementations must be safe to use from several threads and,
/// for the embedded store, from several processes at once.
pub trait Store: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Every key that starts with `prefix`, sorted by key, and the revision they were read at.
    fn range(&self, prefix: &str) -> Result<Range, StoreError>;
    fn txn(&self, txn: &Txn) -> Result<TxnOutcome, StoreError>;
    fn revision(&self) -> Result<Revision, StoreError>;
    /// The changes under `prefix` after revision `after`, oldest first. Waits up to `timeout`
    /// for the first one and returns an empty list if none came. `Compacted` when the history
    /// after `after` is no longer kept: read the whole state with `range` and watch from there.
    fn watch(
        &self,
        prefix: &str,
        after: Revision,
        timeout: Duration,
    ) -> Result<Vec<Event>, StoreError>;
    fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError>;
    fn lease_keepalive(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// Revokes the lease and deletes its keys; a lease that is already gone is not an error.
    fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// Drops the history before `revision` (etcd's compaction): a later `watch` from an
    /// `after` below `revision - 1` answers `Compacted`. Keys and their values stay.
    fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// Unconditional put.
    fn put(&self, key: &str, value: &[u8]) -> Result<Revision, StoreError> {
        let out = self.txn(&Txn {
            compares: vec![],
            ops: vec![Op::put(key, value)],
        })?;
        Ok(out.revision)
    }

    /// Unconditional delete.
    fn delete(&self, key: &str) -> Result<Revision, StoreError> {
        let out = self.txn(&Txn {
            compares: vec![],
            ops: vec![Op::Delete(key.to_string())],
        })?;
        Ok(out.revision)
    }
}

/// The smallest key greater than every key that starts with `prefix` (etcd's "range end"),
/// or `None` when the prefix is empty or all 0xff (no upper bound).
pub fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(""), None);
    }
}
