//! What this host's agent publishes about it: the underlay MTU and the host's own addresses.

use std::collections::BTreeMap;

use crate::model::{HostAddress, HostReport, Node};

use super::apply::{Context, ReconcileError, Reconciler};
use super::stale::is_vxmesh_device;

impl Reconciler {
    /// Reads this host's part of its [`HostReport`] (the endpoint states come from a pass): the
    /// MTU of `node`'s underlay device, and every IPv4 address on the host's interfaces except
    /// vxmesh's own devices (bridges, VXLAN devices, veths, the WireGuard interface) and
    /// loopback addresses (127.0.0.0/8).
    pub async fn host_report(&self, node: &Node) -> Result<HostReport, ReconcileError> {
        let underlay = self.underlay(node).await?;
        let links: BTreeMap<u32, _> = self
            .dp
            .links()
            .await
            .ctx(|| "listing links".to_string())?
            .into_iter()
            .map(|l| (l.index, l))
            .collect();
        let wireguard = self.wireguard.as_ref().map(|w| w.ifname.as_str());
        let mut addresses: Vec<HostAddress> = self
            .dp
            .ipv4_addresses()
            .await
            .ctx(|| "listing addresses".to_string())?
            .into_iter()
            .filter(|(_, a)| !a.addr().is_loopback())
            .filter_map(|(index, address)| {
                let link = links.get(&index)?;
                let own = is_vxmesh_device(link) || Some(link.name.as_str()) == wireguard;
                (!own).then(|| HostAddress {
                    interface: link.name.clone(),
                    address,
                })
            })
            .collect();
        addresses.sort();
        Ok(HostReport {
            underlay_mtu: underlay.mtu,
            addresses,
            endpoints: BTreeMap::new(),
            store_outage: None,
        })
    }
}
