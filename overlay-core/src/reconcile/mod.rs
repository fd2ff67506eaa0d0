//! The reconciler: makes one host's kernel match the store.
//!
//! [`Desired::compute`] turns a store snapshot into what this host should hold;
//! [`Reconciler::apply`] reads what the kernel holds and changes only the differences, so a
//! second pass changes nothing, and everything vxmesh made that the store no longer wants
//! (devices, FDB and neighbour entries, veths) is removed.

mod apply;
mod attachments;
mod desired;
mod devices;
mod entries;
mod host;
mod ingress;
mod isolation;
mod stale;
mod sysctl;
mod tunnel;

pub use apply::WireguardHandle;
pub use apply::{Change, ReconcileError, Reconciler, Report};
pub use desired::{Desired, DesiredNetwork, DesiredPeer, DesiredWireguard};
