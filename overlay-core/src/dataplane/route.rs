//! Routes: the IPv4 routes of the main table, and the default route an attachment installs.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
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

/// One IPv4 route of the main table, as the kernel reports it (`ip -4 route show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route4 {
    /// The destination prefix (`0.0.0.0/0` for a default route).
    pub dst: Ipv4Net,
    /// The next hop (`via`), if the route has one.
    pub gateway: Option<Ipv4Addr>,
    /// The output interface's index (`dev`), if the route has one.
    pub oif: Option<u32>,
    /// The route's priority (`metric`); 0 when the kernel reports none.
    pub metric: u32,
    /// The message as the kernel sent it (used to delete exactly this route).
    message: RouteMessage,
}

impl Route4 {
    fn from_message(msg: &RouteMessage) -> Option<Route4> {
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let (mut gateway, mut oif, mut metric) = (None, None, 0);
        for a in &msg.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Priority(p) => metric = *p,
                _ => {}
            }
        }
        Some(Route4 {
            dst: Ipv4Net::new(dst, msg.header.destination_prefix_length).ok()?,
            gateway,
            oif,
            metric,
            message: msg.clone(),
        })
    }

    /// True for a default route (`0.0.0.0/0`).
    pub fn is_default(&self) -> bool {
        self.dst.prefix_len() == 0
    }
}

/// Which IPv4 default route [`super::attach`] installs in the container's namespace (the CNI
/// netconf's `defaultRoute`: `"auto"`, `true`, `false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultRoute {
    /// `default via GATEWAY dev IFNAME` when the namespace's main table has no IPv4 default
    /// route yet (any gateway, device or metric); nothing otherwise, so the namespace's first
    /// attachment keeps the default route and a second one adds only its subnet route.
    #[default]
    IfNone,
    /// `default via GATEWAY dev IFNAME`, replacing every IPv4 default route of the main table
    /// (whoever made them): the namespace is left with exactly this one.
    Replace,
    /// No default route: only the interface's subnet route.
    Never,
}

impl Dataplane {
    /// The IPv4 routes of the main table (RT_TABLE_MAIN, 254), every protocol and scope.
    pub async fn routes_v4(&self) -> Result<Vec<Route4>, DataplaneError> {
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
            .filter(|r| table_of(r) == RouteHeader::RT_TABLE_MAIN as u32)
            .filter_map(Route4::from_message)
            .collect())
    }

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
        Ok(self
            .routes_v4()
            .await?
            .iter()
            .filter(|r| r.is_default())
            .find_map(|r| r.gateway))
    }

    /// Installs `default via GATEWAY dev OIF` (metric 0) as `policy` says. Returns whether this
    /// call installed it (false: [`DefaultRoute::Never`], or [`DefaultRoute::IfNone`] and the
    /// namespace had a default route already, or got one from a concurrent caller).
    ///
    /// Errors: the kernel's refusal (e.g. a gateway not reachable through `oif`), named
    /// "add default route".
    pub async fn install_default_route(
        &self,
        gateway: Ipv4Addr,
        oif: u32,
        policy: DefaultRoute,
    ) -> Result<bool, DataplaneError> {
        let ours = |r: &Route4| r.gateway == Some(gateway) && r.oif == Some(oif) && r.metric == 0;
        let existing: Vec<Route4> = self
            .routes_v4()
            .await?
            .into_iter()
            .filter(Route4::is_default)
            .collect();
        let mut replaced = Vec::new();
        match policy {
            DefaultRoute::Never => return Ok(false),
            DefaultRoute::IfNone if !existing.is_empty() => {
                tracing::debug!(%gateway, existing = existing.len(), "namespace has a default route; adding none");
                return Ok(false);
            }
            DefaultRoute::IfNone => {}
            DefaultRoute::Replace => {
                for r in existing.iter().filter(|r| !ours(r)) {
                    if let Err(e) = self.delete_route(r).await {
                        self.restore_routes(&replaced).await;
                        return Err(e);
                    }
                    replaced.push(r.clone());
                }
                if existing.iter().any(ours) {
                    return Ok(true);
                }
            }
        }
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(oif)
            .build();
        // NLM_F_EXCL: a default route of metric 0 added meanwhile by someone else makes this
        // fail with EEXIST rather than add a second one.
        match self.handle.route().add(msg).execute().await {
            Ok(()) => {
                for r in &replaced {
                    tracing::info!(dst = %r.dst, gateway = ?r.gateway, oif = ?r.oif, "replaced default route");
                }
                tracing::debug!(%gateway, oif, "added default route");
                Ok(true)
            }
            Err(e) if errno_of(&e) == Some(libc::EEXIST) && policy == DefaultRoute::IfNone => {
                Ok(false)
            }
            Err(e) => {
                self.restore_routes(&replaced).await;
                Err(nl(
                    "add default route",
                    format_args!("via {gateway} dev index {oif}"),
                )(e))
            }
        }
    }

    /// Puts back routes deleted by a failed [`Dataplane::install_default_route`] (best effort:
    /// failures are logged).
    async fn restore_routes(&self, routes: &[Route4]) {
        for r in routes {
            if let Err(e) = self.handle.route().add(r.message.clone()).execute().await {
                tracing::warn!(dst = %r.dst, gateway = ?r.gateway, error = %e, "cannot put back a replaced default route");
            }
        }
    }

    /// Deletes exactly route `r` (as listed by [`Dataplane::routes_v4`]). Ok if it is gone.
    pub async fn delete_route(&self, r: &Route4) -> Result<(), DataplaneError> {
        match self.handle.route().del(r.message.clone()).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(nl("delete route", format_args!("{}", r.dst))(e)),
        }
    }
}
