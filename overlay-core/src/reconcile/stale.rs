//! Removing what vxmesh made and the store no longer wants.

use std::collections::BTreeSet;

use crate::dataplane::Link;
use crate::model;

use super::apply::{change, Change, Context, ReconcileError, Reconciler};

/// A device vxmesh makes for networks (by its name prefix and kind): a bridge, a VXLAN device
/// or the host end of a veth.
pub(super) fn is_vxmesh_device(l: &Link) -> bool {
    let kind = l.kind.as_deref();
    (l.name.starts_with(model::VXLAN_PREFIX) && kind == Some("vxlan"))
        || (l.name.starts_with(model::BRIDGE_PREFIX) && kind == Some("bridge"))
        || (l.name.starts_with(model::VETH_PREFIX) && kind == Some("veth"))
}

impl Reconciler {
    /// Deletes every device vxmesh made (by its name prefix and kind) that `keep` does not hold.
    pub(super) async fn remove_stale(
        &self,
        keep: &BTreeSet<String>,
        claimed: &(dyn Fn() -> Option<BTreeSet<String>> + Sync),
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let links = self.dp.links().await.ctx(|| "listing links".to_string())?;
        // VXLAN devices first, then veths, then bridges: ports go before their bridge.
        let order = |l: &Link| match l.kind.as_deref() {
            Some("vxlan") => 0,
            Some("veth") => 1,
            _ => 2,
        };
        let mut stale: Vec<&Link> = links
            .iter()
            .filter(|l| is_vxmesh_device(l) && !keep.contains(&l.name))
            .collect();
        if stale.iter().any(|l| l.kind.as_deref() == Some("veth")) {
            let fresh = claimed();
            stale.retain(|l| {
                l.kind.as_deref() != Some("veth")
                    || fresh
                        .as_ref()
                        .is_some_and(|claims| !claims.contains(&l.name))
            });
        }
        stale.sort_by_key(|l| order(l));
        for l in stale {
            self.dp
                .delete_link(l.index)
                .await
                .ctx(|| format!("deleting {}", l.name))?;
            changes.push(change("delete link", &l.name));
        }
        Ok(())
    }
}
