//! Interface addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::AddressMessageBuilder;

use super::error::{errno_of, nl};
use super::{Dataplane, DataplaneError};

/// The address an AddressMessage is about: IFA_LOCAL for IPv4 (IFA_ADDRESS is the peer on
/// point-to-point links), IFA_ADDRESS otherwise.
fn message_address(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    match addr.addr() {
        IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(ip, addr.prefix_len())
            .build(),
        IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(ip, addr.prefix_len())
            .build(),
    }
}

impl Dataplane {
    async fn all_addresses(&self) -> Result<Vec<AddressMessage>, DataplaneError> {
        self.handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list addresses", "all"))
    }

    /// The index of the link holding `ip`.
    pub(crate) async fn address_owner(&self, ip: IpAddr) -> Result<Option<u32>, DataplaneError> {
        Ok(self
            .all_addresses()
            .await?
            .iter()
            .find(|m| message_address(m) == Some(ip))
            .map(|m| m.header.index))
    }

    /// Every IPv4 address of the namespace (with its prefix length), with its link's index.
    pub async fn ipv4_addresses(&self) -> Result<Vec<(u32, Ipv4Net)>, DataplaneError> {
        Ok(self
            .all_addresses()
            .await?
            .iter()
            .filter_map(|m| match message_address(m)? {
                IpAddr::V4(ip) => {
                    Some((m.header.index, Ipv4Net::new(ip, m.header.prefix_len).ok()?))
                }
                IpAddr::V6(_) => None,
            })
            .collect())
    }

    /// The addresses (with prefix length) on a link, IPv4 and IPv6.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>, DataplaneError> {
        let mut out = Vec::new();
        for msg in self.all_addresses().await? {
            if msg.header.index != index {
                continue;
            }
            if let Some(ip) = message_address(&msg) {
                if let Ok(net) = IpNet::new(ip, msg.header.prefix_len) {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Adds an address (`ip addr add`). Ok if the link already has it.
    pub async fn add_address(&self, index: u32, addr: IpNet) -> Result<(), DataplaneError> {
        let mut req = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        *req.message_mut() = address_message(index, addr);
        match req.execute().await {
            Ok(()) => {
                tracing::debug!(index, %addr, "added address");
                Ok(())
            }
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(nl("add address", format_args!("{addr} on index {index}"))(
                e,
            )),
        }
    }

    /// Removes an address. Ok if the link does not have it.
    pub async fn delete_address(&self, index: u32, addr: IpNet) -> Result<(), DataplaneError> {
        match self
            .handle
            .address()
            .del(address_message(index, addr))
            .execute()
            .await
        {
            Ok(()) => {
                tracing::debug!(index, %addr, "deleted address");
                Ok(())
            }
            Err(e) if errno_of(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Err(DataplaneError::LinkNotFound {
                op: "delete address",
                link: format!("index {index}"),
            }),
            Err(e) => Err(nl(
                "delete address",
                format_args!("{addr} on index {index}"),
            )(e)),
        }
    }
}
