//! The netlink dataplane: links, addresses, routes, FDB and neighbour entries, tc ingress drop
//! filters, and attaching containers to a bridge.
//!
//! A [`Dataplane`] talks rtnetlink to the network namespace of the thread that called
//! [`Dataplane::connect`]. To work in another namespace, connect from inside
//! [`crate::netns::block_on_in`].

mod addr;
mod attach;
mod bridge_port;
mod error;
mod fdb;
mod ingress_filter;
mod link;
mod neigh;
mod peer;
mod route;

use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;

pub use attach::{attach, detach, AttachSpec, Attachment};
pub use bridge_port::BridgePort;
pub use error::DataplaneError;
pub use fdb::FdbEntry;
pub use ingress_filter::IngressFilter;
pub use link::{Link, VxlanInfo, VxlanSpec};
pub use neigh::NeighEntry;
pub use route::{DefaultRoute, Route4};

/// A netlink connection to one network namespace.
#[derive(Debug, Clone)]
pub struct Dataplane {
    handle: rtnetlink::Handle,
}

impl Dataplane {
    /// Opens a netlink socket in the network namespace of the calling thread; spawns the
    /// connection task on the current tokio runtime.
    pub fn connect() -> Result<Self, DataplaneError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| DataplaneError::NoRuntime)?;
        let (conn, handle, _) = rtnetlink::new_connection().map_err(DataplaneError::Connect)?;
        rt.spawn(conn);
        Ok(Dataplane { handle })
    }

    /// The underlying rtnetlink handle, for requests this type does not wrap.
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// Sends one request with our own header flags (NLM_F_REQUEST|NLM_F_ACK are added) and
    /// waits for the acknowledgement.
    pub(crate) async fn request_ack(
        &self,
        payload: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), rtnetlink::Error> {
        let mut req = NetlinkMessage::from(payload);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut response = handle.request(req)?;
        while let Some(msg) = response.next().await {
            if let NetlinkPayload::Error(err) = msg.payload {
                if err.code.is_some() {
                    return Err(rtnetlink::Error::NetlinkError(err));
                }
            }
        }
        Ok(())
    }
}

/// Checks an interface name the way the kernel will (1–15 bytes, no '/', ':' or whitespace).
pub(crate) fn validate_ifname(name: &str) -> Result<(), DataplaneError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 15 {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        "contains '/', ':', NUL or whitespace"
    } else {
        return Ok(());
    };
    Err(DataplaneError::invalid(
        format_args!("interface name '{name}'"),
        reason,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("vxlan-4242-abcd").is_ok());
        for bad in ["", "0123456789abcdef", "a/b", "a b", "a:b", ".."] {
            assert!(validate_ifname(bad).is_err(), "{bad}");
        }
    }
}
