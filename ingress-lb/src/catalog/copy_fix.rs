//! Services across `vxmesh store copy`: a service names its network's key's create revision
//! (`Service::network_revision`, telling the network it was made on from a later one of the
//! same name), which copying changes. [`ServiceCopyFix`] rewrites it to the destination's.

use overlay_core::store::copy::{CopyFix, Revisions};
use overlay_core::store::KeyValue;

use crate::keys;
use crate::service::Service;

/// Hands `overlay_core::store::copy::copy` the services last, with their network revision
/// rewritten: the copied network's new create revision for a live service, 0 (no network's)
/// for an orphan, so it stays one.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceCopyFix;

impl CopyFix for ServiceCopyFix {
    fn deferred(&self, key: &str) -> bool {
        key.starts_with(keys::SERVICES)
    }

    fn rewrite(&self, kv: &KeyValue, revisions: &Revisions) -> Result<Vec<u8>, String> {
        let mut svc: Service =
            serde_json::from_slice(&kv.value).map_err(|e| format!("not a service: {e}"))?;
        let network = overlay_core::keys::network(&svc.network);
        svc.network_revision = match revisions.get(&network) {
            Some(&(source, destination)) if source == svc.network_revision => destination,
            _ => 0,
        };
        serde_json::to_vec(&svc).map_err(|e| e.to_string())
    }
}
