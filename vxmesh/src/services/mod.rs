//! Services: a virtual IP on a network in front of a set of its endpoints, balanced by the
//! kernel (the `ingress-lb` and `vxmesh-ebpf` crates). What `vxmesh service …` does, as Rust
//! functions.
//!
//! The operations on the store are [`ServiceCatalog`]'s (re-exported here and at the crate
//! root): [`ServiceCatalog::create`] from a [`ServiceSpec`], [`ServiceCatalog::list`],
//! [`ServiceCatalog::get`], [`ServiceCatalog::update`] with a list of [`ServiceUpdate`]s
//! applied in one transaction, [`ServiceCatalog::remove`]. This module adds what the CLI
//! shows: [`list`] (services with a count of their backends that are up), [`inspect`] (one
//! service with its backends' states and the kernel's counters on this machine), the
//! stable JSON forms of both ([`ServiceView`], [`ListedService`], [`ServiceInspection`]),
//! and [`remove_network`], which refuses to remove a network that still has services.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use vxmesh::{open_catalog, BackendSpec, ServiceCatalog, ServiceSpec, ServiceUpdate};
//!
//! let catalog = open_catalog(Path::new("/var/lib/vxmesh/store.db"))?;
//! let services = ServiceCatalog::of(&catalog);
//! let web = services.create(&ServiceSpec {
//!     name: "web".into(),
//!     network: "net1".into(),
//!     ports: vec!["80:8080/tcp".parse()?],
//!     backends: vec![BackendSpec::new("c1"), "c2:2".parse()?],
//!     health: vxmesh::HealthSpec {
//!         check: "http:/healthz".parse()?,
//!         ..Default::default()
//!     },
//!     ..Default::default()
//! })?;
//! println!("VIP {}", web.vip);
//! services.update("web", &[ServiceUpdate::DrainBackend("c1".into())])?;
//! let seen = vxmesh::services::inspect(&catalog, "web", Path::new(vxmesh::DEFAULT_PIN_ROOT))?;
//! services.remove("web")?;
//! # Ok(()) }
//! ```

mod inspect;
mod view;

use overlay_core::catalog::Catalog;
use overlay_core::model::Network;

pub use overlay_core::validate::ValidationError;

/// Services in the store: create, list, get, update (backends, health check, published
/// ports, mode) and remove, each one compare-and-swap transaction; cheap to clone.
///
/// # Example
///
/// ```
/// use vxmesh::services::{BackendStatus, HealthStatus};
/// use vxmesh::{BackendSpec, EndpointSpec, NetworkSpec, ServiceCatalog, ServiceSpec, ServiceUpdate};
///
/// # fn main() -> vxmesh::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let catalog = vxmesh::open_catalog(&dir.path().join("store.db"))?;
/// catalog.create_network(&NetworkSpec {
///     name: "front".into(),
///     subnet: "10.20.0.0/24".into(),
///     ..Default::default()
/// })?;
/// catalog.add_node("h1", "192.0.2.1".parse().unwrap())?;
/// for id in ["web1", "web2"] {
///     catalog.add_endpoint(&EndpointSpec {
///         network: "front".into(),
///         node: "h1".into(),
///         id: Some(id.into()),
///         ..Default::default()
///     })?;
/// }
/// let services = ServiceCatalog::of(&catalog);
/// let web = services.create(&ServiceSpec {
///     name: "web".into(),
///     network: "front".into(),
///     ports: vec!["80:8080/tcp".parse()?],
///     backends: vec![BackendSpec::new("web1"), "web2:3".parse()?], // web2 with weight 3
///     health: vxmesh::HealthSpec {
///         check: "http:/healthz".parse()?,
///         ..Default::default()
///     },
///     ..Default::default()
/// })?;
/// assert_eq!(web.vip.to_string(), "10.20.0.4"); // the next free address of the subnet
///
/// // h1's agent is live and reports web1 up, web2 down (normally from its health checks).
/// catalog.announce_agent("h1", std::time::Duration::from_secs(60))?;
/// services.report_health("web", "web1", "h1", HealthStatus::Up, "HTTP 200", None)?;
/// services.report_health("web", "web2", "h1", HealthStatus::Down, "HTTP 500", None)?;
/// // Draining: healthy, in the kernel's backend map, but no new flows.
/// services.update("web", &[ServiceUpdate::DrainBackend("web1".into())])?;
/// let snap = services.snapshot()?;
/// let status: Vec<_> = snap.backends(&snap.services["web"]).into_iter().map(|b| b.status).collect();
/// assert!(matches!(status[..], [BackendStatus::Draining, BackendStatus::Down { .. }]), "{status:?}");
///
/// services.remove("web")?;
/// assert!(services.list()?.is_empty());
/// # Ok(()) }
/// ```
pub use ingress_lb::catalog::ServiceCatalog;
pub use ingress_lb::catalog::{
    BackendStatus, BackendView, HealthChange, HealthRecord, HealthStatus, ServiceError,
    ServiceSnapshot, ServiceUpdate,
};
pub use ingress_lb::service::validate;
pub use ingress_lb::service::{
    parse_duration_ms, Affinity, Backend as ServiceBackend, BackendSpec, BackendState, HealthCheck,
    HealthSpec, Mode, PortSpec, Proto, PublishedPort, Service, ServicePort, ServiceSpec,
    VipRequest,
};
pub use inspect::{
    inspect, BackendCounters, BackendInspection, ConntrackFill, KernelTable, NodeInspection,
    ServiceInspection,
};
pub use view::{list, status_word, HealthView, ListedService, ServiceView};

/// Removes network `name` from the store, refusing while services use it unless `force`,
/// which removes those services first (their VIPs, ids and health records), then the
/// network with its endpoints. Returns the network and the services removed.
///
/// Use it instead of [`Catalog::remove_network`] (which knows nothing of services) once the
/// store may hold services. Errors: [`ServiceError::NetworkHasServices`] (naming them),
/// [`ServiceError::Catalog`] wrapping overlay-core's refusal when endpoints remain and not
/// `force`, an unknown or invalid network name. Not one transaction: see
/// [`ServiceCatalog::remove_network`].
pub fn remove_network(
    catalog: &Catalog,
    name: &str,
    force: bool,
) -> Result<(Network, Vec<Service>), ServiceError> {
    ServiceCatalog::of(catalog).remove_network(catalog, name, force)
}
