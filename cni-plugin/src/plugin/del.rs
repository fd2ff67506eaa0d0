//! DEL: undo ADD; succeeds when anything is already gone.

use overlay_core::catalog::CatalogError;
use overlay_core::dataplane;
use overlay_core::model;

use crate::error::*;

use super::*;

impl Call<'_> {
    pub(super) fn del(&self) -> CniResult<()> {
        let id = self.id();
        let veth = model::veth_name(&self.conf.network, &id);
        let mut errors = Vec::new();
        if let Some(catalog) = self.open_store()? {
            match catalog.endpoint(&self.conf.network, &id) {
                Ok(ep) if ep.cni.as_ref() == Some(&self.attachment()) => {
                    let host_ifname = ep.host_ifname.clone().unwrap_or(veth.clone());
                    dataplane::detach(None, &host_ifname).map_err(dataplane_err)?;
                    match catalog.remove_endpoint(&ep.network, &ep.id) {
                        Ok(_) | Err(CatalogError::NotFound { .. }) => {}
                        Err(e) => errors.push(catalog_err(e)),
                    }
                }
                Ok(_) => {
                    // Same id, another owner (not a CNI endpoint): not ours to remove.
                }
                Err(CatalogError::NotFound { .. }) => {
                    dataplane::detach(None, &veth).map_err(dataplane_err)?;
                }
                Err(e) => errors.push(catalog_err(e)),
            }
        } else {
            dataplane::detach(None, &veth).map_err(dataplane_err)?;
        }
        if let Err(e) = self.ipam_del(None, None) {
            errors.push(e);
        }
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
