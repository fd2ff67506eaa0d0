//! GC: free every attachment not in `cni.dev/valid-attachments`.

use std::collections::BTreeSet;

use overlay_core::catalog::CatalogError;
use overlay_core::dataplane;
use overlay_core::model;

use crate::error::*;

use super::*;

impl Call<'_> {
    pub(super) fn gc(&self) -> CniResult<()> {
        let valid = self.conf.valid_attachments.as_ref().ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                "field cni.dev/valid-attachments is missing; GC needs it",
            )
        })?;
        let valid: BTreeSet<(&str, &str)> = valid
            .iter()
            .map(|v| (v.container_id.as_str(), v.ifname.as_str()))
            .collect();
        let Some(catalog) = self.open_store()? else {
            return Ok(()); // No store: nothing was ever attached through it.
        };
        let mut errors: Vec<String> = Vec::new();
        // 1. Endpoint records (and their addresses and veths) of attachments the runtime dropped.
        let endpoints = catalog
            .endpoints(Some(&self.conf.network))
            .map_err(catalog_err)?;
        for ep in endpoints.iter().filter(|e| e.node == self.node) {
            let Some(cni) = &ep.cni else { continue };
            if valid.contains(&(cni.container_id.as_str(), cni.ifname.as_str())) {
                continue;
            }
            if let Some(h) = &ep.host_ifname {
                if let Err(e) = dataplane::detach(None, h) {
                    errors.push(format!("{}/{} veth {h}: {e}", cni.container_id, cni.ifname));
                    continue;
                }
            }
            if let Err(e) = catalog.remove_endpoint(&ep.network, &ep.id) {
                if !matches!(e, CatalogError::NotFound { .. }) {
                    errors.push(format!("{}/{} record: {e}", cni.container_id, cni.ifname));
                    continue;
                }
            }
            if let Err(e) = self.ipam_del(Some(&cni.container_id), Some(&cni.ifname)) {
                errors.push(format!("{}/{} ipam: {e}", cni.container_id, cni.ifname));
            }
        }
        // 2. vxmesh veths that no endpoint of this node claims (an ADD killed part way). The
        //    links are listed before the store is read, and ADD records before it builds, so
        //    an ADD in progress is never undone.
        let bridge = self.conf.network.clone();
        let links = in_netns(&host_ns(), move |dp| async move {
            let all = dp.links().await?;
            let br = all
                .iter()
                .find(|l| l.name == model::bridge_name(&bridge))
                .map(|l| l.index);
            Ok(all
                .into_iter()
                .filter(|l| {
                    l.name.starts_with(model::VETH_PREFIX)
                        && l.kind.as_deref() == Some("veth")
                        && (l.master.is_none() || l.master == br)
                })
                .map(|l| l.name)
                .collect::<Vec<_>>())
        })?;
        if !links.is_empty() {
            let claimed: BTreeSet<String> = catalog
                .endpoints(None)
                .map_err(catalog_err)?
                .into_iter()
                .filter(|e| e.node == self.node)
                .filter_map(|e| e.host_ifname)
                .collect();
            for l in links.iter().filter(|l| !claimed.contains(*l)) {
                if let Err(e) = dataplane::detach(None, l) {
                    errors.push(format!("stale veth {l}: {e}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::new(
                GC_FAILED,
                format!("GC: {} attachment(s) could not be removed", errors.len()),
            )
            .with_details(errors.join("\n")))
        }
    }
}
