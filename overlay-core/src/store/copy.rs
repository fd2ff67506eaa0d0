//! Copying vxmesh's state from one store to another (`vxmesh store copy`): a single machine's
//! SQLite store moved into etcd, or back.

use std::collections::BTreeMap;

use super::{Compare, KeyValue, Op, Revision, Store, StoreError, Txn};
use crate::keys;

/// Puts per transaction: below etcd's default `--max-txn-ops` (128).
const BATCH: usize = 64;

/// What was copied, by kind (the key's first component under the root: `networks`,
/// `nodes`, `endpoints`, `ipam`, `services`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub keys: usize,
    pub by_kind: BTreeMap<String, usize>,
    /// Keys the destination held and `force` removed first.
    pub replaced: usize,
    /// The source's revision the copy was read at.
    pub source_revision: u64,
}

/// Where each copied key was created: its create revision in the source and in the
/// destination (copying gives every key a new one).
pub type Revisions = BTreeMap<String, (Revision, Revision)>;

/// Values that name another key's create revision must be rewritten for the destination
/// (a service names its network's, to tell a network re-created under the same name).
pub trait CopyFix {
    /// Keys written only after every other key (so the keys they refer to have their
    /// destination revisions).
    fn deferred(&self, key: &str) -> bool;
    /// The value to write for a deferred key, given where the other keys were created.
    /// Errors name the record.
    fn rewrite(&self, kv: &KeyValue, revisions: &Revisions) -> Result<Vec<u8>, String>;
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the destination already holds {keys} vxmesh key(s) (under {root}); copy into an empty store, or pass --force to replace them")]
    NotEmpty { keys: usize, root: &'static str },
    #[error("another writer changed the destination during the copy (key {key}); nothing after it was written: run the copy again with --force")]
    Raced { key: String },
    #[error("cannot copy {key}: {reason}")]
    Record { key: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a key is copied: everything under the root except what lives on a lease (agent
/// heartbeats and liveness, health reports: the destination's agents make their own) and
/// the host reports (each agent publishes its own on its first pass; a copied report without
/// its node's liveness key would make the other hosts take the node for dead until then).
fn copied(kv: &super::KeyValue) -> bool {
    kv.lease.is_none() && !kv.key.starts_with(keys::HOSTS)
}

/// Copies vxmesh's state (networks, nodes, endpoints, addresses, MAC claims, VNIs, guards,
/// services) from `from` to `to`, read at one revision of `from`, written in transactions of
/// at most 64 keys, each requiring its keys absent (so a concurrent writer is noticed).
///
/// Errors: [`CopyError::NotEmpty`] when `to` holds vxmesh keys and `force` is false (nothing
/// written); with `force` they are deleted first. [`CopyError::Raced`] when a key appeared in
/// `to` meanwhile.
pub fn copy(
    from: &dyn Store,
    to: &dyn Store,
    force: bool,
    fix: Option<&dyn CopyFix>,
) -> Result<CopyReport, CopyError> {
    let source = from.range(keys::ROOT)?;
    let existing = to.range(keys::ROOT)?.kvs.len();
    if existing > 0 && !force {
        return Err(CopyError::NotEmpty {
            keys: existing,
            root: keys::ROOT,
        });
    }
    if existing > 0 {
        to.txn(&Txn {
            compares: vec![],
            ops: vec![Op::DeletePrefix(keys::ROOT.into())],
        })?;
    }
    let mut report = CopyReport {
        replaced: existing,
        source_revision: source.revision,
        ..Default::default()
    };
    let deferred = |kv: &KeyValue| fix.is_some_and(|f| f.deferred(&kv.key));
    let (later, first): (Vec<KeyValue>, Vec<KeyValue>) =
        source.kvs.into_iter().filter(copied).partition(deferred);
    let mut revisions = Revisions::new();
    write(to, &first, &mut revisions, &mut report)?;
    if let Some(fix) = fix {
        let later = later
            .into_iter()
            .map(|mut kv| {
                kv.value = fix
                    .rewrite(&kv, &revisions)
                    .map_err(|reason| CopyError::Record {
                        key: kv.key.clone(),
                        reason,
                    })?;
                Ok(kv)
            })
            .collect::<Result<Vec<_>, CopyError>>()?;
        write(to, &later, &mut revisions, &mut report)?;
    }
    Ok(report)
}

/// Writes `kvs` in transactions of [`BATCH`], each requiring its keys absent; records where
/// each key was created.
fn write(
    to: &dyn Store,
    kvs: &[KeyValue],
    revisions: &mut Revisions,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    for batch in kvs.chunks(BATCH) {
        let txn = Txn {
            compares: batch
                .iter()
                .map(|kv| Compare::Absent(kv.key.clone()))
                .collect(),
            ops: batch
                .iter()
                .map(|kv| Op::put(kv.key.clone(), kv.value.clone()))
                .collect(),
        };
        let out = to.txn(&txn)?;
        if !out.succeeded {
            let key = batch
                .iter()
                .find(|kv| to.get(&kv.key).ok().flatten().is_some())
                .map_or_else(|| batch[0].key.clone(), |kv| kv.key.clone());
            return Err(CopyError::Raced { key });
        }
        for kv in batch {
            revisions.insert(kv.key.clone(), (kv.create_revision, out.revision));
            let kind = kv.key[keys::ROOT.len()..]
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            *report.by_kind.entry(kind).or_default() += 1;
            report.keys += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn copies_all_but_leased_keys_and_host_reports_and_refuses_a_non_empty_destination() {
        let d = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(d.path().join("a.db")).unwrap();
        let b = SqliteStore::open(d.path().join("b.db")).unwrap();
        for i in 0..150 {
            a.put(&keys::network(&format!("n{i}")), b"{}").unwrap();
        }
        a.put(&keys::host("h1"), b"{}").unwrap();
        let lease = a.lease_grant(std::time::Duration::from_secs(60)).unwrap();
        a.txn(&Txn {
            compares: vec![],
            ops: vec![Op::Put {
                key: keys::agent("h1"),
                value: vec![],
                lease: Some(lease),
            }],
        })
        .unwrap();
        a.put("/other/app", b"x").unwrap();
        let r = copy(&a, &b, false, None).unwrap();
        assert_eq!((r.keys, r.by_kind["networks"]), (150, 150));
        assert_eq!(b.range("").unwrap().kvs.len(), 150);
        assert!(matches!(
            copy(&a, &b, false, None),
            Err(CopyError::NotEmpty { keys: 150, .. })
        ));
        b.put(&keys::network("extra"), b"{}").unwrap();
        let r = copy(&a, &b, true, None).unwrap();
        assert_eq!((r.keys, r.replaced), (150, 151));
        assert!(b.get(&keys::network("extra")).unwrap().is_none());
    }
}
