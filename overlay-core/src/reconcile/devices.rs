//! The devices of a network on a host: its bridge, its VXLAN device, ports and sysctls.

use std::net::Ipv4Addr;

use ipnet::IpNet;

use crate::dataplane::{BridgePort, Link, VxlanSpec};
use crate::mac::MacAddr;
use crate::model::{self, Node, ENCRYPTED_VXLAN_PORT, VXLAN_PORT};

use crate::reconcile::sysctl::{self, Family};

use super::apply::{change, Change, Context, ReconcileError, Reconciler};

impl Reconciler {
    pub(super) async fn bridge(
        &self,
        net: &model::Network,
        mtu: u32,
        changes: &mut Vec<Change>,
    ) -> Result<Link, ReconcileError> {
        let name = net.bridge_name();
        let ctx = |what: &str| format!("network {}: {what} bridge {name}", net.name);
        let mut link = match self.dp.link(&name).await.ctx(|| ctx("reading"))? {
            Some(l) if l.kind.as_deref() == Some("bridge") => l,
            other => {
                if let Some(l) = other {
                    self.dp
                        .delete_link(l.index)
                        .await
                        .ctx(|| ctx("replacing"))?;
                    changes.push(change("delete link (wrong kind)", &name));
                }
                let l = self
                    .dp
                    .create_bridge(&name, mtu)
                    .await
                    .ctx(|| ctx("creating"))?;
                changes.push(change("create bridge", &name));
                l
            }
        };
        // A fixed MAC: otherwise the bridge takes its ports' and the gateway's MAC changes
        // under the containers' ARP caches whenever a port comes or goes.
        let mac = MacAddr::for_endpoint(net.gateway);
        if link.mac != Some(mac) {
            self.dp
                .set_mac(link.index, mac)
                .await
                .ctx(|| ctx("setting the MAC of"))?;
            changes.push(change("set mac", format!("{name} {mac}")));
        }
        if link.mtu != mtu {
            self.dp
                .set_mtu(link.index, mtu)
                .await
                .ctx(|| ctx("setting the MTU of"))?;
            changes.push(change("set mtu", format!("{name} {mtu}")));
            link.mtu = mtu;
        }
        let want = IpNet::V4(net.gateway_net());
        let have = self
            .dp
            .addresses(link.index)
            .await
            .ctx(|| ctx("reading addresses of"))?;
        for a in have
            .iter()
            .filter(|a| matches!(a, IpNet::V4(_)) && **a != want)
        {
            self.dp
                .delete_address(link.index, *a)
                .await
                .ctx(|| ctx("removing an address of"))?;
            changes.push(change("delete address", format!("{name} {a}")));
        }
        if !have.contains(&want) {
            self.dp
                .add_address(link.index, want)
                .await
                .ctx(|| ctx("adding the gateway to"))?;
            changes.push(change("add address", format!("{name} {want}")));
        }
        // Forwarding is turned on by `isolation` once the bridge's filter is in place.
        // Networks are IPv4: no IPv6 link-local chatter from the host onto the overlay.
        self.sysctl(Family::V6, &name, "disable_ipv6", "1", changes)?;
        if !link.up {
            self.dp
                .set_up(link.index)
                .await
                .ctx(|| ctx("bringing up"))?;
            changes.push(change("set up", &name));
        }
        Ok(link)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn vxlan(
        &self,
        _node: &Node,
        local: Ipv4Addr,
        underlay: &Link,
        net: &model::Network,
        mtu: u32,
        bridge: &Link,
        changes: &mut Vec<Change>,
    ) -> Result<Link, ReconcileError> {
        let name = net.vxlan_name();
        let ctx = |what: &str| format!("network {}: {what} vxlan {name}", net.name);
        let spec = VxlanSpec {
            name: name.clone(),
            vni: net.vni,
            local,
            // Encrypted networks have a port of their own, closed to all but WireGuard.
            port: if net.encrypted {
                ENCRYPTED_VXLAN_PORT
            } else {
                VXLAN_PORT
            },
            // An encrypted network's packets are routed into the WireGuard interface by their
            // destination (a tunnel address); binding to that interface would get the VXLAN
            // device deleted with it whenever the agent (which owns the TUN) restarts.
            underlay_index: (!net.encrypted).then_some(underlay.index),
            mtu,
            // ARP for remote endpoints is answered by the bridge (neighbour suppression on the
            // port), not by the VXLAN device: its proxy mode would also swallow ARP replies to
            // hosts that ask across the overlay.
            proxy: false,
        };
        let current = self.dp.link(&name).await.ctx(|| ctx("reading"))?;
        let matches = |l: &Link| {
            l.vxlan.as_ref().is_some_and(|v| {
                v.vni == spec.vni
                    && v.local == Some(spec.local)
                    && v.port == spec.port
                    && !v.learning
                    && !v.proxy
                    && v.underlay_index == spec.underlay_index
            })
        };
        let link = match current {
            Some(l) if matches(&l) => l,
            other => {
                if let Some(l) = other {
                    self.dp
                        .delete_link(l.index)
                        .await
                        .ctx(|| ctx("replacing"))?;
                    changes.push(change("delete link (changed)", &name));
                }
                let l = self.dp.create_vxlan(&spec).await.ctx(|| ctx("creating"))?;
                changes.push(change(
                    "create vxlan",
                    format!("{name} vni {} local {local} dstport {}", net.vni, spec.port),
                ));
                l
            }
        };
        self.ensure_port(&link, bridge, mtu, changes).await?;
        self.sysctl(Family::V6, &name, "disable_ipv6", "1", changes)?;
        // The bridge neither learns behind the VXLAN port (its entries are static, from the
        // store) nor floods ARP for known endpoints into it.
        let port = BridgePort {
            learning: false,
            neigh_suppress: true,
        };
        if link.port != Some(port) {
            self.dp
                .set_bridge_port(link.index, port)
                .await
                .ctx(|| ctx("setting bridge port flags of"))?;
            changes.push(change(
                "set bridge port",
                format!("{name} learning off neigh_suppress on"),
            ));
        }
        Ok(link)
    }

    pub(super) fn sysctl(
        &self,
        family: Family,
        ifname: &str,
        key: &str,
        value: &str,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        match sysctl::ensure(family, ifname, key, value) {
            Ok(true) => {
                changes.push(change("set sysctl", format!("{ifname} {key}={value}")));
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(source) => Err(ReconcileError::Sysctl {
                context: format!("setting {key}={value} on {ifname}"),
                source,
            }),
        }
    }

    /// `link` is a port of `bridge`, with the network's MTU, and up.
    pub(super) async fn ensure_port(
        &self,
        link: &Link,
        bridge: &Link,
        mtu: u32,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let name = &link.name;
        if link.mtu != mtu {
            self.dp
                .set_mtu(link.index, mtu)
                .await
                .ctx(|| format!("setting the MTU of {name}"))?;
            changes.push(change("set mtu", format!("{name} {mtu}")));
        }
        if link.master != Some(bridge.index) {
            self.dp
                .set_master(link.index, Some(bridge.index))
                .await
                .ctx(|| format!("attaching {name} to {}", bridge.name))?;
            changes.push(change("set master", format!("{name} {}", bridge.name)));
        }
        if !link.up {
            self.dp
                .set_up(link.index)
                .await
                .ctx(|| format!("bringing up {name}"))?;
            changes.push(change("set up", name));
        }
        Ok(())
    }
}
