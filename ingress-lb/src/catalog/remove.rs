//! Removing a service, and releasing what it holds.

use overlay_core::store::{Compare, Op, Txn};

use super::{ServiceCatalog, ServiceError};
use crate::keys;
use crate::service::validate;
use crate::service::{PublishedPort, Service};

impl ServiceCatalog {
    /// Removes a service with everything it holds: its VIP (back to the network's IPAM), its
    /// id, its published ports, its backends' health records. Works on a service whose network
    /// is gone too.
    pub fn remove(&self, name: &str) -> Result<Service, ServiceError> {
        validate::service_name(name)?;
        let key = keys::service(name);
        self.commit_with_retry(|| {
            let (kv, svc) = self.service_record(name)?;
            let mut compares = vec![Compare::ModRevision(key.clone(), kv.mod_revision)];
            let mut ops = vec![
                Op::Delete(key.clone()),
                Op::DeletePrefix(keys::health_of(name)),
                Op::Delete(keys::network_dependent(&svc.network, name)),
                Op::put(
                    keys::network_dependents_guard(&svc.network),
                    name.as_bytes(),
                ),
            ];
            // Release only what is still ours: after `network rm --force` and a new network of
            // the same name, the VIP's address may belong to someone else.
            let owned = [
                (keys::ipam(&svc.network, svc.vip), keys::vip_owner(name)),
                (keys::service_id(svc.id), name.to_string()),
            ];
            for (k, owner) in owned {
                let (mut c, mut o) = self.release_if_owned(&k, &owner)?;
                compares.append(&mut c);
                ops.append(&mut o);
            }
            for p in &svc.publish {
                let (mut c, mut o) = self.release_published(name, p)?;
                compares.append(&mut c);
                ops.append(&mut o);
            }
            Ok((Txn { compares, ops }, svc))
        })
    }

    /// Deletes the claim of a published port if `service` holds it.
    pub(super) fn release_published(
        &self,
        service: &str,
        p: &PublishedPort,
    ) -> Result<(Vec<Compare>, Vec<Op>), ServiceError> {
        self.release_if_owned(&keys::published(p.proto, p.published), service)
    }

    /// Deletes `key` if its value is `owner`, with the compare that makes sure of it.
    fn release_if_owned(
        &self,
        key: &str,
        owner: &str,
    ) -> Result<(Vec<Compare>, Vec<Op>), ServiceError> {
        match self.store.get(key)? {
            Some(kv) if kv.value == owner.as_bytes() => Ok((
                vec![Compare::ModRevision(key.to_string(), kv.mod_revision)],
                vec![Op::Delete(key.to_string())],
            )),
            _ => Ok((vec![], vec![])),
        }
    }
}
