//! The other end of a veth, wherever it lives: read and changed through the namespace id the
//! kernel reports for it (IFLA_LINK_NETNSID), with RTM_GETLINK/RTM_SETLINK carrying
//! IFLA_TARGET_NETNSID (Linux 4.15/4.20). No path to the peer's namespace is needed, so this
//! reaches every container end an agent's host end leads to, whoever made it and whenever.

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::LinkUnspec;

use super::error::{errno_of, nl};
use super::{Dataplane, DataplaneError, Link};

impl Dataplane {
    /// The peer of the veth `host` (as the kernel reports it now, in its own namespace), or
    /// `None` when `host` names no peer or the peer is gone. Errors when the kernel refuses
    /// the request (e.g. an id that names no namespace any more).
    pub async fn veth_peer(&self, host: &Link) -> Result<Option<Link>, DataplaneError> {
        let Some(index) = host.link_index else {
            return Ok(None);
        };
        let mut req = self.handle.link().get().match_index(index);
        if let Some(id) = host.link_netnsid {
            req.message_mut()
                .attributes
                .push(LinkAttribute::IfNetnsId(id));
        }
        let res: Result<Vec<LinkMessage>, _> = req.execute().try_collect().await;
        match res {
            Ok(msgs) => Ok(msgs.first().map(Link::from_message)),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl("get veth peer", peer_target(host))(e)),
        }
    }

    /// Sets the MTU (bytes) of the peer of the veth `host`, in whatever namespace it lives.
    pub async fn set_veth_peer_mtu(&self, host: &Link, mtu: u32) -> Result<(), DataplaneError> {
        let index = host.link_index.ok_or_else(|| DataplaneError::LinkNotFound {
            op: "set peer mtu",
            link: format!("peer of {}", host.name),
        })?;
        let mut builder = LinkUnspec::new_with_index(index).mtu(mtu);
        if let Some(id) = host.link_netnsid {
            builder = builder.append_extra_attribute(LinkAttribute::IfNetnsId(id));
        }
        match self.handle.link().set(builder.build()).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Err(DataplaneError::LinkNotFound {
                op: "set peer mtu",
                link: peer_target(host),
            }),
            Err(e) => Err(nl("set peer mtu", peer_target(host))(e)),
        }
    }
}

/// `peer of ve-x (index 2 in namespace id 3)` for messages.
fn peer_target(host: &Link) -> String {
    let index = host.link_index.unwrap_or_default();
    match host.link_netnsid {
        Some(id) => format!("peer of {} (index {index} in namespace id {id})", host.name),
        None => format!("peer of {} (index {index})", host.name),
    }
}
