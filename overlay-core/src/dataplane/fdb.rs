//! Forwarding-database entries on VXLAN devices (`bridge fdb ... self`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::error::{errno_of, nl};
use super::{Dataplane, DataplaneError};
use crate::mac::MacAddr;

/// One (MAC, remote VTEP) pair in a VXLAN device's FDB. The all-zero MAC is the default
/// destination for broadcast, unknown unicast and multicast: one such entry per remote host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub dst: IpAddr,
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        _ => None,
    }
}

fn parse_fdb(msg: &NeighbourMessage) -> Option<FdbEntry> {
    let mut mac = None;
    let mut dst = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(b) => {
                mac = <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                dst = Some(IpAddr::V4(*ip))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                dst = Some(IpAddr::V6(*ip))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => dst = ip_from_bytes(b),
            _ => {}
        }
    }
    Some(FdbEntry {
        mac: mac?,
        dst: dst?,
    })
}

/// The message `bridge fdb add/append/del MAC dev X dst IP self permanent` sends.
fn fdb_message(index: u32, entry: &FdbEntry) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.header.kind = RouteType::Unspec;
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(
        entry.mac.octets().to_vec(),
    ));
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            entry.dst,
        )));
    msg
}

impl Dataplane {
    /// Every AF_BRIDGE neighbour (FDB) message of the namespace; `op` and `index` name the
    /// caller's purpose in errors.
    pub(crate) async fn bridge_family_neighbours(
        &self,
        op: &'static str,
        index: u32,
    ) -> Result<Vec<NeighbourMessage>, DataplaneError> {
        self.handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(nl(op, format_args!("index {index}")))
    }

    /// The FDB entries the device itself holds (NTF_SELF) that have a remote destination:
    /// what `bridge fdb show dev X` lists with `dst`.
    pub async fn fdb_entries(&self, index: u32) -> Result<Vec<FdbEntry>, DataplaneError> {
        let msgs = self.bridge_family_neighbours("list fdb", index).await?;
        let mut out: Vec<FdbEntry> = msgs
            .iter()
            .filter(|m| m.header.ifindex == index && m.header.flags.contains(NeighbourFlags::Own))
            .filter_map(parse_fdb)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Adds a permanent FDB entry on the device (NTF_SELF), like
    /// `bridge fdb append MAC dev X dst IP self permanent`. All-zero (and multicast) MACs are
    /// appended, so one such entry per remote coexists. A unicast MAC has one destination, so
    /// for it an existing entry is replaced (NLM_F_REPLACE): otherwise the kernel would keep a
    /// stale destination silently. Adding an existing pair changes nothing.
    pub async fn fdb_append(&self, index: u32, entry: &FdbEntry) -> Result<(), DataplaneError> {
        let how = if entry.mac.is_zero() || entry.mac.is_multicast() {
            NLM_F_APPEND
        } else {
            NLM_F_REPLACE
        };
        let msg = RouteNetlinkMessage::NewNeighbour(fdb_message(index, entry));
        self.request_ack(msg, NLM_F_CREATE | how)
            .await
            .map_err(|e| {
                if errno_of(&e) == Some(libc::ENODEV) {
                    DataplaneError::LinkNotFound {
                        op: "fdb append",
                        link: format!("index {index}"),
                    }
                } else {
                    nl(
                        "fdb append",
                        format_args!("{} dst {} on index {index}", entry.mac, entry.dst),
                    )(e)
                }
            })?;
        tracing::debug!(index, mac = %entry.mac, dst = %entry.dst, "fdb append");
        Ok(())
    }

    /// Deletes exactly that (MAC, dst) pair. Ok if it is absent.
    pub async fn fdb_delete(&self, index: u32, entry: &FdbEntry) -> Result<(), DataplaneError> {
        let msg = RouteNetlinkMessage::DelNeighbour(fdb_message(index, entry));
        match self.request_ack(msg, 0).await {
            Ok(()) => {
                tracing::debug!(index, mac = %entry.mac, dst = %entry.dst, "fdb delete");
                Ok(())
            }
            Err(e) if errno_of(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Err(DataplaneError::LinkNotFound {
                op: "fdb delete",
                link: format!("index {index}"),
            }),
            Err(e) => Err(nl(
                "fdb delete",
                format_args!("{} dst {} on index {index}", entry.mac, entry.dst),
            )(e)),
        }
    }
}
