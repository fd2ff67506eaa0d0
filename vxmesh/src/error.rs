//! The facade's one error type, [`Error`].

use crate::agent::AgentError;
use crate::dns::DnsError;
use crate::lab::replica::ReplicaError;
use crate::lab::LabError;
use crate::wait::WaitError;
use crate::{
    CatalogError, ContainerError, DataplaneError, NetnsError, ServiceError, StoreError,
    ValidationError,
};

/// Any error a function of the `vxmesh` crate returns: the inner error, unchanged.
///
/// Every function of this crate returns the error of the layer that failed ([`CatalogError`]
/// from the catalog, [`ServiceError`] from services, [`ContainerError`] from attaching a
/// container, ...). [`Error`] wraps each of them unchanged, with a `From` impl, so an
/// embedder can write one `?` chain over calls of different layers and still match on the
/// inner error when it needs to. Its `Display` is the inner error's (`#[error(transparent)]`).
///
/// ```
/// use vxmesh::{Catalog, NetworkSpec, SqliteStore};
///
/// fn make(catalog: &Catalog) -> vxmesh::Result<()> {
///     catalog.create_network(&NetworkSpec {
///         name: "front".into(),
///         subnet: "10.20.0.0/24".into(),
///         ..Default::default()
///     })?; // CatalogError -> Error
///     vxmesh::ServiceCatalog::of(catalog).list()?; // ServiceError -> Error
///     Ok(())
/// }
/// # let dir = tempfile::tempdir().unwrap();
/// # let catalog = Catalog::new(std::sync::Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap()));
/// # make(&catalog).unwrap();
/// # assert!(matches!(make(&catalog), Err(vxmesh::Error::Catalog(vxmesh::CatalogError::Exists { .. }))));
/// ```
///
/// Match on the variant to act on one kind (`Error::Catalog(CatalogError::NotFound { .. })`);
/// [`std::error::Error::source`] is the inner error's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Networks, nodes, endpoints (`Catalog`): bad input, unknown or existing objects, no free
    /// address, contention, the store.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The store itself: cannot be opened or reached, compacted history, a bad store spec.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value that failed validation; the error names the field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Services and backends (`ServiceCatalog`).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Attaching or detaching a container ([`crate::attach_container`]): no bridge yet on this
    /// host, a bad MTU, the catalog, netlink, the namespaces.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A netlink request the kernel refused or that could not be sent.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// A network namespace that cannot be opened, entered, created or removed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The per-host agent.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Waiting until hosts applied a revision ([`crate::wait::wait_applied`]) gave up.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// The DNS server for service names could not start.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The lab (simulated hosts in network namespaces).
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The lab's demo HTTP replica.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

/// `std::result::Result` with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the store could not be reached or did not answer in time, wherever it was
    /// met (directly, or inside a catalog, service or container error): trying again later
    /// may succeed ([`StoreError::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        let store = match self {
            Error::Store(e) => Some(e),
            Error::Wait(WaitError::Store(e)) => Some(e),
            Error::Catalog(CatalogError::Store(e)) => Some(e),
            Error::Service(ServiceError::Store(e)) => Some(e),
            Error::Service(ServiceError::Catalog(CatalogError::Store(e))) => Some(e),
            Error::Container(ContainerError::Catalog(CatalogError::Store(e))) => Some(e),
            _ => None,
        };
        store.is_some_and(StoreError::is_unavailable)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timeout() -> StoreError {
        StoreError::Timeout {
            endpoints: "127.0.0.1:2379".into(),
            op: "txn",
            after: Duration::from_secs(5),
        }
    }

    #[test]
    fn wraps_unchanged_and_tells_an_unreachable_store_at_any_depth() {
        let inner = CatalogError::Store(timeout());
        let text = inner.to_string();
        let e: Error = inner.into();
        assert_eq!(e.to_string(), text);
        assert!(e.is_unavailable());
        let e: Error = ServiceError::Catalog(CatalogError::Store(timeout())).into();
        assert!(e.is_unavailable());
        let e: Error = CatalogError::NotFound {
            kind: "network",
            name: "front".into(),
        }
        .into();
        assert!(!e.is_unavailable());
        assert_eq!(e.to_string(), "unknown network 'front'");
    }
}
