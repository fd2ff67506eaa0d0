//! What agents publish about their hosts: underlay MTU, host addresses, attachment states.

use std::collections::BTreeMap;

use crate::keys;
use crate::model::HostReport;
use crate::store::{Compare, Op, Txn};
use crate::validate;

use super::{decode_valid, encode, Catalog, CatalogError};

impl Catalog {
    /// Publishes `node`'s host report unless the store already holds exactly this one. Returns
    /// whether it wrote. Refused (`NotFound`) when the node is not in the store, so a removed
    /// node's agent cannot leave a report behind.
    pub fn publish_host_report(
        &self,
        node: &str,
        report: &HostReport,
    ) -> Result<bool, CatalogError> {
        validate::node_name(node)?;
        validate::stored_host_report(report)?;
        let key = keys::host(node);
        self.commit_with_retry(|| {
            let (node_kv, _) = self.node_record(node)?;
            let current = self.store.get(&key)?;
            if let Some(kv) = &current {
                if decode_valid(kv, validate::stored_host_report).ok().as_ref() == Some(report) {
                    return Ok((Txn::default(), false));
                }
            }
            let same = match &current {
                Some(kv) => Compare::ModRevision(key.clone(), kv.mod_revision),
                None => Compare::Absent(key.clone()),
            };
            let txn = Txn {
                compares: vec![
                    Compare::ModRevision(node_kv.key.clone(), node_kv.mod_revision),
                    same,
                ],
                ops: vec![Op::put(key.clone(), encode(report))],
            };
            Ok((txn, true))
        })
    }

    /// Every host report, by node name. Records that fail to decode or validate are skipped.
    pub fn host_reports(&self) -> Result<BTreeMap<String, HostReport>, CatalogError> {
        let range = self.store.range(keys::HOSTS)?;
        Ok(range
            .kvs
            .iter()
            .filter_map(|kv| {
                let node = kv.key.strip_prefix(keys::HOSTS)?;
                let r = decode_valid(kv, validate::stored_host_report).ok()?;
                Some((node.to_string(), r))
            })
            .collect())
    }
}
