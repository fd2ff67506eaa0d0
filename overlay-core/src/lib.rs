//! overlay-core: the vxmesh model, validation, IPAM, the store, the netlink dataplane, network
//! namespaces and the reconciler that makes a host's kernel match the store.
//!
//! It knows nothing of services or BPF (that is `ingress-lb`).

pub mod catalog;
pub mod container;
pub mod dataplane;
pub mod ipam;
pub mod keys;
pub mod mac;
pub mod model;
pub mod netns;
pub mod process;
pub mod reconcile;
pub mod reserved;
pub mod store;
pub mod validate;
pub mod wireguard;

pub use catalog::{Catalog, CatalogError, EndpointSpec, NetworkSpec, Snapshot};
pub use mac::MacAddr;
pub use model::{Endpoint, Network, Node};
pub use store::{SqliteStore, Store, StoreError};
