//! STATUS: can ADD succeed here (store, network, agent)?

use overlay_core::catalog::CatalogError;
use overlay_core::model;

use crate::error::*;

use super::*;

impl Call<'_> {
    pub(super) fn status(&self) -> CniResult<()> {
        let bridge = model::bridge_name(&self.conf.network);
        let vxlan = model::vxlan_name(&self.conf.network);
        let (b, v) = (bridge.clone(), vxlan.clone());
        let (has_bridge, has_vxlan) = in_netns(&host_ns(), move |dp| async move {
            Ok((dp.link(&b).await?.is_some(), dp.link(&v).await?.is_some()))
        })
        .map_err(|e| {
            CniError::new(
                NOT_AVAILABLE,
                format!("cannot read this host's links: {}", e.msg),
            )
        })?;
        let unavailable = |why: String| {
            // Containers already attached keep their local bridge while the bridge exists.
            let code = if has_bridge {
                NOT_AVAILABLE_LIMITED
            } else {
                NOT_AVAILABLE
            };
            CniError::new(code, why)
        };
        let catalog = match self.open_store() {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(unavailable(format!(
                    "store unreachable: {} does not exist",
                    self.conf.store
                )))
            }
            Err(e) => return Err(unavailable(format!("store unreachable: {}", e.msg))),
        };
        match catalog.network(&self.conf.network) {
            Ok(_) => {}
            Err(CatalogError::NotFound { .. }) => {
                return Err(CniError::new(
                    NOT_AVAILABLE,
                    format!("network {} is missing from the store", self.conf.network),
                ))
            }
            Err(e) => return Err(unavailable(format!("store unreachable: {e}"))),
        }
        match catalog.node(&self.node) {
            Ok(_) => {}
            Err(CatalogError::NotFound { .. }) => {
                return Err(CniError::new(
                    NOT_AVAILABLE,
                    format!("node {} is missing from the store", self.node),
                ))
            }
            Err(e) => return Err(unavailable(format!("store unreachable: {e}"))),
        }
        match catalog.agent_alive(&self.node) {
            Ok(true) => {}
            Ok(false) => {
                return Err(unavailable(format!(
                    "agent not running: node {}'s agent holds no live heartbeat in the store",
                    self.node
                )))
            }
            Err(e) => return Err(unavailable(format!("store unreachable: {e}"))),
        }
        if !has_bridge {
            return Err(CniError::new(
                NOT_AVAILABLE,
                format!("agent not running: bridge {bridge} does not exist on this host"),
            ));
        }
        if !has_vxlan {
            return Err(CniError::new(
                NOT_AVAILABLE_LIMITED,
                format!("agent not running: VXLAN device {vxlan} does not exist on this host (no traffic to other hosts)"),
            ));
        }
        Ok(())
    }
}
