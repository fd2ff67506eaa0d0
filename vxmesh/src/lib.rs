//! vxmesh: VXLAN overlay networks between Linux hosts.
//!
//! The facade an orchestrator embeds: open a store, then use the [`Catalog`] to create
//! networks, nodes and endpoints, [`attach_container`] to put a network namespace on a network,
//! and start an agent ([`agent::Agent::spawn`]) on every host to make its kernel follow the store. Services
//! (virtual IPs balanced in the kernel) are [`ServiceCatalog`]'s; see [`services`].

pub mod agent;
mod agent_log;
pub mod dns;
pub mod fast_plane;
pub mod heartbeat;
pub mod lab;
pub mod service_plane;
pub mod services;
pub mod store_outage;
pub mod wait;

use std::path::Path;
use std::sync::Arc;

pub use overlay_core::catalog::{Catalog, CatalogError, EndpointSpec, NetworkSpec, Snapshot};
pub use overlay_core::container::{
    attach_container, detach_container, ContainerError, ContainerSpec,
};
pub use overlay_core::model::{Endpoint, Network, Node};
/// Named network namespaces (`create`, `delete`, `run_in`, `block_on_in`): a container's
/// namespace for [`attach_container`], or the host's for [`agent::HostNetns`].
pub use overlay_core::netns;
pub use overlay_core::store::{SqliteStore, Store, StoreError, StoreOptions, StoreSpec};
pub use overlay_core::MacAddr;
pub use services::{
    remove_network, Affinity, BackendSpec, HealthCheck, HealthSpec, PortSpec, Proto, Service,
    ServiceCatalog, ServiceError, ServiceSpec, ServiceUpdate, VipRequest,
};
pub use vxmesh_ebpf::DEFAULT_PIN_ROOT;

/// Where the embedded store lives unless told otherwise.
pub const DEFAULT_STORE: &str = "/var/lib/vxmesh/store.db";

/// Opens the store `path` names and returns a catalog over it: the embedded store at a file
/// path (or `sqlite:PATH`), or an etcd cluster for `etcd://HOST:PORT[,HOST:PORT…]`
/// ([`StoreSpec::parse`]). A path that is not UTF-8 is an SQLite file.
pub fn open_catalog(path: &Path) -> Result<Catalog, StoreError> {
    match path.to_str() {
        Some(s) => open_store_catalog(&StoreSpec::parse(s)?),
        None => Ok(Catalog::new(Arc::new(SqliteStore::open(path)?))),
    }
}

/// Opens the store `spec` names and returns a catalog over it.
pub fn open_store_catalog(spec: &StoreSpec) -> Result<Catalog, StoreError> {
    Ok(Catalog::new(overlay_core::store::open(spec)?))
}
