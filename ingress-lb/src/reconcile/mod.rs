//! The ingress reconciler: makes one node's eBPF datapath follow the store.
//!
//! - [`DesiredLb::compute`] (`desired`): from a [`crate::catalog::ServiceSnapshot`] and the
//!   node's name, the maps' contents: frontends (VIP:port/proto → kernel service with its
//!   affinity flag), backends (kernel id → address, target port, draining flag), one
//!   Maglev table per frontend built from the backends that are up, the VIPs the packet
//!   path answers ARP for, and the host-side veths that need the tc programs. Pure.
//! - [`apply_maps`] (`maps`): reads the maps, changes only the differences (tables swapped
//!   in one batch), removes what is gone and purges the flows of removed backends; a second
//!   pass changes nothing.
//! - [`Attacher`] (`attach`): the socket programs on the agent's cgroup, the tc programs on
//!   the veths; links pinned by an earlier agent are taken over, links of veths that are
//!   gone are removed.
//! - `ids`: kernel ids of (service, port) and (backend, port).
//!
//! Each step returns an [`LbReport`] of [`Change`]s (the overlay reconciler's type, so the
//! agent logs both alike) and errors.

mod attach;
mod desired;
pub mod ids;
mod maps;

pub use attach::{AttachTargets, Attacher};
pub use desired::{DesiredBackend, DesiredFrontend, DesiredLb, DesiredTable};
pub use maps::apply_maps;
pub use overlay_core::reconcile::Change;

/// A failed step of a pass.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("{what}: {source}")]
    Map {
        what: String,
        #[source]
        source: vxmesh_ebpf::Error,
    },
}

/// What a pass changed, and what failed.
#[derive(Debug, Default)]
pub struct LbReport {
    pub changes: Vec<Change>,
    pub errors: Vec<LbError>,
}

impl LbReport {
    /// Appends another report.
    pub fn extend(&mut self, other: LbReport) {
        self.changes.extend(other.changes);
        self.errors.extend(other.errors);
    }
}
