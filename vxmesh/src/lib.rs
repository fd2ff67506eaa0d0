//! vxmesh: VXLAN overlay networks between Linux hosts, as a library.
//!
//! This crate is the one an orchestrator embeds, and the only one it needs: every type its
//! functions take or return is re-exported here. What it gives:
//!
//! - **Desired state** in a store ([`open_catalog`]: an SQLite file, or etcd): the
//!   [`Catalog`] creates and removes networks, nodes and endpoints; the [`ServiceCatalog`]
//!   services (a virtual IP in front of backends, balanced in the kernel) with their health
//!   checks and published ports (see [`services`]).
//! - **Containers**: [`attach_container`] records an endpoint and builds its veth from a host's
//!   network namespace into a container's ([`detach_container`] undoes it); [`netns`] makes,
//!   enters and removes network namespaces.
//! - **Agents**: one per host makes the host's kernel follow the store ([`agent::Agent::spawn`]
//!   on threads of its own, inside the host namespace its configuration names; stopped and
//!   queried through its [`agent::AgentHandle`]). [`wait::wait_applied`] waits until given
//!   hosts have applied a store revision.
//! - **Watches**: [`watch::Watcher`] turns the store's changes into typed
//!   [`watch::Change`]s (networks, nodes, endpoints, services, backends, health).
//! - **One error type**: every function returns its layer's error ([`CatalogError`],
//!   [`ServiceError`], [`ContainerError`], ...); [`Error`] wraps them all, so `?` works across
//!   layers into a [`Result`].
//! - **A lab** ([`lab`]): simulated hosts in network namespaces on one machine.
//!
//! # Example
//!
//! The store and the catalog need no kernel and no privilege: this runs anywhere.
//!
//! ```
//! use std::time::Duration;
//! use vxmesh::watch::{Change, Watcher};
//! use vxmesh::{BackendSpec, EndpointSpec, NetworkSpec, ServiceCatalog, ServiceSpec};
//!
//! # fn main() -> vxmesh::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let catalog = vxmesh::open_catalog(&dir.path().join("store.db"))?;
//! let mut watcher = Watcher::from_now(&catalog)?;
//!
//! // A network: a subnet and a VXLAN network identifier (chosen when not given).
//! let front = catalog.create_network(&NetworkSpec {
//!     name: "front".into(),
//!     subnet: "10.20.0.0/24".into(),
//!     ..Default::default()
//! })?;
//! assert_eq!(front.gateway.to_string(), "10.20.0.1");
//!
//! // A host, by its underlay address, and an endpoint on it (its address from the subnet).
//! catalog.add_node("h1", "192.0.2.1".parse().unwrap())?;
//! let web1 = catalog.add_endpoint(&EndpointSpec {
//!     network: "front".into(),
//!     node: "h1".into(),
//!     id: Some("web1".into()),
//!     ..Default::default()
//! })?;
//! assert_eq!(web1.ip.to_string(), "10.20.0.2");
//!
//! // A service: a VIP on the network, port 80 to the backends' 8080.
//! let web = ServiceCatalog::of(&catalog).create(&ServiceSpec {
//!     name: "web".into(),
//!     network: "front".into(),
//!     ports: vec!["80:8080".parse()?],
//!     backends: vec![BackendSpec::new("web1")],
//!     ..Default::default()
//! })?;
//!
//! // Everything at one revision, as an agent reads it.
//! let snap = catalog.snapshot()?;
//! assert_eq!(snap.endpoints.len(), 1);
//! assert!(snap.nodes.contains_key("h1"));
//!
//! // The same writes, as typed changes.
//! let mut seen = Vec::new();
//! while seen.len() < 5 {
//!     let batch = watcher.next(Duration::from_secs(5))?;
//!     assert!(!batch.is_empty(), "no change within 5 s; saw {seen:?}");
//!     seen.extend(batch);
//! }
//! assert!(matches!(&seen[4], Change::Backend { service, backend, .. }
//!     if service == "web" && backend == "web1"));
//! println!("VIP of web: {}", web.vip);
//! # Ok(()) }
//! ```
//!
//! On a host (root, a kernel with VXLAN), an agent and a container:
//!
//! ```no_run
//! # async fn run() -> vxmesh::Result<()> {
//! use std::time::Duration;
//! use vxmesh::agent::{Agent, AgentConfig, HostNetns};
//! use vxmesh::{attach_container, ContainerSpec};
//!
//! let catalog = vxmesh::open_catalog(std::path::Path::new(vxmesh::DEFAULT_STORE))?;
//! let agent = Agent::spawn(catalog.clone(), AgentConfig::new("h1", HostNetns::Current))?;
//! // The agent builds the network's bridge; wait until it has applied the store as it is now.
//! agent.applied(catalog.store().revision()?, Duration::from_secs(10)).await?;
//! let container = vxmesh::netns::create("web1")?;
//! let (endpoint, attachment) = attach_container(&catalog, &ContainerSpec {
//!     network: "front".into(),
//!     node: "h1".into(),
//!     id: "web1".into(),
//!     host_netns: None,
//!     container_netns: container,
//!     ifname: "eth0".into(),
//!     ip: None,
//! })?;
//! println!("{} on {} ({})", endpoint.ip, attachment.container_ifname, attachment.mac);
//! agent.stop()?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod agent;
mod agent_log;
pub mod dns;
mod error;
pub mod fast_plane;
pub mod heartbeat;
pub mod lab;
pub mod service_plane;
pub mod services;
pub mod store_outage;
pub mod wait;
pub mod watch;

use std::path::Path;
use std::sync::Arc;

pub use error::{Error, Result};
pub use ipnet::Ipv4Net;
/// Typed, validated access to the networks, nodes and endpoints in a store.
///
/// # Example
///
/// ```
/// use vxmesh::{CatalogError, EndpointSpec, NetworkSpec};
///
/// # fn main() -> vxmesh::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let catalog = vxmesh::open_catalog(&dir.path().join("store.db"))?;
/// let net = catalog.create_network(&NetworkSpec {
///     name: "back".into(),
///     subnet: "10.30.0.0/24".into(),
///     vni: Some(5000),
///     ..Default::default()
/// })?;
/// assert_eq!((net.vni, net.gateway.to_string().as_str()), (5000, "10.30.0.1"));
/// catalog.add_node("h1", "192.0.2.1".parse().unwrap())?;
/// let db = catalog.add_endpoint(&EndpointSpec {
///     network: "back".into(),
///     node: "h1".into(),
///     id: Some("db".into()),
///     ip: Some("10.30.0.9".parse().unwrap()),
///     ..Default::default()
/// })?;
/// assert_eq!(catalog.endpoints(Some("back"))?, vec![db]);
///
/// // A network with endpoints is removed only when forced; the error names what is left.
/// let refused = catalog.remove_network("back", false);
/// assert!(matches!(refused, Err(CatalogError::InUse { .. })));
/// catalog.remove_endpoint("back", "db")?;
/// catalog.remove_network("back", false)?;
/// assert!(catalog.networks()?.is_empty());
/// # Ok(()) }
/// ```
pub use overlay_core::catalog::Catalog;
pub use overlay_core::catalog::{CatalogError, EndpointSpec, NetworkSpec, Snapshot};
pub use overlay_core::container::{
    attach_container, attach_container_with, detach_container, network_mtu, AttachOptions,
    ContainerError, ContainerSpec,
};
pub use overlay_core::dataplane::{Attachment, DataplaneError, DefaultRoute};
pub use overlay_core::model::{
    CniAttachment, Endpoint, EndpointStatus, HostAddress, HostReport, Network, Node, StoreOutage,
    WireguardIdentity,
};
pub use overlay_core::netns::{self, NetnsError};
pub use overlay_core::process::{self, Pidfd};
pub use overlay_core::store::{
    self, LeaseId, Revision, SqliteStore, Store, StoreError, StoreOptions, StoreSpec,
};
pub use overlay_core::validate::ValidationError;
pub use overlay_core::wireguard::Datapath as WireguardDatapath;
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
/// ([`StoreSpec::parse`]). A path that is not UTF-8 is an SQLite file, created (with its
/// directory) when absent.
///
/// Errors: [`StoreError::Config`] for a bad specification or unreadable TLS files (the field
/// named), [`StoreError::Dir`] or [`StoreError::Sqlite`] when the file cannot be created or
/// opened, [`StoreError::Etcd`] or [`StoreError::Timeout`] when etcd authentication fails.
/// Without credentials nothing is sent to etcd yet: a cluster that is down makes the first
/// operation fail instead.
pub fn open_catalog(path: &Path) -> Result<Catalog, StoreError> {
    match path.to_str() {
        Some(s) => open_store_catalog(&StoreSpec::parse(s)?),
        None => Ok(Catalog::new(Arc::new(SqliteStore::open(path)?))),
    }
}

/// Opens the store `spec` names and returns a catalog over it. Errors: as [`open_catalog`].
pub fn open_store_catalog(spec: &StoreSpec) -> Result<Catalog, StoreError> {
    Ok(Catalog::new(overlay_core::store::open(spec)?))
}
