//! Creating a service, and the reads that create and update share: the network, a backend's
//! endpoint, backend ids, published-port claims.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use overlay_core::ipam;
use overlay_core::keys as core_keys;
use overlay_core::model::{Endpoint, Network};
use overlay_core::store::{Compare, KeyValue, Op, Txn};
use overlay_core::validate::{self as core_validate, ValidationError};

use super::{decode, encode, unchanged, ServiceCatalog, ServiceError};
use crate::keys;
use crate::service::validate;
use crate::service::{
    Backend, BackendSpec, BackendState, PublishedPort, Service, ServiceSpec, VipRequest,
};

impl ServiceCatalog {
    /// Validates `spec`, reserves the VIP in the network's IPAM (the lowest free address for
    /// [`VipRequest::Auto`]), and stores the service, in one transaction.
    ///
    /// Errors: a bad field ([`ServiceError::Invalid`], naming it: `service name`, `port`,
    /// `target-port`, `vip`, `backend`, `weight`, `health*`, `maglev-table-size`, `publish`),
    /// an unknown network, a service of that name, no free address. Nothing is written then.
    pub fn create(&self, spec: &ServiceSpec) -> Result<Service, ServiceError> {
        validate::service_name(&spec.name)?;
        core_validate::network_name(&spec.network)?;
        let ports = validate::ports(&spec.ports)?;
        validate::health(&spec.health, &ports)?;
        let count = validate::backends(
            spec.backends
                .iter()
                .map(|b| (b.endpoint.as_str(), b.weight.unwrap_or(1))),
        )?;
        if let Some(m) = spec.maglev_table_size {
            validate::table_size(m, count)?;
        }
        validate::publish(&spec.publish, &ports)?;
        let key = keys::service(&spec.name);
        self.commit_with_retry(|| {
            let (net_kv, network) = self.network_record(&spec.network)?;
            if self.store.get(&key)?.is_some() {
                return Err(ServiceError::Exists {
                    kind: "service",
                    name: spec.name.clone(),
                });
            }
            let mut compares = vec![
                Compare::ModRevision(net_kv.key.clone(), net_kv.mod_revision),
                Compare::Absent(key.clone()),
            ];
            let ids = BackendIds::read(self)?;
            let (backends, mut more) = self.resolve_backends(&network, &spec.backends, &ids)?;
            compares.append(&mut more);
            let vip = self.choose_vip(&network, spec.vip)?;
            let id = self.free_service_id()?;
            let mut ops = Vec::new();
            for p in &spec.publish {
                let (cmp, op) = self.claim_published(&spec.name, p)?;
                compares.push(cmp);
                ops.push(op);
            }
            let service = Service {
                name: spec.name.clone(),
                network: network.name.clone(),
                network_revision: net_kv.create_revision,
                id,
                vip,
                ports: ports.clone(),
                backends,
                health: spec.health.clone(),
                affinity: spec.affinity,
                maglev_table_size: spec.maglev_table_size,
                publish: spec.publish.clone(),
                mode: spec.mode,
            };
            compares.extend([
                Compare::Absent(keys::ipam(&network.name, vip)),
                Compare::Absent(keys::service_id(id)),
                ids.compare(),
            ]);
            ops.extend([
                Op::put(key.clone(), encode(&service)),
                Op::put(
                    keys::ipam(&network.name, vip),
                    keys::vip_owner(&service.name),
                ),
                Op::put(keys::service_id(id), service.name.as_bytes()),
                Op::put(
                    keys::network_dependent(&network.name, &service.name),
                    key.as_bytes(),
                ),
                Op::put(
                    keys::network_dependents_guard(&network.name),
                    service.name.as_bytes(),
                ),
            ]);
            ops.extend(ids.advance(service.backends.len()));
            Ok((Txn { compares, ops }, service))
        })
    }

    /// The network's record, validated, or `NotFound`.
    pub(super) fn network_record(&self, name: &str) -> Result<(KeyValue, Network), ServiceError> {
        let (kv, network) = self
            .read::<Network>(&core_keys::network(name))?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "network",
                name: name.to_string(),
            })?;
        core_validate::stored_network(&network).map_err(|e| ServiceError::Corrupt {
            key: kv.key.clone(),
            reason: e.to_string(),
        })?;
        Ok((kv, network))
    }

    /// A backend's endpoint, which must exist in `network`; with the compare that keeps it so.
    pub(super) fn backend_endpoint(
        &self,
        network: &Network,
        endpoint: &str,
    ) -> Result<(Compare, Endpoint), ServiceError> {
        let key = core_keys::endpoint(&network.name, endpoint);
        let (kv, ep) = self.read::<Endpoint>(&key)?.ok_or_else(|| {
            ValidationError::new(
                "backend",
                endpoint,
                format!("is not an endpoint of network {}", network.name),
            )
        })?;
        Ok((Compare::ModRevision(key, kv.mod_revision), ep))
    }

    /// Backends for `specs`, each with a new id from `ids` (in the order given), and the
    /// compares that keep their endpoints as read.
    pub(super) fn resolve_backends(
        &self,
        network: &Network,
        specs: &[BackendSpec],
        ids: &BackendIds,
    ) -> Result<(Vec<Backend>, Vec<Compare>), ServiceError> {
        let mut backends = Vec::with_capacity(specs.len());
        let mut compares = Vec::with_capacity(specs.len());
        for (i, b) in specs.iter().enumerate() {
            let (cmp, _) = self.backend_endpoint(network, &b.endpoint)?;
            compares.push(cmp);
            backends.push(Backend {
                endpoint: b.endpoint.clone(),
                id: ids.nth(i)?,
                weight: b.weight.unwrap_or(1),
                state: BackendState::Active,
            });
        }
        Ok((backends, compares))
    }

    /// The VIP: the lowest address no endpoint or service holds, or the one asked for if it is
    /// a free host address of the network.
    fn choose_vip(&self, network: &Network, want: VipRequest) -> Result<Ipv4Addr, ServiceError> {
        let allocations = self.store.range(&core_keys::ipam_of(&network.name))?;
        let owner_of = |ip: Ipv4Addr| {
            let key = keys::ipam(&network.name, ip);
            allocations
                .kvs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        };
        match want {
            VipRequest::Ip(ip) => {
                validate::vip(network, ip)?;
                if let Some(owner) = owner_of(ip) {
                    return Err(ValidationError::new(
                        "vip",
                        ip,
                        format!("is already in use (by {owner})"),
                    )
                    .into());
                }
                Ok(ip)
            }
            VipRequest::Auto => {
                let taken: BTreeSet<Ipv4Addr> = allocations
                    .kvs
                    .iter()
                    .filter_map(|kv| kv.key.rsplit('/').next()?.parse().ok())
                    .collect();
                ipam::first_free(network.subnet, network.gateway, &taken).ok_or_else(|| {
                    ServiceError::Exhausted {
                        network: network.name.clone(),
                        subnet: network.subnet.to_string(),
                        capacity: ipam::capacity(network.subnet),
                    }
                })
            }
        }
    }

    /// The lowest service id not claimed.
    fn free_service_id(&self) -> Result<u32, ServiceError> {
        let used: BTreeSet<u32> = self
            .store
            .range(keys::SERVICE_IDS)?
            .kvs
            .iter()
            .filter_map(|kv| kv.key[keys::SERVICE_IDS.len()..].parse().ok())
            .collect();
        (1..=u32::MAX).find(|id| !used.contains(id)).ok_or_else(|| {
            ValidationError::new("service", "id", "every service id is taken").into()
        })
    }

    /// The claim of a published port for `service`: refused when another service holds it.
    pub(super) fn claim_published(
        &self,
        service: &str,
        p: &PublishedPort,
    ) -> Result<(Compare, Op), ServiceError> {
        let key = keys::published(p.proto, p.published);
        let kv = self.store.get(&key)?;
        if let Some(kv) = &kv {
            let owner = String::from_utf8_lossy(&kv.value);
            if owner != service {
                return Err(ValidationError::new(
                    "publish",
                    p,
                    format!(
                        "{}/{} is already published by service {owner}",
                        p.published, p.proto
                    ),
                )
                .into());
            }
        }
        Ok((unchanged(&key, &kv), Op::put(key, service.as_bytes())))
    }
}

/// The store-wide backend id counter, as read.
pub(super) struct BackendIds {
    kv: Option<KeyValue>,
    next: u32,
}

impl BackendIds {
    pub(super) fn read(catalog: &ServiceCatalog) -> Result<Self, ServiceError> {
        let kv = catalog.store.get(keys::BACKEND_IDS)?;
        let next = match &kv {
            Some(kv) => decode::<u32>(kv)?,
            None => 1,
        };
        if next == 0 {
            return Err(ServiceError::Corrupt {
                key: keys::BACKEND_IDS.into(),
                reason: "the next backend id is 0".into(),
            });
        }
        Ok(BackendIds { kv, next })
    }

    /// The id of the `i`-th new backend.
    pub(super) fn nth(&self, i: usize) -> Result<u32, ServiceError> {
        u32::try_from(i)
            .ok()
            .and_then(|i| self.next.checked_add(i))
            .ok_or_else(|| {
                ValidationError::new("backend", "id", "every backend id has been used").into()
            })
    }

    pub(super) fn compare(&self) -> Compare {
        unchanged(keys::BACKEND_IDS, &self.kv)
    }

    /// The write that moves the counter past `used` new ids (none when `used` is 0).
    pub(super) fn advance(&self, used: usize) -> Option<Op> {
        (used > 0).then(|| {
            let next = self.next.saturating_add(used as u32);
            Op::put(keys::BACKEND_IDS, encode(&next))
        })
    }
}
