//! IPv4 neighbour (ARP) entries.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::AddressFamily;

use super::error::{errno_of, nl};
use super::{Dataplane, DataplaneError};
use crate::mac::MacAddr;

/// A neighbour entry: IP to MAC on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighEntry {
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub permanent: bool,
}

fn parse_neigh(msg: &NeighbourMessage) -> Option<NeighEntry> {
    let mut ip = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                ip = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLayerAddress(b) => {
                mac = <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
            }
            _ => {}
        }
    }
    Some(NeighEntry {
        ip: ip?,
        mac: mac?,
        permanent: msg.header.state == NeighbourState::Permanent,
    })
}

impl Dataplane {
    /// The IPv4 neighbour entries on a device that have a MAC (incomplete ones are skipped).
    pub async fn neighbours(&self, index: u32) -> Result<Vec<NeighEntry>, DataplaneError> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list neighbours", format_args!("index {index}")))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(parse_neigh)
            .collect())
    }

    /// Sets a permanent neighbour entry, like
    /// `ip neigh replace IP lladdr MAC dev X nud permanent`.
    pub async fn neigh_replace(
        &self,
        index: u32,
        entry: &NeighEntry,
    ) -> Result<(), DataplaneError> {
        self.handle
            .neighbours()
            .add(index, entry.ip)
            .link_layer_address(&entry.mac.octets())
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                if errno_of(&e) == Some(libc::ENODEV) {
                    DataplaneError::LinkNotFound {
                        op: "neigh replace",
                        link: format!("index {index}"),
                    }
                } else {
                    nl(
                        "neigh replace",
                        format_args!("{} lladdr {} on index {index}", entry.ip, entry.mac),
                    )(e)
                }
            })?;
        tracing::debug!(index, ip = %entry.ip, mac = %entry.mac, "neigh replace");
        Ok(())
    }

    /// Deletes the neighbour entry for `ip` on the device. Ok if there is none.
    pub async fn neigh_delete(&self, index: u32, ip: IpAddr) -> Result<(), DataplaneError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
        match self.handle.neighbours().del(msg).execute().await {
            Ok(()) => {
                tracing::debug!(index, %ip, "neigh delete");
                Ok(())
            }
            Err(e) if errno_of(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Err(DataplaneError::LinkNotFound {
                op: "neigh delete",
                link: format!("index {index}"),
            }),
            Err(e) => Err(nl("neigh delete", format_args!("{ip} on index {index}"))(e)),
        }
    }
}
