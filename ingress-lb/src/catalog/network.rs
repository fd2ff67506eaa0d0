//! Services and their network: a service follows the network it was made on, and a network
//! with services is not removed without `force`.

use overlay_core::catalog::Catalog;
use overlay_core::model::Network;
use overlay_core::store::KeyValue;
use overlay_core::validate as core_validate;

use super::{decode, sample, ServiceCatalog, ServiceError};
use crate::keys;
use crate::service::Service;

/// How many times `remove_network` starts again when services keep appearing.
const NETWORK_RM_ATTEMPTS: u32 = 20;

impl ServiceCatalog {
    /// The service's network, if it is still the one the service was made on.
    pub(super) fn live_network(&self, svc: &Service) -> Result<(KeyValue, Network), ServiceError> {
        let orphaned = || ServiceError::Orphaned {
            service: svc.name.clone(),
            network: svc.network.clone(),
        };
        match self.network_record(&svc.network) {
            Ok((kv, _)) if kv.create_revision != svc.network_revision => Err(orphaned()),
            Ok(found) => Ok(found),
            Err(ServiceError::NotFound { .. }) => Err(orphaned()),
            Err(e) => Err(e),
        }
    }

    /// The services made on `network` (by name; orphans of an earlier network of that name
    /// included), read from its dependents keys.
    pub fn services_of_network(&self, network: &str) -> Result<Vec<Service>, ServiceError> {
        core_validate::network_name(network)?;
        let mut out = Vec::new();
        for kv in self.store.range(&keys::dependents_of(network))?.kvs {
            let service_key = String::from_utf8_lossy(&kv.value).into_owned();
            if let Some(svc_kv) = self.store.get(&service_key)? {
                out.push(decode::<Service>(&svc_kv)?);
            }
        }
        Ok(out)
    }

    /// `vxmesh network rm` for a store that has services: refuses while the network has
    /// services, unless `force`, which removes them first (VIPs, health records, claims), then
    /// removes the network through overlay-core (`Catalog::remove_network`, which has its own
    /// rule for endpoints and `force`).
    ///
    /// Not one transaction (overlay-core knows nothing of services): a service created between
    /// the check and the removal is left pointing at a removed network. It is then an orphan:
    /// it never gets a table, it does not follow a new network of the same name (its
    /// `network_revision` differs), and `service rm` removes it. See the crate documentation
    /// for the one-transaction design proposed for overlay-core.
    pub fn remove_network(
        &self,
        catalog: &Catalog,
        name: &str,
        force: bool,
    ) -> Result<(Network, Vec<Service>), ServiceError> {
        core_validate::network_name(name)?;
        let mut removed = Vec::new();
        for _ in 0..NETWORK_RM_ATTEMPTS {
            let services = self.services_of_network(name)?;
            if services.is_empty() {
                let network = catalog.remove_network(name, force)?;
                return Ok((network, removed));
            }
            if !force {
                return Err(ServiceError::NetworkHasServices {
                    network: name.to_string(),
                    count: services.len(),
                    sample: sample(services.iter().map(|s| s.name.as_str())),
                });
            }
            for s in services {
                match self.remove(&s.name) {
                    Ok(svc) => removed.push(svc),
                    // Someone else removed it first: fine.
                    Err(ServiceError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Err(ServiceError::Contended(NETWORK_RM_ATTEMPTS))
    }
}
