//! Routes: the IPv4 default route.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::RouteMessageBuilder;

use super::error::{errno_of, nl};
use super::{Dataplane, DataplaneError};

fn table_of(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(msg.header.table as u32)
}

impl Dataplane {
    /// Adds `default via GATEWAY` to the main table. Ok if exactly that default route exists
    /// already; an error if another default route does.
    pub async fn add_default_route(&self, gateway: Ipv4Addr) -> Result<(), DataplaneError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        match self.handle.route().add(msg).execute().await {
            Ok(()) => {
                tracing::debug!(%gateway, "added default route");
                Ok(())
            }
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => {
                if self.default_route().await? == Some(gateway) {
                    Ok(())
                } else {
                    Err(nl("add default route", format_args!("via {gateway}"))(e))
                }
            }
            Err(e) => Err(nl("add default route", format_args!("via {gateway}"))(e)),
        }
    }

    /// The gateway of the IPv4 default route in the main table, if there is one with a gateway.
    pub async fn default_route(&self) -> Result<Option<Ipv4Addr>, DataplaneError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list routes", "ipv4"))?;
        Ok(routes
            .iter()
            .filter(|r| {
                r.header.destination_prefix_length == 0
                    && table_of(r) == RouteHeader::RT_TABLE_MAIN as u32
            })
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                    _ => None,
                })
            }))
    }
}
