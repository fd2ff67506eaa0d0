//! Bridge ports: their learning and neighbour-suppression flags, and the static entries of the
//! bridge's own FDB (`bridge fdb ... master static`).
//!
//! With neighbour suppression on the VXLAN port the bridge answers ARP requests for remote
//! endpoints itself, from permanent neighbour entries on the bridge device and static FDB
//! entries that point at the VXLAN port, so ARP for them never crosses the underlay; ARP
//! replies (to hosts that do ask across, like a VXLAN host configured by hand) still do.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::link::{
    InfoBridgePort, InfoPortData, InfoPortKind, LinkAttribute, LinkInfo,
};
use netlink_packet_route::neighbour::{
    NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::LinkUnspec;

use super::error::{errno_of, nl};
use super::{Dataplane, DataplaneError};
use crate::mac::MacAddr;

/// The settings of a bridge port vxmesh cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgePort {
    /// The bridge learns source MACs arriving on this port.
    pub learning: bool,
    /// The bridge answers ARP/ND for destinations behind this port and does not flood them to it.
    pub neigh_suppress: bool,
}

impl BridgePort {
    pub(crate) fn from_attributes(data: &[InfoBridgePort]) -> BridgePort {
        // Kernel defaults for a fresh port.
        let mut port = BridgePort {
            learning: true,
            neigh_suppress: false,
        };
        for attr in data {
            match attr {
                InfoBridgePort::Learning(on) => port.learning = *on,
                InfoBridgePort::NeighSupress(on) => port.neigh_suppress = *on,
                _ => {}
            }
        }
        port
    }
}

fn static_message(port_index: u32, mac: MacAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = port_index;
    msg.header.state = NeighbourState::Noarp;
    msg.header.flags = NeighbourFlags::Controller;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    msg
}

impl Dataplane {
    /// Sets a bridge port's flags, like
    /// `ip link set dev X type bridge_slave learning on|off neigh_suppress on|off`.
    pub async fn set_bridge_port(
        &self,
        index: u32,
        port: BridgePort,
    ) -> Result<(), DataplaneError> {
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::Learning(port.learning),
                InfoBridgePort::NeighSupress(port.neigh_suppress),
            ])),
        ]));
        // Port settings travel in IFLA_LINKINFO, which the kernel reads on RTM_NEWLINK (an
        // existing link is changed, not created, without NLM_F_CREATE), not on RTM_SETLINK.
        self.request_ack(RouteNetlinkMessage::NewLink(msg), 0)
            .await
            .map_err(nl("set bridge port", format_args!("index {index}")))
    }

    /// The static MACs of the bridge's FDB on this port (what `bridge fdb show dev X` lists as
    /// `master ... static`).
    pub async fn bridge_fdb_static(&self, port_index: u32) -> Result<Vec<MacAddr>, DataplaneError> {
        let msgs = self
            .bridge_family_neighbours("list bridge fdb", port_index)
            .await?;
        let mut out: Vec<MacAddr> = msgs
            .iter()
            .filter(|m| {
                // The bridge reports its entries with NDA_MASTER rather than NTF_MASTER, and
                // static ones with state NUD_NOARP; the port's own (NTF_SELF) entries are not ours.
                m.header.ifindex == port_index
                    && !m.header.flags.contains(NeighbourFlags::Own)
                    && m.header.state == NeighbourState::Noarp
            })
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(b) => {
                        <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
                    }
                    _ => None,
                })
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Adds (or moves) a static entry for `mac` on this port, like
    /// `bridge fdb replace MAC dev X master static`.
    pub async fn bridge_fdb_add_static(
        &self,
        port_index: u32,
        mac: MacAddr,
    ) -> Result<(), DataplaneError> {
        let msg = RouteNetlinkMessage::NewNeighbour(static_message(port_index, mac));
        self.request_ack(msg, NLM_F_CREATE | NLM_F_REPLACE)
            .await
            .map_err(nl(
                "bridge fdb add",
                format_args!("{mac} on index {port_index}"),
            ))
    }

    /// Removes the static entry for `mac` on this port. Ok if absent.
    pub async fn bridge_fdb_delete_static(
        &self,
        port_index: u32,
        mac: MacAddr,
    ) -> Result<(), DataplaneError> {
        let msg = RouteNetlinkMessage::DelNeighbour(static_message(port_index, mac));
        match self.request_ack(msg, 0).await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(nl(
                "bridge fdb delete",
                format_args!("{mac} on index {port_index}"),
            )(e)),
        }
    }
}
