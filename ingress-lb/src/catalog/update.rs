//! Changing a service: backends, health check, affinity, table size, published ports, mode.

use overlay_core::store::{Compare, Op, Txn};
use overlay_core::validate::ValidationError;

use super::create::BackendIds;
use super::{encode, ServiceCatalog, ServiceError};
use crate::keys;
use crate::service::validate;
use crate::service::{
    Affinity, BackendSpec, BackendState, HealthCheck, HealthSpec, Mode, PublishedPort, Service,
};

/// One change to a service. [`ServiceCatalog::update`] applies a list of them at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceUpdate {
    /// A new backend (an endpoint of the service's network) with a new backend id.
    AddBackend(BackendSpec),
    /// Removes the backend and its health record.
    RemoveBackend(String),
    /// No new flows to the backend; established ones stay.
    DrainBackend(String),
    /// Undoes [`ServiceUpdate::DrainBackend`].
    ActivateBackend(String),
    SetWeight {
        endpoint: String,
        weight: u32,
    },
    /// Replaces the whole health check.
    SetHealth(HealthSpec),
    /// Changes the given parts of the health check and keeps the others as stored (read in
    /// the same transaction, so a concurrent change of the other parts is not lost).
    ChangeHealth(HealthChange),
    SetAffinity(Affinity),
    /// `None`: the automatic size.
    SetTableSize(Option<u32>),
    Publish(PublishedPort),
    Unpublish(PublishedPort),
    SetMode(Mode),
}

/// Parts of a health check to change; `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthChange {
    pub check: Option<HealthCheck>,
    /// ms.
    pub interval_ms: Option<u32>,
    /// ms.
    pub timeout_ms: Option<u32>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
}

impl HealthChange {
    /// `spec` with the given parts changed.
    pub fn apply(&self, spec: &HealthSpec) -> HealthSpec {
        HealthSpec {
            check: self.check.clone().unwrap_or_else(|| spec.check.clone()),
            interval_ms: self.interval_ms.unwrap_or(spec.interval_ms),
            timeout_ms: self.timeout_ms.unwrap_or(spec.timeout_ms),
            rise: self.rise.unwrap_or(spec.rise),
            fall: self.fall.unwrap_or(spec.fall),
        }
    }
}

fn not_a_backend(service: &str, endpoint: &str) -> ServiceError {
    ValidationError::new(
        "backend",
        endpoint,
        format!("is not a backend of service {service}"),
    )
    .into()
}

impl ServiceCatalog {
    /// Applies `changes` in order, in one transaction: either all of them or none. The result
    /// is validated whole (as a record read from the store is).
    ///
    /// Errors: unknown service, a bad field (named), a backend that is not an endpoint of the
    /// network, a published port another service holds, the service's network removed.
    pub fn update(&self, name: &str, changes: &[ServiceUpdate]) -> Result<Service, ServiceError> {
        validate::service_name(name)?;
        let key = keys::service(name);
        self.commit_with_retry(|| {
            let (kv, old) = self.service_record(name)?;
            let network = self.live_network(&old)?;
            let mut svc = old.clone();
            let mut compares = vec![
                Compare::ModRevision(key.clone(), kv.mod_revision),
                Compare::ModRevision(network.0.key.clone(), network.0.mod_revision),
            ];
            let mut ops = Vec::new();
            let mut ids: Option<BackendIds> = None;
            let mut added = 0usize;
            for change in changes {
                match change {
                    ServiceUpdate::AddBackend(spec) => {
                        validate::backend_name(&spec.endpoint)?;
                        if svc.backend(&spec.endpoint).is_some() {
                            return Err(ValidationError::new(
                                "backend",
                                &spec.endpoint,
                                format!("is already a backend of service {name}"),
                            )
                            .into());
                        }
                        if ids.is_none() {
                            ids = Some(BackendIds::read(self)?);
                        }
                        let ids = ids.as_ref().expect("just read");
                        let (mut new, mut cmp) =
                            self.resolve_backends(&network.1, std::slice::from_ref(spec), ids)?;
                        new[0].id = ids.nth(added)?;
                        added += 1;
                        compares.append(&mut cmp);
                        svc.backends.append(&mut new);
                    }
                    ServiceUpdate::RemoveBackend(endpoint) => {
                        let before = svc.backends.len();
                        svc.backends.retain(|b| &b.endpoint != endpoint);
                        if svc.backends.len() == before {
                            return Err(not_a_backend(name, endpoint));
                        }
                        ops.push(Op::Delete(keys::health(name, endpoint)));
                    }
                    ServiceUpdate::DrainBackend(endpoint)
                    | ServiceUpdate::ActivateBackend(endpoint) => {
                        let b = backend_mut(&mut svc, endpoint)?;
                        b.state = match change {
                            ServiceUpdate::DrainBackend(_) => BackendState::Draining,
                            _ => BackendState::Active,
                        };
                    }
                    ServiceUpdate::SetWeight { endpoint, weight } => {
                        validate::weight(*weight)?;
                        backend_mut(&mut svc, endpoint)?.weight = *weight;
                    }
                    ServiceUpdate::SetHealth(h) => svc.health = h.clone(),
                    ServiceUpdate::ChangeHealth(c) => svc.health = c.apply(&svc.health),
                    ServiceUpdate::SetAffinity(a) => svc.affinity = *a,
                    ServiceUpdate::SetTableSize(m) => svc.maglev_table_size = *m,
                    ServiceUpdate::SetMode(m) => svc.mode = *m,
                    ServiceUpdate::Publish(p) => {
                        svc.publish.push(*p);
                        validate::publish(&svc.publish, &svc.ports)?;
                        let (cmp, op) = self.claim_published(name, p)?;
                        compares.push(cmp);
                        ops.push(op);
                    }
                    ServiceUpdate::Unpublish(p) => {
                        let before = svc.publish.len();
                        svc.publish.retain(|q| q != p);
                        if svc.publish.len() == before {
                            return Err(ValidationError::new(
                                "publish",
                                p,
                                format!("is not published by service {name}"),
                            )
                            .into());
                        }
                        // Published earlier in this same list: drop that claim instead.
                        let claim = keys::published(p.proto, p.published);
                        let pending = ops.len();
                        ops.retain(|op| !matches!(op, Op::Put { key, .. } if *key == claim));
                        if ops.len() == pending {
                            let (mut cmp, mut del) = self.release_published(name, p)?;
                            compares.append(&mut cmp);
                            ops.append(&mut del);
                        }
                    }
                }
            }
            validate::stored_service(&svc, &network.1)?;
            if svc == old {
                // Nothing changes: write nothing (the compare would only bump the revision).
                return Ok((
                    Txn {
                        compares,
                        ops: vec![],
                    },
                    svc,
                ));
            }
            if let Some(ids) = &ids {
                compares.push(ids.compare());
                ops.extend(ids.advance(added));
            }
            ops.push(Op::put(key.clone(), encode(&svc)));
            Ok((Txn { compares, ops }, svc))
        })
    }
}

fn backend_mut<'a>(
    svc: &'a mut Service,
    endpoint: &str,
) -> Result<&'a mut crate::service::Backend, ServiceError> {
    let name = svc.name.clone();
    svc.backends
        .iter_mut()
        .find(|b| b.endpoint == endpoint)
        .ok_or_else(|| not_a_backend(&name, endpoint))
}
