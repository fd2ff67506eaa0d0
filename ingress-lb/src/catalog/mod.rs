//! The service catalog: typed, validated operations on services in overlay-core's store.
//!
//! The house rules of `overlay_core::catalog` hold here too: every change is one
//! compare-and-swap transaction built from what was read just before (the record that guards
//! the change is read first, then what it protects), retried from a fresh read when another
//! writer won; on any error nothing is written.

use std::sync::Arc;
use std::time::Duration;

use overlay_core::catalog::{Catalog, CatalogError};
use overlay_core::store::{Compare, KeyValue, Store, StoreError, Txn};
use overlay_core::validate::ValidationError;
use serde::de::DeserializeOwned;

use crate::keys;
use crate::maglev::MaglevError;
use crate::service::Service;

mod copy_fix;
mod create;
mod health;
mod network;
mod remove;
mod snapshot;
mod update;

pub use copy_fix::ServiceCopyFix;
pub use health::{HealthRecord, HealthStatus};
pub use snapshot::{BackendStatus, BackendView, ServiceSnapshot};
pub use update::{HealthChange, ServiceUpdate};

/// How many times an operation is retried when concurrent writers keep winning.
const ATTEMPTS: u32 = 200;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("unknown {kind} '{name}'")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    Exists { kind: &'static str, name: String },
    #[error("network '{network}' has no free address for a VIP: all {capacity} addresses of {subnet} are in use")]
    Exhausted {
        network: String,
        subnet: String,
        capacity: u64,
    },
    #[error("network '{network}' still has {count} service(s) ({sample}); remove them first or use --force")]
    NetworkHasServices {
        network: String,
        count: usize,
        sample: String,
    },
    #[error("service '{service}': its network '{network}' was removed (the service can only be removed)")]
    Orphaned { service: String, network: String },
    #[error("backend {endpoint} of service {service} is on node {actual}, not {node}: only its own node's agent reports its health")]
    NotLocal {
        service: String,
        endpoint: String,
        node: String,
        actual: String,
    },
    #[error("gave up after {0} attempts: other writers kept changing the store")]
    Contended(u32),
    #[error("bad record in the store at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Maglev(#[from] MaglevError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Services in the store. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct ServiceCatalog {
    store: Arc<dyn Store>,
}

impl ServiceCatalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ServiceCatalog { store }
    }

    /// The service catalog on the same store as an overlay-core catalog.
    pub fn of(catalog: &Catalog) -> Self {
        ServiceCatalog::new(catalog.store().clone())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// One service, as stored.
    pub fn get(&self, name: &str) -> Result<Service, ServiceError> {
        crate::service::validate::service_name(name)?;
        Ok(self.service_record(name)?.1)
    }

    /// A service's record with its revisions, or `NotFound`.
    fn service_record(&self, name: &str) -> Result<(KeyValue, Service), ServiceError> {
        self.read::<Service>(&keys::service(name))?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "service",
                name: name.to_string(),
            })
    }

    /// Every service, sorted by name. Errors with `Corrupt` on a record that does not decode.
    pub fn list(&self) -> Result<Vec<Service>, ServiceError> {
        self.store
            .range(keys::SERVICES)?
            .kvs
            .iter()
            .map(decode)
            .collect()
    }

    /// Services, networks, endpoints, health records and live agents at one revision.
    pub fn snapshot(&self) -> Result<ServiceSnapshot, ServiceError> {
        ServiceSnapshot::read(self.store.as_ref())
    }

    /// Runs `attempt` until the transaction it builds commits, or it fails.
    fn commit_with_retry<T>(
        &self,
        mut attempt: impl FnMut() -> Result<(Txn, T), ServiceError>,
    ) -> Result<T, ServiceError> {
        for round in 0..ATTEMPTS {
            let (txn, value) = attempt()?;
            if self.store.txn(&txn)?.succeeded {
                return Ok(value);
            }
            // Another writer won: wait a little (growing, jittered) and read again.
            let cap = 2 + u64::from(round.min(20)) * 2;
            std::thread::sleep(Duration::from_millis(1 + rand::random::<u64>() % cap));
        }
        Err(ServiceError::Contended(ATTEMPTS))
    }

    /// The record at `key`, decoded, with its revisions.
    fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(KeyValue, T)>, ServiceError> {
        match self.store.get(key)? {
            Some(kv) => {
                let v = decode(&kv)?;
                Ok(Some((kv, v)))
            }
            None => Ok(None),
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, ServiceError> {
    serde_json::from_slice(&kv.value).map_err(|e| ServiceError::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("service types always serialize")
}

/// "The key is as read": unchanged since `kv`, or still absent.
fn unchanged(key: &str, kv: &Option<KeyValue>) -> Compare {
    match kv {
        Some(kv) => Compare::ModRevision(key.to_string(), kv.mod_revision),
        None => Compare::Absent(key.to_string()),
    }
}

/// "a, b, c and 2 more" for error messages.
fn sample<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    let mut shown = all.iter().take(3).copied().collect::<Vec<_>>().join(", ");
    if all.len() > 3 {
        shown += &format!(" and {} more", all.len() - 3);
    }
    shown
}
